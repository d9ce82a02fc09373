"""Consumer-group lag: figures read from Redis, and a status judged over a window of samples.

One sample says little: a lag of 40 is fine if it was 400 a minute ago and alarming if it was 4.
So, as Kafka's Burrow does with consumer offsets, :func:`evaluate` looks at a short window of
samples of one group: no lag at some point in the window is OK; lag with no entry read across
the window is STALLED; reading but with lag never going down is WARN (falling behind).

Unlike Kafka offsets, a busy worker reads nothing new while it decodes a long video, so "nothing
read" only becomes STALLED once it lasted ``stall_after_s`` (the claim timeout's order of
magnitude) or when the group has no consumer at all; before that it is a WARN.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from itertools import pairwise
from typing import Any

from streams import keys
from streams.connection import Redis, as_str

MAX_PENDING_IDLE_MS = 180_000
"""An entry delivered 3 minutes ago and still not acknowledged: processing is taking too long."""
STALL_AFTER_S = 30.0
LAG_COUNT_LIMIT = 100_000


class Status(StrEnum):
    OK = "OK"
    WARN = "WARN"
    STALLED = "STALLED"


@dataclass(frozen=True)
class GroupSample:
    """What ``XINFO GROUPS`` and ``XPENDING`` say about one group at one moment."""

    stream: str
    group: str
    at: float
    consumers: int
    pending: int
    lag: int | None
    entries_read: int | None
    last_delivered_id: str
    oldest_pending_idle_ms: int | None
    length: int


@dataclass(frozen=True)
class Verdict:
    status: Status
    reason: str


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms or 0), int(seq or 0)


def _advanced(before: GroupSample, after: GroupSample) -> bool:
    """The group read something between two samples (entries-read moved, or the delivered id)."""
    if before.entries_read is not None and after.entries_read is not None and before.entries_read != after.entries_read:
        return True
    return _id(after.last_delivered_id) != _id(before.last_delivered_id)


def evaluate(window: Sequence[GroupSample], max_pending_idle_ms: int = MAX_PENDING_IDLE_MS,
             stall_after_s: float = STALL_AFTER_S) -> Verdict:
    """The status of one group from its samples, oldest first (pure: no clock, no Redis)."""
    if not window:
        raise ValueError("evaluate needs at least one sample")
    latest = window[-1]
    lags = [s.lag for s in window if s.lag is not None]
    span = latest.at - window[0].at
    progressed = any(_advanced(a, b) for a, b in pairwise(window))
    if len(window) >= 2 and len(lags) == len(window) and min(lags) > 0 and not progressed:
        who = "no consumer" if latest.consumers == 0 else f"{latest.consumers} consumer(s)"
        status = Status.STALLED if latest.consumers == 0 or span >= stall_after_s else Status.WARN
        return Verdict(status, f"lag {latest.lag} and nothing read for {span:.0f} s ({who})")
    idle = latest.oldest_pending_idle_ms
    if idle is not None and idle > max_pending_idle_ms:
        return Verdict(Status.WARN, f"oldest pending entry unacknowledged for {idle / 1000:.0f} s")
    if not lags:
        return Verdict(Status.OK, "lag unknown")
    if min(lags) == 0:
        return Verdict(Status.OK, "caught up" if lags[-1] == 0 else f"lag {lags[-1]}, was 0 within the window")
    if len(lags) < 2:
        return Verdict(Status.OK, f"lag {lags[-1]} (one sample: no trend yet)")
    if all(b >= a for a, b in pairwise(lags)):
        trend = "growing" if lags[-1] > lags[0] else "not shrinking"
        return Verdict(Status.WARN, f"lag {trend}: {lags[0]} -> {lags[-1]} over {span:.0f} s")
    return Verdict(Status.OK, f"lag {lags[-1]}, going down")


async def _lag_by_counting(r: Redis, stream: str, last_delivered_id: str) -> int:
    """Entries after the last delivered one, when Redis cannot say (it answers nil after XDEL)."""
    rows = await r.xrange(stream, min=f"({last_delivered_id}", max="+", count=LAG_COUNT_LIMIT)
    return len(rows)


async def read_samples(r: Redis, streams: Iterable[str] = tuple(keys.GROUPS), now: float | None = None) -> list[GroupSample]:
    """One sample of every consumer group of ``streams`` (streams or groups that do not exist yet are skipped)."""
    out = []
    for stream in streams:
        if not await r.exists(stream):
            continue
        length = int(await r.xlen(stream))
        for info in await r.xinfo_groups(stream):
            group = as_str(info["name"])
            last = as_str(info["last-delivered-id"])
            lag = info.get("lag")
            if lag is None:
                lag = await _lag_by_counting(r, stream, last)
            pending = int(info["pending"])
            idle = None
            if pending:
                oldest = await r.xpending_range(stream, group, min="-", max="+", count=1)
                idle = int(oldest[0]["time_since_delivered"]) if oldest else None
            entries_read = info.get("entries-read")
            out.append(GroupSample(
                stream=stream, group=group, at=time.time() if now is None else now,
                consumers=int(info["consumers"]), pending=pending, lag=int(lag),
                entries_read=None if entries_read is None else int(entries_read),
                last_delivered_id=last, oldest_pending_idle_ms=idle, length=length,
            ))
    return out


@dataclass
class LagTracker:
    """The last ``window`` samples of each group, shared by whoever polls (CLI --watch, /metrics, /admin)."""

    window: int = 20
    min_interval_s: float = 2.0
    max_pending_idle_ms: int = MAX_PENDING_IDLE_MS
    stall_after_s: float = STALL_AFTER_S
    history: dict[tuple[str, str], deque[GroupSample]] = field(default_factory=dict)

    def add(self, samples: Iterable[GroupSample]) -> None:
        """Append a round of samples; groups absent from it are forgotten, samples too close together skipped."""
        seen = set()
        for sample in samples:
            key = (sample.stream, sample.group)
            seen.add(key)
            past = self.history.setdefault(key, deque(maxlen=self.window))
            if past and sample.at - past[-1].at < self.min_interval_s:
                continue
            past.append(sample)
        for key in set(self.history) - seen:
            del self.history[key]

    def verdicts(self) -> list[tuple[GroupSample, Verdict]]:
        return [(past[-1], evaluate(list(past), self.max_pending_idle_ms, self.stall_after_s))
                for _key, past in sorted(self.history.items())]

    async def observe(self, r: Redis, streams: Iterable[str] = tuple(keys.GROUPS)) -> list[tuple[GroupSample, Verdict]]:
        self.add(await read_samples(r, streams))
        return self.verdicts()


def as_dict(sample: GroupSample, verdict: Verdict) -> dict[str, Any]:
    return {**asdict(sample), "status": verdict.status.value, "reason": verdict.reason}
