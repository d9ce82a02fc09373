"""Goal 5: 1,000 WebSocket subscribers on one gateway; latency from XADD to receipt.

The benchmark process holds 1,000 ``websockets`` connections (one per session) to one gateway
process and publishes events with :func:`streams.events.publish` (the session stream, then
``dodo:events``, which the gateway's hub tails). Each event carries a sequence number; its latency
is the receipt time minus the time taken just before ``publish``, both on the benchmark process's
monotonic clock, so the client's own event-loop delays count against the gateway.
"""

from __future__ import annotations

import asyncio
import random
import resource
import time

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect as ws_connect

from bench.harness import Goal, deployment, percentile, stream_config
from schemas.events import AnalysisProgressData
from streams.connection import connect
from streams.events import publish

SUBSCRIBERS = 1000
TARGET_MS = 100.0
STEADY_RATE = 1000
STEADY_SECONDS = 10.0
TICK_S = 0.02
BURST_LANES = 50


def raise_fd_limit(wanted: int = 8192) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(max(soft, wanted), hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


async def _sessions(base: str, count: int) -> list[tuple[str, str]]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        slots = asyncio.Semaphore(20)

        async def one() -> tuple[str, str]:
            async with slots:
                body = (await http.post("/sessions", json={"size": 1_000_000})).json()
                return body["session_id"], body["token"]

        return list(await asyncio.gather(*(one() for _ in range(count))))


async def _measure(base: str, redis_url: str) -> dict[str, list[float]]:
    sessions = await _sessions(base, SUBSCRIBERS)
    sent: dict[int, float] = {}
    received: dict[int, float] = {}
    ws_base = base.replace("http", "ws", 1)

    async def subscriber(sid: str, token: str, ready: asyncio.Event, sock: list[ClientConnection]) -> None:
        async with ws_connect(f"{ws_base}/sessions/{sid}/events?token={token}", open_timeout=60, ping_interval=None,
                              max_queue=None) as ws:
            sock.append(ws)
            async for message in ws:
                event = orjson.loads(message)
                stage = event["data"].get("stage", "")
                seq = int(stage.removeprefix("bench ")) if stage.startswith("bench ") else None
                if seq is None:
                    ready.set()
                    continue
                received[seq] = (time.perf_counter() - sent[seq]) * 1000

    readies = [asyncio.Event() for _ in sessions]
    sockets: list[ClientConnection] = []
    tasks = []
    for start in range(0, SUBSCRIBERS, 50):
        for (sid, token), ready in zip(sessions[start : start + 50], readies[start : start + 50]):
            tasks.append(asyncio.create_task(subscriber(sid, token, ready, sockets)))
        await asyncio.gather(*(r.wait() for r in readies[start : start + 50]))

    r = connect(redis_url)
    cfg = stream_config()
    seq = 0

    async def send(sid: str) -> None:
        nonlocal seq
        seq += 1
        sent[seq] = time.perf_counter()
        await publish(r, cfg, sid, AnalysisProgressData(stage=f"bench {seq}", progress=0.5))

    try:
        per_tick = round(STEADY_RATE * TICK_S)
        started = time.perf_counter()
        tick = 0
        while time.perf_counter() - started < STEADY_SECONDS:
            for sid, _token in random.sample(sessions, per_tick):
                await send(sid)
            tick += 1
            await asyncio.sleep(max(0.0, started + tick * TICK_S - time.perf_counter()))
        rate = seq / (time.perf_counter() - started)
        await _settle(received, seq)
        first = seq
        lanes = asyncio.Semaphore(BURST_LANES)

        async def lane(sid: str) -> None:
            async with lanes:
                await send(sid)

        await asyncio.gather(*(lane(sid) for sid, _token in sessions))
        await _settle(received, seq)
    finally:
        await r.aclose()
        for ws in sockets:
            await ws.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"steady": [received[n] for n in range(1, first + 1) if n in received],
            "burst": [received[n] for n in range(first + 1, seq + 1) if n in received],
            "lost": [float(seq - len(received))], "sent": [float(first), float(seq - first)], "rate": [rate]}


async def _settle(received: dict[int, float], expected: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(received) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


def run() -> Goal:
    limit = raise_fd_limit()
    with deployment() as (redis, processes):
        base = processes.gateway()
        got = asyncio.run(_measure(base, redis.url))
    steady, burst = got["steady"], got["burst"]
    steady_sent, burst_sent = (int(v) for v in got["sent"])
    p99 = percentile(steady, 99) if steady else float("inf")
    burst_p99 = percentile(burst, 99) if burst else float("inf")
    lost = int(got["lost"][0])
    return Goal(
        "fanout", "5. Fan-out: 1,000 WebSocket subscribers on one gateway",
        f"p99 XADD -> receipt < {TARGET_MS:g} ms", "n/a (absolute target)",
        f"p99 {p99:.1f} ms at {got['rate'][0]:.0f} events/s", f"{p99:.1f} ms vs {TARGET_MS:g} ms",
        p99 < TARGET_MS and lost == 0,
        [
            f"{SUBSCRIBERS} sessions, one WebSocket each, all in the benchmark process (`websockets` client, fd limit "
            f"{limit}); one gateway process",
            f"steady: {STEADY_RATE} events/s asked ({got['rate'][0]:.0f}/s achieved) for {STEADY_SECONDS:g} s, each to a random session ({steady_sent} "
            f"sent): received {len(steady)}, p50 {percentile(steady, 50):.1f} ms, p99 {p99:.1f} ms, max "
            f"{max(steady):.1f} ms" if steady else "steady: nothing received",
            f"burst: one event for every session, all {SUBSCRIBERS} published at once ({BURST_LANES} concurrent publishers; {burst_sent} sent): received {len(burst)}, "
            f"p50 {percentile(burst, 50):.1f} ms, p99 {burst_p99:.1f} ms, max {max(burst):.1f} ms (informational)"
            if burst else "burst: nothing received",
            f"events lost: {lost}",
        ],
    )
