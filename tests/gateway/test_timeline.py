"""The dashboard's last hour: one bucket per minute, sessions, completions, errors and stage percentiles; what
happened before the gateway started comes from the analytics records, and nothing is counted twice."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from gateway.timeline import Timeline
from schemas.analytics import AnalyticsEvent
from schemas.events import Event, EventType
from streams.analytics import anonymize

NOW = 1_800_000_030.0  # 30 s into a minute
STARTED = NOW - 7200


def event(kind: EventType, at: float, **data: Any) -> Event:
    return Event(id="1-0", type=kind, session_id="a" * 32, timestamp=datetime.fromtimestamp(at, timezone.utc), data=data)


def completed(at: float, total: float) -> Event:
    timings = {"upload_s": total / 4, "queue_s": 0.0, "decode_s": total / 4, "analysis_s": total / 2, "total_s": total}
    return event(EventType.ANALYSIS_COMPLETE, at, result={"timings": timings})


def test_events_land_in_the_minute_they_happened() -> None:
    timeline = Timeline(since=STARTED)
    for at in (NOW, NOW - 5, NOW - 60, NOW - 3500):
        timeline.observe(event(EventType.SESSION_CREATED, at), now=NOW)
    timeline.observe(event(EventType.ERROR, NOW - 61, code="decode_failed"), now=NOW)
    timeline.observe(event(EventType.CHUNK_RECEIVED, NOW), now=NOW)
    minutes = timeline.snapshot(now=NOW)
    assert len(minutes) == 60 and minutes[-1]["minute"] == 1_800_000_000 and minutes[0]["minute"] == 1_800_000_000 - 3540
    assert [m["sessions"] for m in minutes][-2:] == [1, 2]
    assert minutes[-2]["errors"] == 1 and sum(m["errors"] for m in minutes) == 1
    assert minutes[1]["sessions"] == 1, "3500 s ago is the second minute of the hour"
    assert sum(m["sessions"] for m in minutes) == 4


def test_stage_percentiles_come_from_the_analyses_completed_that_minute() -> None:
    timeline = Timeline(since=STARTED)
    for total in (2.0, 4.0, 6.0, 8.0, 100.0):
        timeline.observe(completed(NOW, total), now=NOW)
    timeline.observe(completed(NOW - 120, 1.0), now=NOW)
    minutes = timeline.snapshot(now=NOW)
    last = minutes[-1]
    assert last["completed"] == 5
    assert last["stages"]["total"] == {"p50": 6.0, "p95": 81.6}
    assert last["stages"]["analysis"]["p50"] == 3.0
    assert minutes[-3]["stages"]["total"] == {"p50": 1.0, "p95": 1.0}
    assert minutes[-2]["stages"]["total"] == {"p50": None, "p95": None}


def test_only_the_last_hour_is_kept() -> None:
    timeline = Timeline(minutes=60, since=STARTED)
    timeline.observe(event(EventType.SESSION_CREATED, NOW - 3600), now=NOW)
    timeline.observe(event(EventType.SESSION_CREATED, NOW + 120), now=NOW)
    assert sum(m["sessions"] for m in timeline.snapshot(now=NOW)) == 0, "too old, or from a skewed clock"
    for minute in range(180):
        timeline.observe(event(EventType.SESSION_CREATED, NOW + 60 * minute), now=NOW + 60 * minute)
    assert len(timeline._buckets) <= 60
    assert sum(m["sessions"] for m in timeline.snapshot(now=NOW + 60 * 179)) == 60


def test_the_backfill_counts_what_happened_before_the_gateway_started_and_the_tail_the_rest() -> None:
    started = NOW - 600
    timeline = Timeline(since=started)
    before, after = completed(started - 120, 3.0), completed(started + 60, 5.0)
    created_before = event(EventType.SESSION_CREATED, started - 1)
    records = [AnalyticsEvent.model_validate(anonymize(e, lambda sid: "a" * 20)) for e in (before, after, created_before)]
    for live in (before, after, created_before):
        timeline.observe(live, now=NOW)
    timeline.backfill(records, now=NOW)
    minutes = timeline.snapshot(now=NOW)
    assert timeline.backfilled
    assert sum(m["completed"] for m in minutes) == 2 and sum(m["sessions"] for m in minutes) == 1
    assert [m["stages"]["total"]["p50"] for m in minutes if m["completed"]] == [3.0, 5.0]
