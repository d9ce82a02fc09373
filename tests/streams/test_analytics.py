"""The analytics copy of events: anonymized for every event type, recorded by the hook, trimmed by age."""

from __future__ import annotations

import functools
import time
from datetime import datetime, timezone
from typing import Any

import orjson
import pytest

from schemas.analytics import AnalyticsEvent
from schemas.events import DATA_MODELS, AnalysisCompleteData, Event, EventData, EventType, SessionCreatedData, SessionErasedData
from streams import keys
from streams.analytics import analytics_hook, anonymize, record
from streams.audit import pseudonym
from streams.config import StreamConfig
from streams.connection import Redis, connect
from streams.embedded import EmbeddedRedis
from streams.events import add_event_hook, history, publish, remove_event_hook

SID = "0123456789abcdef0123456789abcdef"
SECRETS = ["1700000000.deadbeefcafe", "tour-chez-Marie-Dupont.mp4", "203.0.113.7",
           "le canapé de ma grand-mère", "Chambre de Léa", "on garde le piano de Paul"]
"""Things that must never reach analysts: a token, a filename, an IP, model labels, room names, speech."""

RESULT: dict[str, Any] = {
    "v": 1, "session_id": SID, "created_at": "2025-01-31T08:00:00Z",
    "video": {"duration_s": 12.0, "size_bytes": 1000, "width": 1920, "height": 1080, "codec": "h264",
              "container": "mov,mp4", "rotation": 90, "has_audio": True},
    "frames": [0.5, 2.0, 4.5],
    "analysis": {"status": "complete", "reason": None, "model": "gpt-4o-mini", "transcript_chars": 25,
                 "tokens": 1234, "transcript": SECRETS[5]},
    "inventory": {
        "rooms": [
            {"name": "living_room", "subtotal_m3": 3.5, "items": [
                {"catalogue_id": "sofa_3_seats", "label": SECRETS[3], "quantity": 1, "volume_m3": 2.0,
                 "fragile": False, "needs_disassembly": False, "confidence": 0.9, "frames": [0], "excluded": False},
                {"catalogue_id": "Piano de Paul", "label": "piano", "quantity": 1, "volume_m3": 1.5,
                 "fragile": True, "excluded": True},
            ]},
            {"name": SECRETS[4], "subtotal_m3": 0.6, "items": [
                {"catalogue_id": "chair", "label": "chaise", "quantity": 3, "volume_m3": 0.2},
            ]},
        ],
        "total_items": 4, "total_volume_m3": 2.6, "excluded_volume_m3": 1.5,
    },
    "timings": {"upload_s": 3.0, "queue_s": 0.1, "decode_s": 2.0, "analysis_s": 9.0, "total_s": 11.5},
}

DATA: dict[EventType, dict[str, Any]] = {
    EventType.SESSION_CREATED: {"size": 1000, "chunks": 1, "filename": SECRETS[1], "client_ip": SECRETS[2]},
    EventType.CHUNK_RECEIVED: {"index": 0, "received": 1, "chunks": 1, "token": SECRETS[0]},
    EventType.UPLOAD_COMPLETE: {"size": 1000, "chunks": 1, "sha256": "ab" * 32},
    EventType.PROCESSING_STARTED: {"stage": "decode"},
    EventType.FRAMES_EXTRACTED: {"frames": 3, "timestamps": [0.5, 2.0, 4.5], "duration": 12.0, "audio": True},
    EventType.AI_ANALYSIS_PROGRESS: {"stage": "vision", "progress": 0.5, "partial": SECRETS[5]},
    EventType.ANALYSIS_COMPLETE: {"result": RESULT},
    EventType.ERROR: {"code": "missing_chunks", "message": f"{SECRETS[1]} is missing 2 chunks", "retryable": True,
                      "final": False, "missing": [3, 4]},
    EventType.SESSION_ERASED: {"keys_deleted": 4},
}

EXPECTED: dict[EventType, dict[str, Any]] = {
    EventType.SESSION_CREATED: {"size": 1000, "chunks": 1},
    EventType.CHUNK_RECEIVED: {"index": 0, "received": 1, "chunks": 1},
    EventType.UPLOAD_COMPLETE: {"size": 1000, "chunks": 1},
    EventType.PROCESSING_STARTED: {"stage": "decode"},
    EventType.FRAMES_EXTRACTED: {"frames": 3, "duration": 12.0, "audio": True},
    EventType.AI_ANALYSIS_PROGRESS: {"stage": "vision", "progress": 0.5},
    EventType.ERROR: {"code": "missing_chunks", "retryable": True, "final": False, "missing": 2},
    EventType.SESSION_ERASED: {"keys_deleted": 4},
}


def typed(kind: EventType) -> EventData:
    """The sample as its publisher would type it: fields the model does not declare never get in."""
    if kind == EventType.ANALYSIS_COMPLETE:
        analysis = {k: v for k, v in RESULT["analysis"].items() if k != "transcript"}
        return AnalysisCompleteData(result={**RESULT, "analysis": analysis, "inventory": None})
    return DATA_MODELS[kind].model_validate(DATA[kind])


def fake_pseudonym(sid: str) -> str:
    return "f" * 19 + sid[-1]


def event(kind: EventType, data: dict[str, Any] | None = None) -> Event:
    return Event(id="1700000000000-0", type=kind, session_id=SID, timestamp=datetime(2025, 1, 31, 8, tzinfo=timezone.utc),
                 data=DATA[kind] if data is None else data)


def test_every_event_type_has_a_sample() -> None:
    assert set(DATA) == set(EventType)


@pytest.mark.parametrize("kind", list(EventType))
def test_anonymized_event_is_valid_and_carries_no_personal_data(kind: EventType) -> None:
    out = anonymize(event(kind), fake_pseudonym)
    assert AnalyticsEvent.model_validate(out).type == kind
    assert out["session"] == "f" * 20 and out["v"] == 1 and out["timestamp"].startswith("2025-01-31T08:00:00")
    blob = orjson.dumps(out).decode()
    assert SID not in blob
    for secret in SECRETS:
        assert secret not in blob
    if kind in EXPECTED:
        assert out["data"] == EXPECTED[kind]


def test_analysis_keeps_aggregates_and_drops_free_text() -> None:
    data = anonymize(event(EventType.ANALYSIS_COMPLETE), fake_pseudonym)["data"]
    assert (data["status"], data["model"], data["tokens"], data["transcript_chars"], data["frames"]) == (
        "complete", "gpt-4o-mini", 1234, 25, 3)
    assert data["timings"]["total_s"] == 11.5 and data["video"]["width"] == 1920
    inventory = data["inventory"]
    assert (inventory["total_items"], inventory["total_volume_m3"], inventory["excluded_volume_m3"]) == (4, 2.6, 1.5)
    assert [room["kind"] for room in inventory["rooms"]] == ["living_room", "other"]
    items = [item for room in inventory["rooms"] for item in room["items"]]
    assert [(i["catalogue_id"], i["quantity"], i["volume_m3"], i["excluded"]) for i in items] == [
        ("sofa_3_seats", 1, 2.0, False), (None, 1, 1.5, True), ("chair", 3, 0.2, False)]
    assert all("label" not in item for item in items)


def test_skipped_analysis_and_odd_values_still_anonymize() -> None:
    result = {**RESULT, "inventory": None, "analysis": {"status": "skipped", "reason": "no OPENAI_API_KEY"}}
    data = anonymize(event(EventType.ANALYSIS_COMPLETE, {"result": result}), fake_pseudonym)["data"]
    assert (data["status"], data["inventory"], data["model"], data["tokens"]) == ("skipped", None, None, 0)
    odd = anonymize(event(EventType.ERROR, {"code": "Weird Code With Spaces", "message": "x"}), fake_pseudonym)
    assert odd["data"] == {"code": "other", "retryable": False, "final": True, "missing": None}


def test_pseudonym_is_keyed_and_stable(stream_cfg: StreamConfig) -> None:
    other = StreamConfig()
    first = anonymize(event(EventType.SESSION_ERASED), functools.partial(pseudonym, stream_cfg))["session"]
    again = anonymize(event(EventType.SESSION_ERASED), functools.partial(pseudonym, stream_cfg))["session"]
    elsewhere = anonymize(event(EventType.SESSION_ERASED), functools.partial(pseudonym, other))["session"]
    assert first == again != elsewhere


async def test_hook_records_every_published_event_anonymized(redis: Redis, stream_cfg: StreamConfig) -> None:
    add_event_hook(analytics_hook)
    try:
        published = [await publish(redis, stream_cfg, SID, typed(kind)) for kind in EventType]
    finally:
        remove_event_hook(analytics_hook)
    await publish(redis, stream_cfg, SID, SessionErasedData(keys_deleted=0))
    rows = await redis.xrange(keys.ANALYTICS)
    assert len(rows) == len(published)
    stored = [orjson.loads(fields[b"e"]) for _id, fields in rows]
    assert stored == [anonymize(e, functools.partial(pseudonym, stream_cfg)) for e in published]
    raw = b"".join(fields[b"e"] for _id, fields in rows)
    assert SID.encode() not in raw and not any(s.encode() in raw for s in SECRETS)


async def test_one_hook_serves_every_redis_and_registrations_are_counted(redis: Redis, stream_cfg: StreamConfig) -> None:
    with EmbeddedRedis() as other_server:
        other = connect(other_server.url)
        try:
            add_event_hook(analytics_hook)
            add_event_hook(analytics_hook)
            await publish(redis, stream_cfg, SID, SessionErasedData(keys_deleted=1))
            await publish(other, stream_cfg, SID, SessionErasedData(keys_deleted=2))
            remove_event_hook(analytics_hook)
            await publish(other, stream_cfg, SID, SessionErasedData(keys_deleted=3))
            remove_event_hook(analytics_hook)
            await publish(other, stream_cfg, SID, SessionErasedData(keys_deleted=4))
            here = [orjson.loads(f[b"e"])["data"]["keys_deleted"] for _i, f in await redis.xrange(keys.ANALYTICS)]
            there = [orjson.loads(f[b"e"])["data"]["keys_deleted"] for _i, f in await other.xrange(keys.ANALYTICS)]
        finally:
            await other.aclose()
    assert (here, there) == ([1], [2, 3])


async def test_a_failed_analytics_write_never_fails_the_publisher(redis: Redis, stream_cfg: StreamConfig,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    await redis.set(keys.ANALYTICS, "not a stream")
    add_event_hook(analytics_hook)
    try:
        published = await publish(redis, stream_cfg, SID, SessionCreatedData(size=1, chunks=1))
    finally:
        remove_event_hook(analytics_hook)
        await redis.delete(keys.ANALYTICS)
    assert [e.id for e in await history(redis, SID)] == [published.id]
    assert await redis.xlen(keys.EVENTS) == 1
    assert "failed" in caplog.text


async def test_records_older_than_the_retention_are_trimmed(redis: Redis, stream_cfg: StreamConfig) -> None:
    now_ms = int(time.time() * 1000)
    old_ms = now_ms - 40 * 86_400_000
    for i in range(300):
        await redis.xadd(keys.ANALYTICS, {"e": b"{}"}, id=f"{old_ms + i}-0")
    recent = f"{now_ms - 29 * 86_400_000}-0"
    await redis.xadd(keys.ANALYTICS, {"e": b"{}"}, id=recent)
    await record(redis, stream_cfg, event(EventType.SESSION_CREATED))
    ids = [entry.decode() for entry, _f in await redis.xrange(keys.ANALYTICS)]
    assert recent in ids and len(ids) < 150
