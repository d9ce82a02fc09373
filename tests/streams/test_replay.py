"""Replay: time windows, type filters, validation, upcasting from older versions, and ``dodolens replay``."""

from __future__ import annotations

import asyncio
import functools
import io
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis as sync_redis

from dodolens.cli import main
from schemas.analytics import ANALYTICS_VERSION, AnalyticsEvent
from schemas.events import ChunkReceivedData, ErrorData, Event, EventType, SessionCreatedData, SessionErasedData
from streams import keys
from streams.analytics import analytics_hook, anonymize
from streams.audit import pseudonym
from streams.config import StreamConfig
from streams.connection import Redis
from streams.embedded import EmbeddedRedis
from streams.events import add_event_hook, publish, remove_event_hook
from streams.replay import REGISTRY, Upcasters, UpcastError, parse_time, replay, to_jsonl, to_stream, validate

NOW = datetime(2025, 1, 31, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-01-31T08:00:00Z", datetime(2025, 1, 31, 8, tzinfo=timezone.utc)),
        ("2025-01-31T09:00:00+01:00", datetime(2025, 1, 31, 8, tzinfo=timezone.utc)),
        ("2025-01-31 08:00", datetime(2025, 1, 31, 8, tzinfo=timezone.utc)),
        ("2025-01-31", datetime(2025, 1, 31, tzinfo=timezone.utc)),
        ("2h", NOW - timedelta(hours=2)),
        ("90s", NOW - timedelta(seconds=90)),
        ("15m", NOW - timedelta(minutes=15)),
        ("7d", NOW - timedelta(days=7)),
        ("1w", NOW - timedelta(weeks=1)),
        ("1.5h", NOW - timedelta(minutes=90)),
        ("now", NOW),
    ],
)
def test_times_are_iso_or_relative(text: str, expected: datetime) -> None:
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "2h ago", "-2h", "2025-13-01", ""])
def test_unreadable_times_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text, NOW)


def v0_record() -> dict[str, Any]:
    """The shape analytics records had before versioning (synthetic: no v, epoch seconds, other names)."""
    return {"kind": "error", "pseudonym": "a" * 20, "ts": NOW.timestamp(), "payload": {"code": "decode_failed"}}


def v0_to_v1(raw: dict[str, Any]) -> dict[str, Any]:
    payload = raw["payload"]
    return {"type": raw["kind"], "session": raw["pseudonym"],
            "timestamp": datetime.fromtimestamp(raw["ts"], timezone.utc).isoformat(),
            "data": {"code": payload["code"], "retryable": payload.get("retryable", False), "missing": None}}


def test_a_v0_record_is_upcast_to_the_current_version() -> None:
    registry = Upcasters()
    registry.register(0)(v0_to_v1)
    event = validate(v0_record(), registry)
    assert event.v == ANALYTICS_VERSION == 1
    assert (event.type, event.session, event.timestamp, event.data["code"]) == (EventType.ERROR, "a" * 20, NOW, "decode_failed")


def test_versions_without_a_path_are_refused() -> None:
    with pytest.raises(UpcastError, match="no upcaster from version 0"):
        validate(v0_record(), Upcasters())
    with pytest.raises(UpcastError, match="newer"):
        validate({**v0_record(), "v": ANALYTICS_VERSION + 1})
    with pytest.raises(UpcastError, match="not an integer"):
        validate({**v0_record(), "v": "1"})


def test_upcasters_climb_one_version_at_a_time() -> None:
    registry = Upcasters()
    seen: list[int] = []

    @registry.register(1)
    def one_to_two(raw: dict[str, Any]) -> dict[str, Any]:
        seen.append(raw["v"])
        return {**raw, "two": True}

    @registry.register(2)
    def two_to_three(raw: dict[str, Any]) -> dict[str, Any]:
        seen.append(raw["v"])
        return {**raw, "three": raw["two"]}

    assert registry.upcast({"v": 1}, current=3) == {"v": 3, "two": True, "three": True}
    assert seen == [1, 2]
    assert registry.covers(current=3) and not registry.covers(current=4)


def test_the_shipped_registry_reaches_the_current_version() -> None:
    assert REGISTRY.covers(ANALYTICS_VERSION)


@pytest.fixture
async def recorded(redis: Redis, stream_cfg: StreamConfig) -> AsyncIterator[None]:
    add_event_hook(analytics_hook)
    try:
        yield
    finally:
        remove_event_hook(analytics_hook)


async def publish_batch(r: Redis, cfg: StreamConfig, sid: str) -> list[Event]:
    return [
        await publish(r, cfg, sid, SessionCreatedData(size=10, chunks=1)),
        await publish(r, cfg, sid, ChunkReceivedData(index=0, received=1, chunks=1)),
        await publish(r, cfg, sid, ErrorData(code="decode_failed", message="no", retryable=False)),
    ]


async def pause() -> datetime:
    """A moment strictly between what was recorded before and what will be recorded after."""
    await asyncio.sleep(0.01)
    moment = datetime.now(timezone.utc)
    await asyncio.sleep(0.01)
    return moment


async def three_windows(r: Redis, cfg: StreamConfig) -> tuple[list[Event], datetime, list[Event], datetime, list[Event]]:
    before = await publish_batch(r, cfg, "a" * 32)
    t1 = await pause()
    inside = await publish_batch(r, cfg, "b" * 32) + await publish_batch(r, cfg, "c" * 32)
    t2 = await pause()
    after = await publish_batch(r, cfg, "d" * 32)
    return before, t1, inside, t2, after


async def collect(r: Redis, **options: Any) -> tuple[list[dict[str, Any]], Any]:
    out: list[dict[str, Any]] = []

    async def keep(_entry: str, event: AnalyticsEvent) -> None:
        out.append(event.model_dump(mode="json"))

    stats = await replay(r, keep, **options)
    return out, stats


async def test_a_window_returns_exactly_its_anonymized_events(redis: Redis, stream_cfg: StreamConfig,
                                                              recorded: None) -> None:
    before, t1, inside, t2, after = await three_windows(redis, stream_cfg)
    anonymous = functools.partial(pseudonym, stream_cfg)
    got, stats = await collect(redis, since=t1, until=t2)
    assert got == [anonymize(e, anonymous) for e in inside]
    assert stats.read == len(inside) and stats.invalid == []
    everything, _ = await collect(redis)
    assert everything == [anonymize(e, anonymous) for e in before + inside + after]
    only_errors, _ = await collect(redis, since=t1, types={"error"})
    assert only_errors == [anonymize(e, anonymous) for e in inside + after if e.type == EventType.ERROR]


async def test_invalid_records_are_reported_not_emitted(redis: Redis, stream_cfg: StreamConfig, recorded: None) -> None:
    await publish(redis, stream_cfg, "a" * 32, SessionErasedData(keys_deleted=1))
    bad = [
        await redis.xadd(keys.ANALYTICS, {"e": b"not json"}),
        await redis.xadd(keys.ANALYTICS, {"e": orjson.dumps({"v": 1, "type": "error", "session": "x", "timestamp": 0,
                                                             "data": {}})}),
        await redis.xadd(keys.ANALYTICS, {"e": orjson.dumps({**v0_record()})}),
        await redis.xadd(keys.ANALYTICS, {"e": orjson.dumps({"v": 1, "type": "session_erased", "session": "a" * 20,
                                                             "timestamp": NOW.isoformat(),
                                                             "data": {"keys_deleted": 1, "session_id": "a" * 32}})}),
    ]
    got, stats = await collect(redis)
    assert [e["type"] for e in got] == ["session_erased"]
    assert [entry for entry, _why in stats.invalid] == [b.decode() for b in bad]
    upcast, stats = await collect(redis, upcasters=Upcasters({0: v0_to_v1}))
    assert [e["type"] for e in upcast] == ["session_erased", "error"] and len(stats.invalid) == 3


async def test_jsonl_and_republishing(redis: Redis, stream_cfg: StreamConfig, recorded: None) -> None:
    events = await publish_batch(redis, stream_cfg, "e" * 32)
    buffer = io.StringIO()
    await replay(redis, to_jsonl(buffer))
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert lines == [anonymize(e, functools.partial(pseudonym, stream_cfg)) for e in events]
    await replay(redis, to_stream(redis, "analyst:copy"))
    copied = [orjson.loads(f[b"e"]) for _id, f in await redis.xrange("analyst:copy")]
    assert copied == lines
    for reserved in (keys.ANALYTICS, keys.EVENTS, keys.JOBS, keys.session_events("e" * 32)):
        with pytest.raises(ValueError):
            to_stream(redis, reserved)


def seed_sync(server: EmbeddedRedis) -> tuple[list[dict[str, Any]], datetime, datetime]:
    """Records an hour ago, in the last minutes, and now, written as the hook writes them."""
    client = sync_redis.Redis(port=server.port)
    now = datetime.now(timezone.utc)
    records = []
    try:
        for i, age in enumerate((3600, 300, 200, 1)):
            moment = now - timedelta(seconds=age)
            record = {"v": 1, "type": "session_erased", "session": f"{i:020x}", "timestamp": moment.isoformat(),
                      "data": {"keys_deleted": i}}
            client.xadd(keys.ANALYTICS, {"e": orjson.dumps(record)}, id=f"{int(moment.timestamp() * 1000)}-0")
            records.append(record)
    finally:
        client.close()
    return records, now - timedelta(minutes=10), now - timedelta(minutes=1)


def test_cli_writes_the_window_to_a_file(redis_server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    records, _since, _until = seed_sync(redis_server)
    out = tmp_path / "window.jsonl"
    assert main(["replay", "--since", "10m", "--until", "1m", "--type", "session_erased", "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["session"] for line in lines] == [records[1]["session"], records[2]["session"]]
    assert "replayed 2 of 2" in capsys.readouterr().err
    assert main(["replay", "--type", "error"]) == 0
    assert capsys.readouterr().out == ""


def test_cli_republishes_and_refuses_dodolens_streams(redis_server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    records, _since, _until = seed_sync(redis_server)
    assert main(["replay", "--since", "2025-01-01T00:00:00Z", "--publish", "analyst:all"]) == 0
    client = sync_redis.Redis(port=redis_server.port)
    try:
        copied = [orjson.loads(f[b"e"]) for _id, f in client.xrange("analyst:all")]
        client.xadd(keys.ANALYTICS, {"e": b"{}"})
    finally:
        client.close()
    assert [c["session"] for c in copied] == [r["session"] for r in records]
    assert main(["replay", "--publish", keys.EVENTS]) == 2
    assert main(["replay", "--since", "5m"]) == 1
    assert "invalid" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["replay", "--since", "last tuesday"])
