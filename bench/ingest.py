"""Goal 3: upload throughput through a gateway process vs raw redis-py XADD of the same chunks.

Both sides move the reference clip as 1 MiB chunks, 3 in flight at a time. The gateway path is the
real one (HTTP PUT, token check, AES-256-GCM sealing, XADD, meta bookkeeping, a ``chunk_received``
event per chunk); the baseline XADDs the plaintext chunks into a chunk stream with redis-py from
the benchmark process, as fast as it can. Rounds alternate so both see the same machine.

The two cores are shared by the client, the gateway and redis-server, so the client's own cost
counts against the gateway. The headline number uses a lean client in a process of its own (aiohttp,
whose HTTP parser is C, on uvloop): it costs about a third of the CPU of httpx (pure Python) for the
same uploads. The httpx client of ``dodolens.client``, in the benchmark process as before, is measured
too, and both clients are applied to the HTTP-only echo server.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import subprocess
import sys
import time
import uuid
from multiprocessing.connection import Connection

import aiohttp
import httpx

from bench.harness import ROOT, Goal, deployment, median
from dodolens.client import create, send_chunks
from streams import keys
from streams.config import MiB
from streams.connection import connect
from streams.embedded import free_port
from streams.threads import in_thread

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


async def lean_put(http: aiohttp.ClientSession, data: memoryview, sid: str, token: str) -> None:
    """PUT every chunk, ``PARALLEL`` in flight, each a separate request of the session API."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"}
    queue = list(range(-(-len(data) // MiB)))

    async def lane() -> None:
        while queue:
            i = queue.pop(0)
            async with http.put(f"/sessions/{sid}/chunks/{i}", data=bytes(data[i * MiB : (i + 1) * MiB]),
                                headers=headers) as response:
                body = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"chunk {i}: HTTP {response.status} {body[:200]!r}")

    await asyncio.gather(*(lane() for _ in range(PARALLEL)))


async def lean_session(base: str, data: memoryview, echo: bool) -> float:
    """Seconds to upload ``data`` with the lean client (a session is created and erased around it)."""
    async with aiohttp.ClientSession(base, connector=aiohttp.TCPConnector(limit=PARALLEL)) as http:
        if echo:
            started = time.perf_counter()
            await lean_put(http, data, "echo", "none")
            return time.perf_counter() - started
        async with http.post("/sessions", json={"size": len(data), "content_type": "video/mp4"}) as response:
            session = await response.json()
        sid, token = session["session_id"], session["token"]
        started = time.perf_counter()
        await lean_put(http, data, sid, token)
        seconds = time.perf_counter() - started
        async with http.delete(f"/sessions/{sid}", headers={"Authorization": f"Bearer {token}"}) as response:
            await response.read()
        return seconds


def lean_client(conn: Connection) -> None:
    """The lean client's process: gets the clip once over a pipe (memory only), then one upload per request."""
    import uvloop

    data = memoryview(conn.recv_bytes())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        while True:
            job = conn.recv()
            if job is None:
                return
            base, echo = job
            conn.send(runner.run(lean_session(base, data, echo)))


class LeanClient:
    """A separate process running :func:`lean_client`, so client and gateway never share a GIL."""

    def __init__(self, clip: bytes) -> None:
        self.conn, child = multiprocessing.get_context("spawn").Pipe()
        self.process = multiprocessing.get_context("spawn").Process(target=lean_client, args=(child,), daemon=True)
        self.process.start()
        child.close()
        self.conn.send_bytes(clip)

    def upload(self, base: str, *, echo: bool = False) -> float:
        self.conn.send((base, echo))
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send(None)
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()


async def erased(url: str) -> None:
    """The lean client erased its session: no chunk stream is left behind."""
    r = connect(url)
    try:
        left = [key async for key in r.scan_iter(match=keys.chunks("*"))]
        assert not [k for k in left if b"bench-raw" not in k], "an erased session kept its chunks"
    finally:
        await r.aclose()


def run(clip: bytes) -> Goal:
    chunks = [clip[i : i + MiB] for i in range(0, len(clip), MiB)]
    mb = len(clip) / 1e6
    raw, gateway, bare, gateway_httpx, bare_httpx = [], [], [], [], []
    port = free_port()
    with deployment(DODOLENS_MAX_SIZE=len(clip) + MiB) as (redis, processes):
        base = processes.gateway()
        echo = subprocess.Popen([sys.executable, "-m", "bench.echo", str(port)], cwd=ROOT, stderr=subprocess.DEVNULL)
        lean = LeanClient(clip)
        echo_base = f"http://127.0.0.1:{port}"
        try:
            wait_port(port, echo)

            async def rounds() -> None:
                await raw_xadd(redis.url, chunks)
                lean.upload(base)
                lean.upload(echo_base, echo=True)
                await gateway_put(base, redis.url, clip)
                await echo_put(echo_base, clip)
                for _ in range(ROUNDS):
                    raw.append(mb / await raw_xadd(redis.url, chunks))
                    gateway.append(mb / await in_thread(lean.upload, base))
                    bare.append(mb / await in_thread(lean.upload, echo_base, echo=True))
                    gateway_httpx.append(mb / await gateway_put(base, redis.url, clip))
                    bare_httpx.append(mb / await echo_put(echo_base, clip))
                await erased(redis.url)

            asyncio.run(rounds())
        finally:
            lean.close()
            echo.terminate()
            echo.wait(10)
    ratio = median(gateway) / median(raw)

    def mbs(values: list[float]) -> str:
        return f"{', '.join(f'{v:.0f}' for v in values)} MB/s, median {median(values) / median(raw):.0%} of raw XADD"

    return Goal(
        "ingest", "3. Ingest: gateway upload throughput vs raw XADD",
        f">= {TARGET:.0%} of raw redis-py XADD", f"raw XADD: median {median(raw):.0f} MB/s",
        f"gateway: median {median(gateway):.0f} MB/s", f"{ratio:.0%}", ratio >= TARGET,
        [
            f"{len(chunks)} chunks of 1 MiB ({mb:.1f} MB, the reference clip), {PARALLEL} in flight; {ROUNDS} rounds "
            "after a warm-up round, alternating",
            f"raw XADD (redis-py asyncio, plaintext, from the benchmark process): {', '.join(f'{v:.0f}' for v in raw)} MB/s",
            "gateway (one `dodolens gateway` process; AES-256-GCM sealing; one chunk_received event per chunk), "
            f"lean client (aiohttp on uvloop, 3 connections, its own process): {mbs(gateway)}",
            f"gateway, httpx client of `dodolens.client` (3 connections, in the benchmark process): {mbs(gateway_httpx)}",
            "HTTP alone (`python -m bench.echo`: uvicorn + Starlette reading each body and nothing else), the ceiling "
            f"any handler on this HTTP stack can reach: lean client {mbs(bare)}; httpx client {mbs(bare_httpx)}",
        ],
    )
