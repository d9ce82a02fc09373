"""Event fan-out: each event goes to the session's stream (for resume) and to ``dodo:events`` (live)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import orjson

from schemas.events import Event, EventData, EventType
from streams import keys
from streams.config import StreamConfig
from streams.connection import Redis, as_str

EventHook = Callable[[Any, StreamConfig, Event], None]
"""Queues its writes for an event on the pipeline (redis-py, not transactional) that carries the event to
``dodo:events``, so one round trip serves them all; gets the config the event was published with, so one
hook serves every runtime of a process. It must not raise: an error of its own is logged, not the client's."""
_hooks: Counter[EventHook] = Counter()
log = logging.getLogger("dodolens.events")


def add_event_hook(hook: EventHook) -> None:
    """Called after every publish (analytics, metrics): one place, not one call per event site.

    Adding a hook twice runs it once; it stays until removed as many times as it was added.
    """
    _hooks[hook] += 1


def remove_event_hook(hook: EventHook) -> None:
    """Undo one :func:`add_event_hook` (a runtime stopping while another one still runs keeps it)."""
    _hooks[hook] -= 1
    if _hooks[hook] <= 0:
        del _hooks[hook]


def _event(entry_id: bytes | str, fields: dict, sid: str) -> Event:
    return Event(
        id=as_str(entry_id),
        type=EventType(as_str(fields[b"type"])),
        session_id=sid,
        timestamp=datetime.fromtimestamp(float(fields[b"ts"]), timezone.utc),
        data=orjson.loads(fields[b"data"]),
    )


def recorded_event(entry_id: bytes | str, sid: str, type: EventType, timestamp: float, data: bytes | str) -> Event:
    """The event a session stream entry holds, from what was written to it (``data`` as JSON)."""
    return Event(id=as_str(entry_id), type=type, session_id=sid, timestamp=datetime.fromtimestamp(timestamp, timezone.utc),
                 data=orjson.loads(data))


async def publish(r: Redis, cfg: StreamConfig, sid: str, data: EventData) -> Event:
    """Append to the session stream (its id becomes the event id), then fan out globally; the type of
    ``data`` says which event it is."""
    fields = {b"type": data.event_type.value.encode(), b"ts": repr(datetime.now(timezone.utc).timestamp()).encode(),
              b"data": orjson.dumps(data.payload())}
    stream = keys.session_events(sid)
    async with r.pipeline(transaction=True) as pipe:  # one round trip; one key, so one slot on a cluster
        pipe.xadd(stream, fields, maxlen=cfg.session_events_maxlen, approximate=True)
        pipe.expire(stream, cfg.session_ttl_s)
        entry_id, _ = await pipe.execute()
    event = _event(entry_id, fields, sid)
    await fan_out(r, cfg, event)
    return event


def live_events_minid(cfg: StreamConfig, now: float | None = None) -> str:
    """Stream id below which ``dodo:events`` entries are past ``events_retention_s``."""
    return f"{int(((now if now is not None else time.time()) - cfg.events_retention_s) * 1000)}-0"


def live_copy(event: Event) -> bytes:
    """What ``dodo:events`` carries: the event with its result cut down to the timings and token count the
    gateways' metrics read. Gateways send a watched session's events from its own stream (which erasure
    deletes), so the inventory never sits in the shared stream."""
    result = event.data.get("result")
    if not isinstance(result, dict):
        return event.model_dump_json().encode()
    analysis = result.get("analysis") if isinstance(result.get("analysis"), dict) else {}
    summary = {"timings": result.get("timings"),
               "analysis": {k: analysis.get(k) for k in ("model", "tokens", "frames_sent", "cost_usd")}}
    return event.model_copy(update={"data": {**event.data, "result": summary}}).model_dump_json().encode()


async def fan_out(r: Redis, cfg: StreamConfig, event: Event) -> None:
    """An event already in its session's stream goes to ``dodo:events`` (live, kept ``events_retention_s``)
    and to the hooks, in one round trip. Only a failure of the live copy raises; a hook's failed write is logged."""
    async with r.pipeline(transaction=False) as pipe:
        pipe.xadd(keys.EVENTS, {"e": live_copy(event)}, minid=live_events_minid(cfg), approximate=False)
        for hook in tuple(_hooks):
            hook(pipe, cfg, event)
        live, *hooked = await pipe.execute(raise_on_error=False)
    if isinstance(live, Exception):
        raise live
    for failure in (reply for reply in hooked if isinstance(reply, Exception)):
        log.warning("an event hook's write for event %s failed: %s", event.id, failure)


async def history(r: Redis, sid: str, after: str | None = None) -> list[Event]:
    """The session's events after ``after`` (exclusive), oldest first."""
    start = f"({after}" if after else "-"
    rows = await r.xrange(keys.session_events(sid), min=start, max="+")
    return [_event(entry_id, fields, sid) for entry_id, fields in rows]


async def session_tail(r: Redis, sid: str, after: str, block_ms: int = 1000) -> list[Event]:
    """The session's events after ``after`` (``0-0`` for all), waiting up to ``block_ms`` for one:
    how a reader in the pipeline's own process follows one session without the gateway's hub."""
    reply = await r.xread({keys.session_events(sid): after}, block=block_ms)
    return [_event(entry_id, fields, sid) for _stream, rows in reply or [] for entry_id, fields in rows]


async def histories(r: Redis, after: dict[str, str | None]) -> dict[str, list[Event]]:
    """Several sessions' events after their own cursor, in one pipelined round trip."""
    sids = list(after)
    async with r.pipeline(transaction=False) as pipe:
        for sid in sids:
            cursor = after[sid]
            pipe.xrange(keys.session_events(sid), min=f"({cursor}" if cursor else "-", max="+")
        replies = await pipe.execute()
    return {sid: [_event(entry_id, fields, sid) for entry_id, fields in rows] for sid, rows in zip(sids, replies)}


async def history_tail(r: Redis, sid: str) -> Event | None:
    """The session's latest event, if any."""
    rows = await r.xrevrange(keys.session_events(sid), count=1)
    return _event(rows[0][0], rows[0][1], sid) if rows else None


async def tail(r: Redis, last_id: str, block_ms: int = 1000, count: int = 500) -> tuple[str, list[Event]]:
    """Next events of ``dodo:events`` after ``last_id`` (``$`` for "from now")."""
    reply = await r.xread({keys.EVENTS: last_id}, count=count, block=block_ms)
    events: list[Event] = []
    for _stream, rows in reply or []:
        for entry_id, fields in rows:
            last_id = as_str(entry_id)
            events.append(Event.model_validate_json(fields[b"e"]))
    return last_id, events


async def last_global_id(r: Redis) -> str:
    rows = await r.xrevrange(keys.EVENTS, count=1)
    return as_str(rows[0][0]) if rows else "0-0"


def stream_id_key(entry_id: str) -> tuple[int, int]:
    """Sort key of a stream id, to compare event ids."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
