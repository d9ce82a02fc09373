"""At-least-once processing: a worker killed mid-job is replaced, a poison job is dead-lettered."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from dodolens.client import analyze_bytes, create, send_chunks
from dodolens.runner import Runtime
from dodolens.settings import Settings
from processors.worker import run_group
from streams import keys
from streams.config import StreamConfig
from streams.connection import Redis
from streams.events import history
from streams.jobs import Job, enqueue
from tests.support.fake_openai import CHAT, FakeOpenAI, Fault, LocalServer
from tests.support.videos import make_video

SECRET = "ab" * 32
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def model() -> AsyncIterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI()
    async with LocalServer(fake.app) as server:
        yield fake, server.url + "/v1"


def fault_settings(settings: Settings, model: tuple[FakeOpenAI, str], **changes: object) -> Settings:
    fake, url = model
    return settings.with_overrides(master_secret=bytes.fromhex(SECRET), base_url=url, api_key=fake.api_key,
                                   max_retries=0, claim_idle_ms=800, **changes)


def spawn_worker(settings: Settings) -> subprocess.Popen[bytes]:
    env = {**os.environ, "REDIS_URL": settings.redis_url or "", "DODOLENS_MASTER_SECRET": SECRET,
           "OPENAI_BASE_URL": settings.worker.analyzer.base_url or "",
           "OPENAI_API_KEY": settings.worker.analyzer.api_key or "",
           "DODOLENS_OPENAI_MAX_RETRIES": "0", "DODOLENS_CLAIM_IDLE_MS": str(settings.worker.claim_idle_ms),
           "DODOLENS_MAX_DELIVERIES": str(settings.worker.max_deliveries), "DODOLENS_RESULTS_DB": settings.sink.results_db}
    return subprocess.Popen([sys.executable, "-m", "dodolens.cli", "worker"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def kill_when_analyzing(worker: subprocess.Popen[bytes], fake: FakeOpenAI, calls: int) -> None:
    """SIGKILL the worker once it is waiting on the model (a crash in the middle of a job)."""
    while len(fake.received(CHAT)) < calls:
        await asyncio.sleep(0.05)
    worker.send_signal(signal.SIGKILL)
    worker.wait()


async def test_a_killed_worker_is_replaced_and_the_session_completes_once(settings: Settings, model, redis: Redis) -> None:
    fake, _ = model
    fake.inject(Fault(delay_s=60), endpoint=CHAT)
    s = fault_settings(settings, model)
    async with Runtime(s, workers=False) as gateway:
        doomed = spawn_worker(s)
        upload = asyncio.create_task(analyze_bytes(gateway.url, make_video(duration=3.0), timeout_s=60))
        try:
            await asyncio.wait_for(kill_when_analyzing(doomed, fake, 1), 60)
        finally:
            doomed.kill()
        async with Runtime(s, gateway=False):
            outcome = await asyncio.wait_for(upload, 60)
    assert outcome.result is not None and outcome.result["analysis"]["status"] == "complete"
    types = [e["type"] for e in outcome.events]
    assert types.count("analysis_complete") == 1
    assert len(fake.received(CHAT)) == 2
    async with Runtime(s, gateway=False, workers=False) as rt:
        assert await rt.sink.get(outcome.session_id) is not None
    assert await redis.xlen(keys.DEAD) == 0
    assert await redis.xpending(keys.ANALYZE, keys.ANALYZERS) == {"pending": 0, "min": None, "max": None, "consumers": []}


async def test_a_job_that_keeps_killing_workers_goes_to_the_dead_letters(settings: Settings, model, redis: Redis) -> None:
    fake, _ = model
    fake.inject(Fault(delay_s=60), endpoint=CHAT, times=10)
    s = fault_settings(settings, model, max_deliveries=2)
    async with Runtime(s, workers=False) as gateway:
        upload = asyncio.create_task(analyze_bytes(gateway.url, make_video(duration=2.0, audio=None), timeout_s=60))
        for attempt in (1, 2):
            worker = spawn_worker(s)
            try:
                await asyncio.wait_for(kill_when_analyzing(worker, fake, attempt), 60)
            finally:
                worker.kill()
        async with Runtime(s, gateway=False):
            outcome = await asyncio.wait_for(upload, 60)
    assert outcome.error is not None and outcome.error["code"] == "too_many_attempts"
    assert outcome.error["retryable"] is True
    dead = await redis.xrange(keys.DEAD)
    assert len(dead) == 1 and dead[0][1][b"sid"].decode() == outcome.session_id
    left = [k async for k in redis.scan_iter(match=f"dodo:{{{outcome.session_id}}}:*")]
    assert not [k for k in left if k.endswith((b":chunks", b":frames", b":audio"))]


async def test_processing_past_its_time_bound_fails_cleanly(settings: Settings, model, redis: Redis) -> None:
    fake, _ = model
    fake.inject(Fault(delay_s=30), times=8, endpoint=CHAT)
    stalling = fault_settings(settings, model, processing_timeout_s=2.0).with_overrides(timeout_s=1.0, max_retries=3)
    async with Runtime(stalling) as rt:
        outcome = await asyncio.wait_for(analyze_bytes(rt.url, make_video(duration=2.0)), 30)
    assert outcome.error is not None and outcome.error["code"] == "processing_timeout"
    left = [k async for k in redis.scan_iter(match=f"dodo:{{{outcome.session_id}}}:*")]
    assert not [k for k in left if k.endswith((b":chunks", b":frames", b":audio"))]


async def test_an_analysis_longer_than_the_processing_timeout_but_healthy_completes(settings: Settings, model,
                                                                                    redis: Redis) -> None:
    """Every request answers within its own timeout, so the job's budget is what those requests may take."""
    fake, _ = model
    fake.inject(Fault(delay_s=2.5), endpoint=CHAT)
    slow = fault_settings(settings, model, processing_timeout_s=1.0).with_overrides(timeout_s=4.0)
    async with Runtime(slow) as rt:
        outcome = await asyncio.wait_for(analyze_bytes(rt.url, make_video(duration=2.0)), 30)
    assert outcome.error is None, outcome.error
    assert outcome.result is not None and outcome.result["timings"]["analysis_s"] > slow.worker.processing_timeout_s


async def test_a_worker_runs_at_most_its_concurrency(redis: Redis) -> None:
    cfg = StreamConfig()
    running = peak = done = 0
    stop = asyncio.Event()

    async def handler(_job: object) -> None:
        nonlocal running, peak, done
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.1)
        running -= 1
        done += 1
        if done == 8:
            stop.set()

    for i in range(8):
        await enqueue(redis, cfg, keys.JOBS, f"{i:032x}")
    await asyncio.wait_for(run_group(redis, cfg, stream=keys.JOBS, group=keys.DECODERS, consumer="c", handler=handler,
                                     concurrency=2, claim_idle_ms=60_000, max_deliveries=3, block_ms=100, stop=stop), 20)
    assert peak == 2 and done == 8


async def test_a_job_longer_than_the_claim_idle_time_is_not_taken_over_by_another_worker(redis: Redis) -> None:
    """Two workers, a job that runs five times ``claim_idle_ms``: it runs once, delivered once."""
    cfg = StreamConfig()
    ran: list[tuple[str, str]] = []
    stop = asyncio.Event()

    def worker(name: str) -> Callable[[Job], Awaitable[None]]:
        async def handler(job: Job) -> None:
            ran.append((name, job.entry_id))
            await asyncio.sleep(1.5)
            stop.set()
        return handler

    entry = await enqueue(redis, cfg, keys.JOBS, "ab" * 16)
    await asyncio.wait_for(asyncio.gather(*(
        run_group(redis, cfg, stream=keys.JOBS, group=keys.DECODERS, consumer=name, handler=worker(name),
                  concurrency=1, claim_idle_ms=300, max_deliveries=3, block_ms=50, stop=stop)
        for name in ("first", "second"))), 20)
    assert len(ran) == 1 and ran[0][1] == entry
    assert await redis.xpending(keys.JOBS, keys.DECODERS) == {"pending": 0, "min": None, "max": None,
                                                              "consumers": []}


async def test_a_follow_job_whose_worker_dies_is_taken_over_and_decoded_once(settings: Settings, model,
                                                                              redis: Redis) -> None:
    """A worker killed while decoding an upload as it arrives: another claims the follow job, reads the
    upload again from its first chunk, and the session gets its frames exactly once."""
    s = fault_settings(settings, model, chunk_size=64 * 1024)
    video = make_video(duration=6.0, width=640, height=360, noise=3, container="webm", codec="vp9", audio="opus")
    async with Runtime(s, workers=False) as gateway, httpx.AsyncClient(base_url=gateway.url) as http:
        session = await create(http, len(video), "video/webm")
        sid, token, chunk = session["session_id"], session["token"], session["chunk_size"]
        count = -(-len(video) // chunk)
        half = count // 2
        doomed = spawn_worker(s)
        try:
            await send_chunks(http, sid, token, memoryview(video), chunk, list(range(half)), 3, None)
            async with asyncio.timeout(60):
                while int(await redis.hget(keys.meta(sid), "followed") or 0) < half:
                    await asyncio.sleep(0.05)
        finally:
            doomed.kill()
            doomed.wait()
        owner = (await redis.hget(keys.meta(sid), "decoder")).decode()
        assert owner in {entry.decode() for entry, _ in await redis.xrange(keys.FOLLOW)}
        async with Runtime(s, gateway=False):
            await send_chunks(http, sid, token, memoryview(video), chunk, list(range(half, count)), 3, None)
            response = await http.post(f"/sessions/{sid}/complete", headers={"Authorization": f"Bearer {token}"},
                                       json={"chunks": count, "sha256": hashlib.sha256(video).hexdigest()})
            assert response.status_code == 202
            async with asyncio.timeout(60):
                while "analysis_complete" not in [e.type for e in await history(redis, sid)]:
                    await asyncio.sleep(0.1)
    types = [e.type for e in await history(redis, sid)]
    assert types.count("frames_extracted") == 1 and "error" not in types
    assert (await redis.hget(keys.meta(sid), "decoder")).decode() == owner
    assert await redis.xlen(keys.DEAD) == 0
