"""Operator requests over ``dodo:control``: every listener hears requests made after it started, one claims a
task, answers come back on a short-lived list, and memory is collected for real."""

from __future__ import annotations

import asyncio
import time

from streams import keys
from streams.connection import Redis
from streams.control import answer, claim, listen, read_answers, reclaim_memory, send_request
from tests.support.garbage import uncollected_cycles


async def test_every_listener_answers_and_one_claims_the_task(redis: Redis) -> None:
    stop = asyncio.Event()
    heard: list[tuple[str, dict[str, str]]] = []

    def listener(name: str) -> asyncio.Task[None]:
        async def handle(request: dict[str, str]) -> None:
            heard.append((name, request))
            body = {"name": name, "swept": await claim(redis, request["id"], "sweep")}
            await answer(redis, request["id"], body)
        return asyncio.create_task(listen(redis, handle, stop, block_ms=100))

    old = await send_request(redis, "gc")
    tasks = [listener("a"), listener("b")]
    await asyncio.sleep(0.3)
    request_id = await send_request(redis, "gc")
    started = time.monotonic()
    replies = await read_answers(redis, request_id, enough=lambda rs: len(rs) == 2, timeout_s=5)
    assert time.monotonic() - started < 1.5, "two answers in: no need to wait for the timeout"
    stop.set()
    await asyncio.gather(*tasks)

    assert sorted(r["name"] for r in replies) == ["a", "b"]
    assert [r["swept"] for r in replies].count(True) == 1
    assert all(request["id"] == request_id for _name, request in heard), "a request from before was acted on"
    assert 0 < await redis.ttl(keys.control_claim(request_id, "sweep")) <= 60


async def test_a_request_too_old_is_ignored(redis: Redis) -> None:
    stop = asyncio.Event()
    heard: list[dict[str, str]] = []

    async def handle(request: dict[str, str]) -> None:
        heard.append(request)

    task = asyncio.create_task(listen(redis, handle, stop, block_ms=100))
    await asyncio.sleep(0.3)
    await redis.xadd(keys.CONTROL, {"action": "gc", "id": "stale", "at": repr(time.time() - 3600)})
    await send_request(redis, "gc")
    await asyncio.sleep(0.5)
    stop.set()
    await task
    assert [r["action"] for r in heard] == ["gc"] and heard[0]["id"] != "stale"


async def test_without_answers_reading_stops_at_the_timeout(redis: Redis) -> None:
    started = time.monotonic()
    assert await read_answers(redis, "nobody", enough=lambda rs: True, timeout_s=0.6) == []
    assert 0.5 < time.monotonic() - started < 2


def test_reclaiming_memory_collects_cycles_and_measures_the_process() -> None:
    with uncollected_cycles(500):
        freed = reclaim_memory()
    assert freed["objects_collected"] >= 500
    assert freed["rss_before"] > 0 and freed["rss_after"] > 0 and freed["freed_bytes"] >= 0
