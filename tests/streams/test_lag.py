"""Consumer-group lag: the Burrow-style verdict (pure), the figures Redis gives, and ``dodolens lag``."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest
import redis as sync_redis
from hypothesis import given
from hypothesis import strategies as st

from dodolens.cli import main
from streams import keys
from streams.connection import Redis
from streams.embedded import EmbeddedRedis
from streams.jobs import ensure_group
from streams.lag import GroupSample, LagTracker, Status, evaluate, read_samples


def sample(at: float, lag: int | None, read: int, *, idle: int | None = None, consumers: int = 1) -> GroupSample:
    return GroupSample(stream=keys.JOBS, group=keys.DECODERS, at=at, consumers=consumers, pending=0, lag=lag,
                       entries_read=read, last_delivered_id=f"{1000 + read}-0", oldest_pending_idle_ms=idle,
                       length=100)


def window(*points: tuple[int | None, int], every_s: float = 20.0) -> list[GroupSample]:
    return [sample(i * every_s, lag, read) for i, (lag, read) in enumerate(points)]


def test_no_sample_is_a_caller_error() -> None:
    with pytest.raises(ValueError):
        evaluate([])


@pytest.mark.parametrize(
    ("points", "status", "words"),
    [
        ([(0, 10), (0, 10), (0, 10)], Status.OK, "caught up"),
        ([(5, 10), (0, 15), (3, 15)], Status.OK, "was 0"),
        ([(5, 10), (5, 10), (5, 10)], Status.STALLED, "nothing read"),
        ([(5, 10), (7, 12), (9, 14)], Status.WARN, "growing"),
        ([(5, 10), (5, 12), (5, 14)], Status.WARN, "not shrinking"),
        ([(9, 10), (7, 12), (4, 14)], Status.OK, "going down"),
        ([(9, 10), (10, 12), (8, 14)], Status.OK, "going down"),
        ([(9, 10)], Status.OK, "no trend"),
        ([(None, 10), (None, 10)], Status.OK, "unknown"),
    ],
)
def test_verdict_follows_burrow_rules(points: list[tuple[int | None, int]], status: Status, words: str) -> None:
    verdict = evaluate(window(*points))
    assert verdict.status == status
    assert words in verdict.reason


def test_nothing_read_for_a_short_while_is_only_a_warning() -> None:
    busy = window((3, 0), (3, 0), (3, 0), every_s=5.0)
    verdict = evaluate(busy, stall_after_s=30.0)
    assert verdict.status == Status.WARN and "nothing read for 10 s (1 consumer(s))" in verdict.reason
    assert evaluate(busy, stall_after_s=10.0).status == Status.STALLED


def test_with_no_consumer_at_all_a_backlog_is_stalled_at_once() -> None:
    nobody = [replace(s, consumers=0) for s in window((3, 0), (3, 0), every_s=1.0)]
    verdict = evaluate(nobody)
    assert verdict.status == Status.STALLED and "no consumer" in verdict.reason


def test_a_pending_entry_idle_too_long_warns_even_without_lag() -> None:
    w = window((0, 10), (0, 10))
    w[-1] = replace(w[-1], oldest_pending_idle_ms=200_000, pending=1)
    verdict = evaluate(w, max_pending_idle_ms=180_000)
    assert verdict.status == Status.WARN and "200 s" in verdict.reason
    assert evaluate(w, max_pending_idle_ms=300_000).status == Status.OK


@given(st.lists(st.integers(min_value=1, max_value=10_000), min_size=2, max_size=12), st.integers(0, 10**6))
def test_lag_with_nothing_read_is_always_stalled(lags: list[int], read: int) -> None:
    assert evaluate([sample(i * 30.0, lag, read) for i, lag in enumerate(lags)]).status == Status.STALLED


@given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=12))
def test_a_window_that_touches_zero_lag_is_ok(lags: list[int]) -> None:
    lags[len(lags) // 2] = 0
    assert evaluate([sample(float(i), lag, i * 7) for i, lag in enumerate(lags)]).status == Status.OK


@given(st.lists(st.integers(min_value=1, max_value=1_000), min_size=2, max_size=12))
def test_reading_while_lag_never_drops_is_warn(steps: list[int]) -> None:
    lags = [sum(steps[: i + 1]) for i in range(len(steps))]
    assert evaluate([sample(float(i), lag, i + 1) for i, lag in enumerate(lags)]).status == Status.WARN


async def backlog(r: Redis, n: int, read: int, acked: int) -> list[str]:
    """``n`` jobs, ``read`` of them delivered to consumer c1, ``acked`` of those acknowledged."""
    await ensure_group(r, keys.JOBS, keys.DECODERS)
    for i in range(n):
        await r.xadd(keys.JOBS, {"sid": f"{i:032x}"})
    ids: list[str] = []
    if read:
        reply = await r.xreadgroup(keys.DECODERS, "c1", {keys.JOBS: ">"}, count=read)
        ids = [entry.decode() for entry, _fields in reply[0][1]]
    if acked:
        await r.xack(keys.JOBS, keys.DECODERS, *ids[:acked])
    return ids


async def test_figures_match_a_known_backlog(redis: Redis) -> None:
    await backlog(redis, n=10, read=6, acked=2)
    await asyncio.sleep(0.05)
    [s] = await read_samples(redis)
    assert (s.stream, s.group) == (keys.JOBS, keys.DECODERS)
    assert s.length == 10 and s.entries_read == 6
    assert s.pending == 4 and s.lag == 4 and s.consumers == 1
    assert s.oldest_pending_idle_ms is not None and 40 <= s.oldest_pending_idle_ms < 10_000


async def test_groups_not_created_yet_are_skipped(redis: Redis) -> None:
    assert await read_samples(redis) == []
    await ensure_group(redis, keys.ANALYZE, keys.ANALYZERS)
    [s] = await read_samples(redis)
    assert (s.group, s.lag, s.pending, s.oldest_pending_idle_ms) == (keys.ANALYZERS, 0, 0, None)


async def test_lag_is_counted_when_redis_cannot_tell(redis: Redis) -> None:
    await backlog(redis, n=8, read=3, acked=3)
    newest = (await redis.xrevrange(keys.JOBS, count=1))[0][0]
    await redis.xdel(keys.JOBS, newest)
    assert (await redis.xinfo_groups(keys.JOBS))[0]["lag"] is None
    [s] = await read_samples(redis)
    assert s.lag == 4


async def test_a_group_nobody_reads_is_reported_stalled(redis: Redis) -> None:
    await backlog(redis, n=5, read=0, acked=0)
    tracker = LagTracker(min_interval_s=0.0)
    for _ in range(3):
        tracker.add(await read_samples(redis))
        await asyncio.sleep(0.02)
    [(s, verdict)] = tracker.verdicts()
    assert s.lag == 5 and s.consumers == 0 and verdict.status == Status.STALLED


async def test_a_consumer_that_stopped_reading_is_stalled_after_the_grace_time(redis: Redis) -> None:
    await backlog(redis, n=5, read=1, acked=0)
    patient, strict = LagTracker(min_interval_s=0.0), LagTracker(min_interval_s=0.0, stall_after_s=0.05)
    for _ in range(3):
        samples = await read_samples(redis)
        patient.add(samples)
        strict.add(samples)
        await asyncio.sleep(0.05)
    assert patient.verdicts()[0][1].status == Status.WARN
    [(s, verdict)] = strict.verdicts()
    assert (s.lag, s.pending, s.consumers, verdict.status) == (4, 1, 1, Status.STALLED)


async def test_a_group_that_reads_is_not_stalled_and_one_that_falls_behind_warns(redis: Redis) -> None:
    await backlog(redis, n=5, read=0, acked=0)
    tracker = LagTracker(window=3, min_interval_s=0.0)
    tracker.add(await read_samples(redis))
    await redis.xreadgroup(keys.DECODERS, "c1", {keys.JOBS: ">"}, count=2)
    tracker.add(await read_samples(redis))
    assert tracker.verdicts()[0][1].status == Status.OK
    for _ in range(2):
        for i in range(3):
            await redis.xadd(keys.JOBS, {"sid": f"{i:032x}"})
        await redis.xreadgroup(keys.DECODERS, "c1", {keys.JOBS: ">"}, count=1)
        tracker.add(await read_samples(redis))
    [(s, verdict)] = tracker.verdicts()
    assert verdict.status == Status.WARN and s.lag == 7 and "growing" in verdict.reason


def fill_sync(server: EmbeddedRedis, n: int, read: int) -> None:
    client = sync_redis.Redis(port=server.port)
    try:
        client.xgroup_create(keys.JOBS, keys.DECODERS, id="0", mkstream=True)
        for i in range(n):
            client.xadd(keys.JOBS, {"sid": f"{i:032x}"})
        if read:
            client.xreadgroup(keys.DECODERS, "c1", {keys.JOBS: ">"}, count=read)
    finally:
        client.close()


def test_cli_prints_json_and_fails_on_a_stalled_group(redis_server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    fill_sync(redis_server, n=7, read=3)
    assert main(["lag", "--json", "--samples", "2", "--interval", "0.05"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["status"] == "WARN"
    assert main(["lag", "--json", "--samples", "2", "--interval", "0.05", "--stall-after", "0"]) == 1
    [row] = json.loads(capsys.readouterr().out)
    assert (row["stream"], row["group"], row["pending"], row["lag"], row["consumers"]) == (keys.JOBS, keys.DECODERS, 3, 4, 1)
    assert row["status"] == "STALLED" and row["oldest_pending_idle_ms"] is not None


def test_cli_table_and_watch(redis_server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    fill_sync(redis_server, n=2, read=2)
    assert main(["lag", "--samples", "1"]) == 0
    table = capsys.readouterr().out
    assert "dodo:jobs" in table and "decoders" in table and "OK" in table
    assert main(["lag", "--watch", "--json", "--count", "3", "--interval", "0.05"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(json.loads(line)[0]["pending"] == 2 for line in lines)
