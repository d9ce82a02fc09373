"""The sweeper: orphans and TTL-less media are deleted with an alert; memory pressure sheds the oldest sessions."""

from __future__ import annotations

import asyncio
import time

import pytest

from processors.sweeper import SweepReport, forget_gone_consumers, sweep_once
from streams import keys
from streams.chunks import append_chunk
from streams.config import StreamConfig
from streams.connection import Redis, connect
from streams.embedded import EmbeddedRedis
from streams.events import history
from streams.jobs import enqueue, ensure_group, read_new
from streams.sessions import State, create_session, set_state


async def alerts(redis: Redis) -> list[str]:
    return [f[b"type"].decode() for _id, f in await redis.xrange(keys.ALERTS)]


async def test_media_of_a_finished_session_is_an_orphan(redis: Redis, stream_cfg: StreamConfig) -> None:
    sid = "1" * 32
    await create_session(redis, stream_cfg, sid, 10, "video/mp4")
    await append_chunk(redis, stream_cfg, sid, 0, b"0123456789")
    await set_state(redis, stream_cfg, sid, State.DONE)
    size = await redis.memory_usage(keys.chunks(sid), samples=0)
    report = await sweep_once(redis, stream_cfg)
    assert report.orphans_deleted == [keys.chunks(sid)]
    assert report.orphan_bytes == size > 10
    assert not await redis.exists(keys.chunks(sid))
    assert await alerts(redis) == ["failed_cleanup"]
    assert any(b"failed_cleanup" in f[b"r"] for _id, f in await redis.xrange(keys.AUDIT))


async def test_media_without_a_ttl_is_deleted_even_for_a_live_session(redis: Redis, stream_cfg: StreamConfig) -> None:
    sid, live = "2" * 32, "3" * 32
    for s in (sid, live):
        await create_session(redis, stream_cfg, s, 10, "video/mp4")
        await append_chunk(redis, stream_cfg, s, 0, b"0123456789")
    await redis.persist(keys.chunks(sid))
    report = await sweep_once(redis, stream_cfg)
    assert report.orphans_deleted == [keys.chunks(sid)]
    assert await redis.exists(keys.chunks(live))


async def test_nothing_to_sweep_raises_no_alert(redis: Redis, stream_cfg: StreamConfig) -> None:
    sid = "4" * 32
    await create_session(redis, stream_cfg, sid, 10, "video/mp4")
    await append_chunk(redis, stream_cfg, sid, 0, b"0123456789")
    report = await sweep_once(redis, stream_cfg)
    assert report.orphans_deleted == [] and report.orphan_bytes == 0 and await alerts(redis) == []


@pytest.fixture
async def small_redis() -> Redis:
    with EmbeddedRedis(maxmemory="24mb") as server:
        client = connect(server.url)
        yield client
        await client.aclose()


async def test_memory_pressure_fails_the_oldest_sessions_first(small_redis: Redis) -> None:
    cfg = StreamConfig(chunk_size=256 * 1024)
    sids: list[str] = []
    while (info := await small_redis.info("memory"))["used_memory"] < 0.85 * info["maxmemory"]:
        sid = f"{len(sids):032x}"
        await create_session(small_redis, cfg, sid, 8 * cfg.chunk_size, "video/mp4")
        for i in range(8):
            await append_chunk(small_redis, cfg, sid, i, bytes([i]) * cfg.chunk_size)
        sids.append(sid)
        time.sleep(0.002)
    report = await sweep_once(small_redis, cfg)
    assert report.pressure_failed, "past 80 % of maxmemory"
    assert report.pressure_failed == sids[: len(report.pressure_failed)], "oldest first"
    assert len(report.pressure_failed) < len(sids), "only as many as needed"
    for sid in report.pressure_failed:
        assert not await small_redis.exists(keys.chunks(sid))
        (last,) = [e for e in await history(small_redis, sid) if e.type == "error"]
        assert last.data["code"] == "memory_pressure" and last.data["retryable"]
    info = await small_redis.info("memory")
    assert info["used_memory"] <= 0.8 * info["maxmemory"]
    assert "memory_pressure" in await alerts(small_redis)


async def test_consumers_gone_for_long_with_nothing_pending_are_forgotten(redis: Redis, stream_cfg: StreamConfig) -> None:
    await ensure_group(redis, keys.JOBS, keys.DECODERS)
    await enqueue(redis, stream_cfg, keys.JOBS, "5" * 32)
    await read_new(redis, keys.JOBS, keys.DECODERS, "busy", 1, 10)
    await redis.xgroup_createconsumer(keys.JOBS, keys.DECODERS, "idle")
    await asyncio.sleep(0.05)
    report = SweepReport()
    await forget_gone_consumers(redis, report, idle_ms=10)
    assert report.consumers_forgotten == ["decoders/idle"]
    names = {c["name"] for c in await redis.xinfo_consumers(keys.JOBS, keys.DECODERS)}
    assert names == {b"busy"}, "a consumer holding a pending entry is kept for XAUTOCLAIM"
