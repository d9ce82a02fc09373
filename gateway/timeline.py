"""The last hour, minute by minute: sessions created, analyses completed, errors, stage p50/p95.

Fed by :class:`gateway.metrics.Metrics` from the hub's tail of ``dodo:events`` (every process's
events), so every gateway draws the same charts; kept in memory, bounded to ``minutes`` buckets, and
empty again after a restart (the analytics stream is the long-term record).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from schemas.events import Event, EventType
from streams.report import STAGES, percentile

MINUTES = 60
SAMPLES_PER_MINUTE = 500
"""Durations kept per stage and minute: the most recent ones beyond that (percentiles stay meaningful)."""


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

    def __init__(self, minutes: int = MINUTES) -> None:
        self.minutes = minutes
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

    def observe(self, event: Event, now: float | None = None) -> None:
        now = time.time() if now is None else now
        if event.type not in (EventType.SESSION_CREATED, EventType.ANALYSIS_COMPLETE, EventType.ERROR):
            return
        bucket = self._bucket(event.timestamp.timestamp(), now)
        if bucket is None:
            return
        if event.type == EventType.SESSION_CREATED:
            bucket.sessions += 1
        elif event.type == EventType.ERROR:
            bucket.errors += 1
        else:
            bucket.completed += 1
            timings = (event.data.get("result") or {}).get("timings") or {}
            for stage in STAGES:
                value = timings.get(f"{stage}_s")
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    bucket.durations[stage].append(max(0.0, float(value)))

    def snapshot(self, now: float | None = None) -> list[dict[str, Any]]:
        """Every minute of the window, oldest first, the current (partial) minute last; empty minutes included."""
        now = time.time() if now is None else now
        current = int(now // 60) * 60
        starts = range(current - (self.minutes - 1) * 60, current + 60, 60)
        return [self._buckets.get(start, Minute()).as_dict(start) for start in starts]
