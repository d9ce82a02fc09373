"""Goal 6: sessions per minute with two decoder processes vs one (decode-bound load).

Each round uploads the same batch of 1080p sessions through the gateway without completing them,
starts N ``dodolens worker`` processes (``DODOLENS_DECODE_CONCURRENCY=1`` and
``DODOLENS_DECODE_THREADS=1``: one decode at a time per process, on one thread; no follow jobs, so
the load is the decodes alone), waits until they have joined the ``decoders`` group, then completes every session at once
and times until the last ``analysis_complete``. No model is configured, so the analysis step is
skipped and the load is decoding. Rounds alternate 1, 2, 1, 2 workers.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from bench import clips
from bench.harness import Goal, Processes, deployment, median
from dodolens.client import complete, create, send_chunks
from schemas.events import EventType
from streams import keys
from streams.config import MiB
from streams.connection import connect
from streams.events import last_global_id, tail

TARGET = 1.7
SESSIONS = 12
CLIP_BYTES = 45_000_000
PLAN = (1, 2, 1, 2)


async def _upload(base: str, data: bytes, count: int) -> list[tuple[str, str]]:
    """``count`` sessions holding every chunk of ``data``, not yet completed."""
    out = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        for _ in range(count):
            session = await create(http, len(data), "video/mp4")
            sid, token = session["session_id"], session["token"]
            await send_chunks(http, sid, token, memoryview(data), MiB, list(range(-(-len(data) // MiB))))
            out.append((sid, token))
    return out


async def _listening(r, workers: int, timeout_s: float = 30.0) -> None:
    """Until ``workers`` processes block in XREADGROUP on both groups (Redis 7 creates a group's consumer
    only once a read is served, so XINFO CONSUMERS cannot tell that a new worker is up)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        clients = await r.client_list()
        if sum(1 for c in clients if c.get("cmd") == "xreadgroup") >= 2 * workers:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("the worker processes did not start reading their groups")


async def _round(base: str, redis_url: str, processes: Processes, data: bytes, workers: int) -> tuple[float, int]:
    """Seconds from the first ``complete`` to the last ``analysis_complete``, and how many failed."""
    sessions = await _upload(base, data, SESSIONS)
    started = [processes.worker(DODOLENS_DECODE_CONCURRENCY=1, DODOLENS_DECODE_THREADS=1, DODOLENS_FOLLOW_CONCURRENCY=0)
               for _ in range(workers)]
    r = connect(redis_url)
    try:
        await _listening(r, workers)
        cursor = await last_global_id(r)
        waiting = {sid for sid, _ in sessions}
        failed = 0
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            began = time.perf_counter()
            await asyncio.gather(*(complete(http, sid, token, memoryview(data), MiB, None) for sid, token in sessions))
        deadline = time.monotonic() + 300
        while waiting and time.monotonic() < deadline:
            cursor, events = await tail(r, cursor, block_ms=500)
            for event in events:
                if event.session_id in waiting and event.type in (EventType.ANALYSIS_COMPLETE, EventType.ERROR):
                    waiting.discard(event.session_id)
                    failed += event.type == EventType.ERROR
        seconds = time.perf_counter() - began
        return seconds, failed + len(waiting)
    finally:
        await r.aclose()
        for process in started:
            process.terminate()
        for process in started:
            process.wait(15)


def run(reference: bytes) -> Goal:
    data, seconds = clips.sized(reference, CLIP_BYTES)
    results: dict[int, list[float]] = {1: [], 2: []}
    failures = 0
    with deployment(DODOLENS_MAX_SIZE=len(data) + MiB) as (redis, processes):
        base = processes.gateway()
        for workers in PLAN:
            took, failed = asyncio.run(_round(base, redis.url, processes, data, workers))
            results[workers].append(SESSIONS / took * 60)
            failures += failed
    one, two = median(results[1]), median(results[2])
    ratio = two / one
    return Goal(
        "scaleout", "6. Scale-out: sessions per minute, 2 decoder processes vs 1",
        f">= {TARGET:g}x with 2 processes", f"1 worker process: median {one:.1f} sessions/min",
        f"2 worker processes: median {two:.1f} sessions/min", f"{ratio:.2f}x", ratio >= TARGET and failures == 0,
        [
            f"each round: {SESSIONS} sessions of a {seconds:.0f} s 1080p H.264 12 Mb/s + AAC clip ({len(data) / 1e6:.0f} MB, "
            "the reference's first seconds) uploaded first, then all completed at once (no SHA-256 declared, so "
            "nothing to check); timed from the first complete to the last analysis_complete (analysis skipped: no model)",
            f"rounds ({'/'.join(map(str, PLAN))} workers): 1 worker {', '.join(f'{v:.1f}' for v in results[1])} "
            f"sessions/min; 2 workers {', '.join(f'{v:.1f}' for v in results[2])} sessions/min; failures {failures}",
            "workers: `python -m dodolens.cli worker`, REDIS_URL + shared DODOLENS_MASTER_SECRET, "
            "DODOLENS_DECODE_CONCURRENCY=1, DODOLENS_DECODE_THREADS=1 (one decode thread per worker, as the goal "
            "asks: a decode left to its default 2 threads already uses both cores on its own), "
            "DODOLENS_FOLLOW_CONCURRENCY=0; the machine's 2 cores also run redis-server, the gateway and this client",
        ],
    )
