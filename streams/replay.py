"""Replay of the analytics stream over a time window: every record validated, older versions upcast.

The window applies to when an event was recorded (its ``dodo:analytics`` entry id), ``since``
included and ``until`` excluded. Records are checked against :class:`schemas.analytics.AnalyticsEvent`
after the registered upcasters brought them to the current version; a record that cannot be
brought there is reported, not guessed at.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import IO, Any

import orjson
from pydantic import ValidationError

from schemas.analytics import ANALYTICS_VERSION, AnalyticsEvent
from streams import keys
from streams.analytics import read_window
from streams.connection import Redis

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
Emit = Callable[[str, AnalyticsEvent], Awaitable[None]]

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


class UpcastError(ValueError):
    """A record of a version this DodoLens cannot bring to the current one."""


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """ISO-8601 (no zone means UTC), ``now``, or an age before now: ``90s``, ``15m``, ``2h``, ``7d``, ``1w``."""
    now = now or datetime.now(timezone.utc)
    text = text.strip()
    if text.lower() == "now":
        return now
    if match := _RELATIVE.match(text.lower()):
        return now - timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is neither ISO-8601 (2025-01-31T08:00Z) nor relative (2h, 7d)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@dataclass
class Upcasters:
    """Steps from version N to N+1, keyed by N; a record climbs them one by one."""

    steps: dict[int, Upcaster] = field(default_factory=dict)

    def register(self, from_version: int) -> Callable[[Upcaster], Upcaster]:
        def add(step: Upcaster) -> Upcaster:
            self.steps[from_version] = step
            return step

        return add

    def upcast(self, raw: dict[str, Any], current: int = ANALYTICS_VERSION) -> dict[str, Any]:
        """``raw`` brought to ``current``; a record without ``v`` predates versioning (version 0)."""
        version = raw.get("v", 0)
        if not isinstance(version, int) or isinstance(version, bool):
            raise UpcastError(f"version {version!r} is not an integer")
        if version > current:
            raise UpcastError(f"version {version} is newer than this DodoLens reads ({current}): upgrade it")
        while version < current:
            if version not in self.steps:
                raise UpcastError(f"no upcaster from version {version} to {version + 1}")
            try:
                raw = {**self.steps[version](dict(raw)), "v": version + 1}
            except (KeyError, TypeError, ValueError) as exc:
                raise UpcastError(f"upcasting from version {version} failed: {exc!r}") from exc
            version += 1
        return raw

    def covers(self, current: int = ANALYTICS_VERSION, first: int = 1) -> bool:
        """Whether every published version from ``first`` on can reach ``current``."""
        return all(v in self.steps for v in range(first, current))


REGISTRY = Upcasters()
"""Version 1 is the first published analytics version, so there is nothing to upcast yet. When a
breaking change makes version 2, register ``@REGISTRY.register(1)`` turning a v1 record into v2."""


def validate(raw: dict[str, Any], upcasters: Upcasters = REGISTRY) -> AnalyticsEvent:
    return AnalyticsEvent.model_validate(upcasters.upcast(raw))


@dataclass
class ReplayStats:
    read: int = 0
    emitted: int = 0
    invalid: list[tuple[str, str]] = field(default_factory=list)
    """(entry id, why) of records that failed validation or upcasting."""


def _ms(moment: datetime) -> int:
    """Stream ids count milliseconds: round up, so that a window ending now holds this millisecond's
    entries and adjacent windows still never share one."""
    return math.ceil(moment.timestamp() * 1000)


async def replay(r: Redis, emit: Emit, *, since: datetime | None = None, until: datetime | None = None,
                 types: Collection[str] = (), upcasters: Upcasters = REGISTRY) -> ReplayStats:
    """Feed ``emit`` the valid records recorded in [since, until) whose type is in ``types`` (all if empty)."""
    stats = ReplayStats()
    start = f"{_ms(since)}-0" if since else "-"
    end = f"({_ms(until)}-0" if until else "+"
    for entry_id, raw in await read_window(r, start, end):
        stats.read += 1
        try:
            event = validate(raw, upcasters)
        except (UpcastError, ValidationError) as exc:
            stats.invalid.append((entry_id, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
            continue
        if types and event.type.value not in types:
            continue
        await emit(entry_id, event)
        stats.emitted += 1
    return stats


def to_jsonl(out: IO[str]) -> Emit:
    """One JSON record per line, as analysts load them (pandas ``read_json(lines=True)``, jq, DuckDB)."""

    async def emit(_entry_id: str, event: AnalyticsEvent) -> None:
        out.write(event.model_dump_json() + "\n")

    return emit


def to_stream(r: Redis, stream: str) -> Emit:
    """Re-publish into ``stream`` (field ``e``), never into a stream DodoLens itself reads or writes."""
    if stream in keys.RESERVED or keys.session_id_of(stream):
        raise ValueError(f"{stream} belongs to DodoLens; replay into a stream of your own")

    async def emit(_entry_id: str, event: AnalyticsEvent) -> None:
        await r.xadd(stream, {"e": orjson.dumps(event.model_dump(mode="json"))})

    return emit
