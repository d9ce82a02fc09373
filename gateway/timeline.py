"""The last hour, minute by minute: sessions created, analyses completed, errors, stage p50/p95.

Fed by :class:`gateway.metrics.Metrics` from the hub's tail of ``dodo:events`` (every process's
events), so every gateway draws the same charts; kept in memory, bounded to ``minutes`` buckets.
What happened before this gateway started comes once from the analytics stream (:meth:`Timeline.backfill`):
records from before ``since`` only, so nothing is counted twice.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from schemas.analytics import AnalyticsEvent
from schemas.events import Event, EventType
from streams.report import STAGES, percentile

MINUTES = 60
SAMPLES_PER_MINUTE = 500
"""Durations kept per stage and minute: the most recent ones beyond that (percentiles stay meaningful)."""
CHARTED = frozenset({EventType.SESSION_CREATED, EventType.ANALYSIS_COMPLETE, EventType.ERROR})


def _durations() -> dict[str, deque[float]]:
    return {stage: deque(maxlen=SAMPLES_PER_MINUTE) for stage in STAGES}


@dataclass
class Minute:
    sessions: int = 0
    completed: int = 0
    errors: int = 0
    durations: dict[str, deque[float]] = field(default_factory=_durations)

    def as_dict(self, start: int) -> dict[str, Any]:
        return {"minute": start, "sessions": self.sessions, "completed": self.completed, "errors": self.errors,
                "stages": {stage: {"p50": percentile(list(v), 50), "p95": percentile(list(v), 95)}
                           for stage, v in self.durations.items()}}


class Timeline:
    """Per-minute figures of the last ``minutes`` minutes; pure bookkeeping, no I/O."""

    def __init__(self, minutes: int = MINUTES, since: float | None = None) -> None:
        self.minutes = minutes
        self.since = time.time() if since is None else since
        """From here on the live tail counts; before, only :meth:`backfill` does."""
        self.backfilled = False
        self._buckets: dict[int, Minute] = {}

    def _bucket(self, at: float, now: float) -> Minute | None:
        """The bucket of the minute ``at`` falls in; None outside the window (late or clock-skewed events)."""
        start, current = int(at // 60) * 60, int(now // 60) * 60
        oldest = current - (self.minutes - 1) * 60
        if not oldest <= start <= current:
            return None
        if start not in self._buckets:
            for stale in [s for s in self._buckets if s < oldest]:
                del self._buckets[stale]
            self._buckets[start] = Minute()
        return self._buckets[start]

    def add(self, kind: EventType, at: float, timings: dict[str, Any] | None, now: float | None = None) -> None:
        """One event of ``kind`` that happened at ``at``; ``timings`` are an analysis's ``<stage>_s`` figures."""
        bucket = self._bucket(at, time.time() if now is None else now) if kind in CHARTED else None
        if bucket is None:
            return
        if kind == EventType.SESSION_CREATED:
            bucket.sessions += 1
        elif kind == EventType.ERROR:
            bucket.errors += 1
        else:
            bucket.completed += 1
            for stage in STAGES:
                value = (timings or {}).get(f"{stage}_s")
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    bucket.durations[stage].append(max(0.0, float(value)))

    def observe(self, event: Event, now: float | None = None) -> None:
        """A live event from ``dodo:events``; one from before :attr:`since` is the backfill's to count."""
        at = event.timestamp.timestamp()
        if at >= self.since:
            self.add(event.type, at, (event.data.get("result") or {}).get("timings"), now)

    def backfill(self, records: list[AnalyticsEvent], now: float | None = None) -> None:
        """Analytics records of the window, once: those from before :attr:`since` (the live tail has the rest)."""
        for record in records:
            at = record.timestamp.timestamp()
            if at < self.since:
                self.add(record.type, at, record.data.get("timings"), now)
        self.backfilled = True

    def snapshot(self, now: float | None = None) -> list[dict[str, Any]]:
        """Every minute of the window, oldest first, the current (partial) minute last; empty minutes included."""
        now = time.time() if now is None else now
        current = int(now // 60) * 60
        starts = range(current - (self.minutes - 1) * 60, current + 60, 60)
        return [self._buckets.get(start, Minute()).as_dict(start) for start in starts]
