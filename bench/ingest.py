"""Goal 3: upload throughput through a gateway process vs raw redis-py XADD of the same chunks.

Both sides move the reference clip as 1 MiB chunks, 3 in flight at a time. The gateway path is the
real one (HTTP PUT, token check, AES-256-GCM sealing, XADD, meta bookkeeping, a ``chunk_received``
event per chunk); the baseline XADDs the plaintext chunks into a chunk stream with redis-py from
the benchmark process, as fast as it can. Rounds alternate so both see the same machine.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import uuid

import httpx

from bench.harness import ROOT, Goal, deployment, median
from dodolens.client import create, send_chunks
from streams import keys
from streams.config import MiB
from streams.connection import connect
from streams.embedded import free_port

TARGET = 0.5
ROUNDS = 3
PARALLEL = 3


def wait_port(port: int, process: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("the echo server did not start")


async def raw_xadd(url: str, chunks: list[bytes]) -> float:
    """Seconds to XADD every chunk into one stream, ``PARALLEL`` at a time (then the stream is dropped)."""
    r = connect(url)
    stream = keys.chunks(f"bench-raw-{uuid.uuid4().hex}")
    queue = list(enumerate(chunks))

    async def lane() -> None:
        while queue:
            index, chunk = queue.pop(0)
            await r.xadd(stream, {"i": index, "n": len(chunk), "ct": chunk})

    try:
        started = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(PARALLEL)))
        return time.perf_counter() - started
    finally:
        await r.delete(stream)
        await r.aclose()


async def gateway_put(base: str, url: str, data: bytes) -> float:
    """Seconds to PUT every chunk of one session through the gateway, ``PARALLEL`` at a time."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        session = await create(http, len(data), "video/mp4")
        sid, token = session["session_id"], session["token"]
        count = -(-len(data) // MiB)
        started = time.perf_counter()
        await send_chunks(http, sid, token, memoryview(data), MiB, list(range(count)), parallel=PARALLEL)
        seconds = time.perf_counter() - started
        await http.delete(f"/sessions/{sid}", headers={"Authorization": f"Bearer {token}"})
    r = connect(url)
    try:
        assert not await r.exists(keys.chunks(sid)), "the erased session kept its chunks"
    finally:
        await r.aclose()
    return seconds


async def echo_put(base: str, data: bytes) -> float:
    """Seconds to PUT every chunk to the echo server (HTTP only), ``PARALLEL`` at a time."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        started = time.perf_counter()
        await send_chunks(http, "echo", "none", memoryview(data), MiB, list(range(-(-len(data) // MiB))),
                          parallel=PARALLEL)
        return time.perf_counter() - started


def run(clip: bytes) -> Goal:
    chunks = [clip[i : i + MiB] for i in range(0, len(clip), MiB)]
    mb = len(clip) / 1e6
    raw, gateway, bare = [], [], []
    port = free_port()
    with deployment(DODOLENS_MAX_SIZE=len(clip) + MiB) as (redis, processes):
        base = processes.gateway()
        echo = subprocess.Popen([sys.executable, "-m", "bench.echo", str(port)], cwd=ROOT, stderr=subprocess.DEVNULL)
        try:
            wait_port(port, echo)

            async def rounds() -> None:
                await raw_xadd(redis.url, chunks)
                await gateway_put(base, redis.url, clip)
                await echo_put(f"http://127.0.0.1:{port}", clip)
                for _ in range(ROUNDS):
                    raw.append(mb / await raw_xadd(redis.url, chunks))
                    gateway.append(mb / await gateway_put(base, redis.url, clip))
                    bare.append(mb / await echo_put(f"http://127.0.0.1:{port}", clip))

            asyncio.run(rounds())
        finally:
            echo.terminate()
            echo.wait(10)
    ratio = median(gateway) / median(raw)
    return Goal(
        "ingest", "3. Ingest: gateway upload throughput vs raw XADD",
        f">= {TARGET:.0%} of raw redis-py XADD", f"raw XADD: median {median(raw):.0f} MB/s",
        f"gateway: median {median(gateway):.0f} MB/s", f"{ratio:.0%}", ratio >= TARGET,
        [
            f"{len(chunks)} chunks of 1 MiB ({mb:.1f} MB, the reference clip), {PARALLEL} in flight; {ROUNDS} rounds "
            "after a warm-up round, alternating",
            f"raw XADD (redis-py asyncio, plaintext, from the benchmark process): {', '.join(f'{v:.0f}' for v in raw)} MB/s",
            "gateway (one `dodolens gateway` process; httpx client with 3 connections; AES-256-GCM sealing; one "
            f"chunk_received event per chunk): {', '.join(f'{v:.0f}' for v in gateway)} MB/s",
            "HTTP alone (`python -m bench.echo`: uvicorn + Starlette reading each body and nothing else, same client): "
            f"{', '.join(f'{v:.0f}' for v in bare)} MB/s, median {median(bare) / median(raw):.0%} of raw XADD: the "
            "ceiling any handler on this HTTP stack can reach",
        ],
    )
