"""Live figures and the design's alert thresholds: memory, slow sessions, failed cleanups, error rate."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from streams import keys
from streams.config import StreamConfig
from streams.connection import Redis, connect
from streams.embedded import EmbeddedRedis
from streams.health import evaluate_alerts, gather, in_progress, parse_meminfo, recent_outcomes, recorded_alerts, redis_memory
from streams.jobs import ensure_group
from streams.lag import LagTracker
from streams.sessions import State, create_session, set_state

MEMINFO = """MemTotal:       1000000 kB
MemFree:         100000 kB
MemAvailable:    150000 kB
Buffers:          20000 kB
"""


def test_host_memory_from_meminfo() -> None:
    assert parse_meminfo(MEMINFO) == {"total_bytes": 1_024_000_000, "available_bytes": 153_600_000, "fraction": 0.85}
    assert parse_meminfo("MemTotal: 10 kB\n") is None


def figures(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "redis_memory": {"used_bytes": 1, "max_bytes": 100, "fraction": 0.5},
        "host_memory": {"total_bytes": 100, "available_bytes": 50, "fraction": 0.5},
        "in_progress": [], "recorded_alerts": [], "groups": [],
    }
    return {**base, **changes}


def outcomes(failed: int, ended: int) -> dict[str, Any]:
    return {"window_s": 900, "error_rate": {"failed": failed, "ended": ended, "rate": failed / ended if ended else None}}


def kinds(fig: dict[str, Any], out: dict[str, Any] | None = None) -> list[str]:
    return [a.kind for a in evaluate_alerts(fig, out or outcomes(0, 0))]


def test_nothing_to_report_within_thresholds() -> None:
    assert kinds(figures(), outcomes(1, 20)) == []


@pytest.mark.parametrize(("which", "fraction", "alert"), [("redis_memory", 0.81, True), ("redis_memory", 0.80, False),
                                                         ("host_memory", 0.95, True), ("redis_memory", None, False)])
def test_memory_over_80_percent(which: str, fraction: float | None, alert: bool) -> None:
    fig = figures(**{which: {"used_bytes": 1, "max_bytes": 0, "fraction": fraction}})
    assert kinds(fig) == (["high_memory"] if alert else [])


def test_processing_over_3_minutes() -> None:
    slow = [{"session": "p" * 20, "state": "analyzing", "seconds": 181.0}, {"session": "q" * 20, "state": "queued",
                                                                            "seconds": 20.0}]
    [alert] = evaluate_alerts(figures(in_progress=slow), outcomes(0, 0))
    assert alert.kind == "long_processing" and "1 session(s)" in alert.message and "181 s" in alert.message
    assert kinds(figures(in_progress=slow[1:])) == []


def test_recorded_failed_cleanups_and_other_recorded_alerts() -> None:
    recorded = [{"type": "failed_cleanup", "keys": "2"}, {"type": "failed_cleanup"}, {"type": "memory_pressure"}]
    alerts = evaluate_alerts(figures(recorded_alerts=recorded), outcomes(0, 0))
    assert [(a.kind, a.level) for a in alerts] == [("failed_cleanup", "critical"), ("memory_pressure", "warning")]
    assert alerts[0].message.startswith("2 failed cleanup(s)")


@pytest.mark.parametrize(("failed", "ended", "alert"), [(1, 20, False), (2, 20, True), (1, 1, True), (0, 0, False)])
def test_error_rate_over_5_percent(failed: int, ended: int, alert: bool) -> None:
    assert kinds(figures(), outcomes(failed, ended)) == (["error_rate"] if alert else [])


def test_unhealthy_consumer_groups_alert() -> None:
    groups = [{"stream": keys.JOBS, "group": keys.DECODERS, "status": "STALLED", "reason": "lag 3"},
              {"stream": keys.ANALYZE, "group": keys.ANALYZERS, "status": "OK", "reason": "caught up"}]
    [alert] = evaluate_alerts(figures(groups=groups), outcomes(0, 0))
    assert (alert.kind, alert.level) == ("consumer_lag", "critical") and "dodo:jobs/decoders STALLED" in alert.message


@pytest.fixture
async def small_redis() -> AsyncIterator[Redis]:
    server = EmbeddedRedis(maxmemory="8mb").start()
    client = connect(server.url)
    try:
        yield client
    finally:
        await client.aclose()
        server.stop()


async def test_redis_memory_against_maxmemory(small_redis: Redis, redis: Redis) -> None:
    limited = await redis_memory(small_redis)
    assert limited["max_bytes"] == 8 * 1024 * 1024 and 0 < limited["fraction"] < 1
    for i in range(9):
        await small_redis.set(f"filler:{i}", b"x" * (512 * 1024))
    assert (await redis_memory(small_redis))["fraction"] > 0.8
    assert (await redis_memory(redis))["fraction"] is None


async def test_live_figures_from_redis(redis: Redis, stream_cfg: StreamConfig) -> None:
    now = time.time()
    for sid, state, uploaded in (("a" * 32, State.PROCESSING, now - 200), ("b" * 32, State.QUEUED, now - 5),
                                 ("c" * 32, State.UPLOADING, None)):
        await create_session(redis, stream_cfg, sid, 10, "video/mp4")
        extra = {"uploaded_at": uploaded} if uploaded else {}
        await set_state(redis, stream_cfg, sid, state, **extra)
    slow = await in_progress(redis, stream_cfg, now=now)
    assert [(s["state"], round(s["seconds"])) for s in slow] == [("processing", 200), ("queued", 5)]
    assert all(len(s["session"]) == 20 and s["session"] != "a" * 32 for s in slow)
    await redis.xadd(keys.ALERTS, {"type": "failed_cleanup", "at": now - 7200}, id=f"{int((now - 7200) * 1000)}-0")
    await redis.xadd(keys.ALERTS, {"type": "failed_cleanup", "at": now, "keys": 1})
    recent = await recorded_alerts(redis, 3600)
    assert [(a["type"], a["keys"]) for a in recent] == [("failed_cleanup", "1")]
    await ensure_group(redis, keys.JOBS, keys.DECODERS)
    fig = await gather(redis, stream_cfg, LagTracker())
    assert fig["active_sessions"] == 3 and fig["queues"] == {keys.JOBS: 0, keys.FOLLOW: 0, keys.ANALYZE: 0}
    assert [g["group"] for g in fig["groups"]] == [keys.DECODERS]
    assert sorted(a.kind for a in evaluate_alerts(fig, await recent_outcomes(redis))) == ["failed_cleanup",
                                                                                          "long_processing"]
