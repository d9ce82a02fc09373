"""A finished result is never lost: kept sealed in Redis until the sink takes it, however long
Airtable refuses it, across worker restarts, and never left behind by an erasure."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace

import httpx
import pytest

from gateway.config import GatewayConfig
from gateway.lifecycle import erase_upload
from processors.analysis import analyze_job
from processors.config import WorkerConfig
from processors.delivery import DeliveryConfig, deliver, run_delivery
from processors.sinks import AirtableSink
from schemas.result import decode_result
from streams import keys
from streams.config import StreamConfig
from streams.connection import Redis
from streams.events import history
from streams.jobs import Job
from streams.media import store_media
from streams.results import kept_result
from streams.sessions import State, create_session, get_meta, update_meta
from tests.support.clock import SimulatedClock
from tests.support.fake_airtable import FakeAirtable
from tests.support.fake_openai import LocalServer

JPEG = b"\xff\xd8\xff\xe0 not decoded: analysis is off, so the result is a skipped analysis"


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer(FakeAirtable().app) as running:
        yield running


def sink_for(airtable: FakeAirtable, server: LocalServer, **options: object) -> AirtableSink:
    return AirtableSink(airtable.api_key, airtable.base_id, airtable.table, endpoint_url=server.url, **options)


def serve(server: LocalServer, airtable: FakeAirtable) -> tuple[FakeAirtable, AirtableSink]:
    """``airtable`` behind the module's server, and a sink (a worker's) writing to it."""
    server.app = airtable.app
    return airtable, sink_for(airtable, server)


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock()


@pytest.fixture
def worker_cfg(stream_cfg: StreamConfig, clock: SimulatedClock) -> WorkerConfig:
    return WorkerConfig(stream=stream_cfg, delivery=DeliveryConfig(clock=clock, poll_s=0.02, backoff_s=0.5))


async def analysed_session(r: Redis, cfg: WorkerConfig) -> Job:
    """A session whose frames are in Redis, as the decoder leaves it for the analyzer."""
    sid = f"{time.time_ns():032x}"
    await create_session(r, cfg.stream, sid, 1000, "video/mp4")
    await update_meta(r, cfg.stream, sid, state=State.PROCESSING, duration=12.0, width=320, height=240)
    await store_media(r, cfg.stream, sid, [(0.5, JPEG)], None)
    return Job(stream=keys.ANALYZE, entry_id="1-0", session_id=sid, fields={"sid": sid})


async def state_of(r: Redis, sid: str) -> str | None:
    meta = await get_meta(r, sid)
    return None if meta is None else meta["state"]


Start = Callable[[WorkerConfig, AirtableSink], None]


async def done_soon(r: Redis, sid: str, within_s: float = 10.0) -> bool:
    """Whether the session reaches ``done`` within ``within_s`` of real time."""
    for _ in range(int(within_s / 0.05)):
        if await state_of(r, sid) == State.DONE:
            return True
        await asyncio.sleep(0.05)
    return False


@pytest.fixture
async def start_delivery(redis: Redis) -> AsyncIterator[Start]:
    """Start a worker's delivery loop (``run_delivery``); every loop started is stopped after the test."""
    tasks: list[asyncio.Task[None]] = []
    stop = asyncio.Event()

    def start(cfg: WorkerConfig, sink: AirtableSink) -> None:
        tasks.append(asyncio.create_task(run_delivery(redis, cfg.stream, cfg.delivery, sink, stop)))

    yield start
    stop.set()
    await asyncio.gather(*tasks)


async def test_five_minutes_of_429s_lose_no_result(redis, worker_cfg, clock, server, start_delivery):
    airtable, sink = serve(server, FakeAirtable(clock=clock))
    airtable.lock_for(300)
    job = await analysed_session(redis, worker_cfg)
    started = clock()

    await analyze_job(redis, worker_cfg, sink, job)
    assert await state_of(redis, job.session_id) == State.STORING
    assert await redis.exists(*keys.media_keys(job.session_id)) == 0
    start_delivery(worker_cfg, sink)
    while await state_of(redis, job.session_id) != State.DONE:
        assert clock() - started < 420, "the result was not stored within two minutes of the lock's end"
        await asyncio.sleep(0.02)
        clock.advance(2)

    [row] = airtable.rows(session_id=job.session_id)
    assert decode_result(row["result"]).session_id == job.session_id
    writes = [r.at for r in airtable.requests if r.method == "PATCH"]
    assert writes[-1] >= started + 300 and len(writes) <= 300 // 30 + 2
    assert all(later - earlier >= 30 for earlier, later in zip(writes, writes[1:])), "each 30 s lock was waited out"
    assert [e.type for e in await history(redis, job.session_id)][-1] == "analysis_complete"
    assert await redis.exists(keys.result(job.session_id), keys.SINK_QUEUE) == 0
    await sink.close()


async def test_the_wait_is_the_one_airtable_announces(redis, worker_cfg, server, start_delivery):
    airtable, sink = serve(server, FakeAirtable(lock_s=1, announce_retry_after=True))
    airtable.fail(429)
    job = await analysed_session(redis, worker_cfg)
    real_time = replace(worker_cfg, delivery=replace(worker_cfg.delivery, clock=time.time))

    await analyze_job(redis, real_time, sink, job)
    start_delivery(real_time, sink)
    assert await done_soon(redis, job.session_id)
    first, second = [r.at for r in airtable.requests if r.method == "PATCH"]
    assert second - first >= 1 and len(airtable.rate_limited) == 1
    assert len(airtable.rows(session_id=job.session_id)) == 1
    await sink.close()


async def test_a_result_waiting_for_the_sink_outlives_its_worker(redis, worker_cfg, clock, server, start_delivery):
    airtable, first_worker = serve(server, FakeAirtable(clock=clock))
    airtable.lock_for(60)
    job = await analysed_session(redis, worker_cfg)
    await analyze_job(redis, worker_cfg, first_worker, job)
    await first_worker.close()
    kept = await kept_result(redis, worker_cfg.stream, job.session_id)
    assert kept is not None and decode_result(kept).session_id == job.session_id
    await analyze_job(redis, worker_cfg, first_worker, job)
    assert await state_of(redis, job.session_id) == State.STORING, "a redelivered job leaves the kept result be"

    clock.advance(61)
    next_worker = sink_for(airtable, server)
    start_delivery(worker_cfg, next_worker)
    assert await done_soon(redis, job.session_id)
    assert airtable.rows(session_id=job.session_id)
    await next_worker.close()


async def test_an_erase_racing_a_put_leaves_no_record(redis, worker_cfg, server):
    airtable, sink = serve(server, FakeAirtable())
    real_time = replace(worker_cfg, delivery=replace(worker_cfg.delivery, clock=time.time))
    job = await analysed_session(redis, real_time)
    airtable.delay(1.0)

    put = asyncio.create_task(analyze_job(redis, real_time, sink, job))
    while not any(r.method == "PATCH" for r in airtable.requests):
        await asyncio.sleep(0.01)
    receipt = await erase_upload(redis, GatewayConfig(stream=real_time.stream), sink, job.session_id)
    await put

    assert receipt.result_deleted is False, "the write was still on its way when the erase looked"
    assert airtable.records == {}
    assert await redis.exists(keys.result(job.session_id)) == 0
    assert await redis.zscore(keys.SINK_QUEUE, job.session_id) is None
    await sink.close()


async def test_an_erase_while_the_base_is_locked_deletes_the_record_once_it_opens(redis, worker_cfg, clock, server,
                                                                                    start_delivery):
    airtable, sink = serve(server, FakeAirtable(clock=clock))
    job = await analysed_session(redis, worker_cfg)
    await analyze_job(redis, worker_cfg, sink, job)
    assert airtable.rows(session_id=job.session_id)
    airtable.lock_for(30)

    receipt = await erase_upload(redis, GatewayConfig(stream=worker_cfg.stream), sink, job.session_id)
    assert receipt.result_deleted is False and airtable.rows(session_id=job.session_id)
    start_delivery(worker_cfg, sink)
    for _ in range(300):
        if not airtable.records:
            break
        await asyncio.sleep(0.02)
        clock.advance(1)
    assert airtable.records == {}
    await sink.close()


async def test_a_column_that_refuses_the_result_fails_the_session_clearly_without_retrying(redis, worker_cfg, server):
    table = {"session_id": "singleLineText", "result": "number", "created_at": "dateTime"}
    airtable, sink = serve(server, FakeAirtable(fields=table))
    job = await analysed_session(redis, worker_cfg)

    await analyze_job(redis, worker_cfg, sink, job)

    meta = await get_meta(redis, job.session_id)
    assert meta is not None and meta["state"] == State.FAILED and meta["error_code"] == "sink_failed"
    assert "422" in meta["error"] and "doctor" in meta["error"]
    assert len(airtable.requests) == 1
    assert await redis.exists(keys.result(job.session_id), keys.SINK_QUEUE) == 0
    await sink.close()


async def test_an_erased_session_is_deleted_from_the_sink_by_the_queue(redis, worker_cfg, server):
    airtable, sink = serve(server, FakeAirtable())
    job = await analysed_session(redis, worker_cfg)
    await analyze_job(redis, worker_cfg, sink, job)
    await redis.zadd(keys.ERASED, {job.session_id: time.time()})

    await deliver(redis, worker_cfg.stream, worker_cfg.delivery, sink, job.session_id)

    assert airtable.records == {}
    await sink.close()


async def test_the_result_is_served_from_redis_while_the_sink_has_not_taken_it(redis, settings, clock, server):
    from dodolens.runner import Runtime
    from gateway.auth import issue_token

    airtable = FakeAirtable(clock=clock)
    server.app = airtable.app
    settings = replace(settings, airtable_api_key=airtable.api_key, airtable_base_id=airtable.base_id,
                       airtable_endpoint=server.url)
    async with Runtime(settings, workers=False) as gateway:
        assert gateway.stream is not None
        cfg = WorkerConfig(stream=gateway.stream, delivery=DeliveryConfig(clock=clock))
        sink = sink_for(airtable, server)
        airtable.lock_for(300)
        job = await analysed_session(redis, cfg)
        await analyze_job(redis, cfg, sink, job)
        token, _ = issue_token(gateway.stream.keyring, job.session_id, 60)
        before = len(airtable.requests)
        async with httpx.AsyncClient(base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}) as client:
            answers = [await client.get(f"/sessions/{job.session_id}/result") for _ in range(3)]
            status = (await client.get(f"/sessions/{job.session_id}")).json()["state"]
        assert [a.status_code for a in answers] == [200] * 3
        assert answers[0].json()["session_id"] == job.session_id and status == State.STORING
        assert len(airtable.requests) == before, "polling a result kept in Redis spends no Airtable request"
        await sink.close()
