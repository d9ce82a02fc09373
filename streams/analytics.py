"""The analysts' copy of every event: anonymized, written to ``dodo:analytics``, kept 30 days (MINID).

:func:`anonymize` is pure and keeps only what :mod:`schemas.analytics` allows; :func:`analytics_hook`
is registered by the composition root with :func:`streams.events.add_event_hook`, so every
published event is copied once, by the process that published it, into the Redis it went to.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.analytics import SLUG, AnalyticsEvent
from schemas.events import Event, EventType
from streams import keys
from streams.audit import minid, pseudonym
from streams.config import StreamConfig
from streams.connection import Redis, as_str

log = logging.getLogger("dodolens.analytics")

PseudonymFn = Callable[[str], str]
OTHER = "other"
_SLUG = re.compile(SLUG)


def _slug(value: Any) -> str | None:
    """An identifier survives; anything that looks like free text (spaces, capitals, names) does not."""
    return value if isinstance(value, str) and _SLUG.match(value) else None


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _inventory(inventory: dict[str, Any] | None) -> dict[str, Any] | None:
    if not inventory:
        return None
    rooms = []
    for room in inventory.get("rooms", []):
        items = [{
            "catalogue_id": _slug(item.get("catalogue_id")),
            "quantity": _int(item.get("quantity")),
            "volume_m3": _num(item.get("volume_m3")),
            "fragile": bool(item.get("fragile", False)),
            "needs_disassembly": bool(item.get("needs_disassembly", False)),
            "excluded": bool(item.get("excluded", False)),
        } for item in room.get("items", [])]
        rooms.append({"kind": _slug(room.get("name")) or OTHER, "items": items, "subtotal_m3": _num(room.get("subtotal_m3"))})
    return {
        "rooms": rooms,
        "total_items": _int(inventory.get("total_items")),
        "total_volume_m3": _num(inventory.get("total_volume_m3")),
        "excluded_volume_m3": _num(inventory.get("excluded_volume_m3")),
    }


def _analysis(result: dict[str, Any]) -> dict[str, Any]:
    analysis = result.get("analysis") or {}
    video = result.get("video")
    timings = result.get("timings") or {}
    return {
        "status": _slug(analysis.get("status")) or OTHER,
        "model": analysis["model"][:100] if isinstance(analysis.get("model"), str) else None,
        "tokens": _int(analysis.get("tokens")),
        "transcript_chars": _int(analysis.get("transcript_chars")),
        "frames": len(result.get("frames") or []),
        "frames_sent": _int(analysis.get("frames_sent")),
        "input_tokens": _int(analysis.get("input_tokens")),
        "image_tokens": _int(analysis.get("image_tokens")),
        "text_tokens": _int(analysis.get("text_tokens")),
        "output_tokens": _int(analysis.get("output_tokens")),
        "cost_usd": _num(analysis["cost_usd"]) if analysis.get("cost_usd") is not None else None,
        "video": None if not video else {
            "duration_s": _num(video.get("duration_s")),
            "size_bytes": _int(video.get("size_bytes")),
            "width": _int(video.get("width")),
            "height": _int(video.get("height")),
            "codec": str(video.get("codec", ""))[:32],
            "container": str(video.get("container", ""))[:64],
            "has_audio": bool(video.get("has_audio", False)),
        },
        "timings": {k: _num(timings.get(k)) for k in ("upload_s", "queue_s", "decode_s", "analysis_s", "total_s")},
        "inventory": _inventory(result.get("inventory")),
    }


def _data(event: Event) -> dict[str, Any]:
    d = event.data
    match event.type:
        case EventType.SESSION_CREATED | EventType.UPLOAD_COMPLETE:
            return {"size": _int(d.get("size")), "chunks": _int(d.get("chunks"))}
        case EventType.CHUNK_RECEIVED:
            return {"index": _int(d.get("index")), "received": _int(d.get("received")), "chunks": _int(d.get("chunks"))}
        case EventType.PROCESSING_STARTED:
            return {"stage": _slug(d.get("stage")) or OTHER}
        case EventType.FRAMES_EXTRACTED:
            return {"frames": _int(d.get("frames")), "duration": _num(d.get("duration")), "audio": bool(d.get("audio"))}
        case EventType.AI_ANALYSIS_PROGRESS:
            return {"stage": _slug(d.get("stage")) or OTHER, "progress": min(1.0, max(0.0, _num(d.get("progress"))))}
        case EventType.ANALYSIS_COMPLETE:
            return _analysis(d.get("result") or {})
        case EventType.ERROR:
            missing = d.get("missing")
            return {"code": _slug(d.get("code")) or OTHER, "retryable": bool(d.get("retryable", False)),
                    "final": bool(d.get("final", True)), "missing": len(missing) if isinstance(missing, list) else None}
        case EventType.SESSION_ERASED:
            return {"keys_deleted": _int(d.get("keys_deleted"))}
    raise ValueError(f"no anonymization rule for event type {event.type}")


def anonymize(event: Event, pseudonym_fn: PseudonymFn) -> dict[str, Any]:
    """The analytics record of ``event``: a JSON-ready dict valid against ``AnalyticsEvent``."""
    record = AnalyticsEvent(type=event.type, session=pseudonym_fn(event.session_id), timestamp=event.timestamp,
                            data=_data(event))
    return record.model_dump(mode="json")


def queue_record(r: Any, cfg: StreamConfig, event: Event) -> Any:
    """Append the anonymized copy of ``event``, trimming what is older than ``analytics_days``: on a
    pipeline, queued; on a client, the awaitable of the write."""
    return r.xadd(keys.ANALYTICS, {"e": orjson.dumps(anonymize(event, functools.partial(pseudonym, cfg)))},
                  minid=minid(cfg.analytics_days), approximate=True)


async def record(r: Redis, cfg: StreamConfig, event: Event) -> str:
    """:func:`queue_record` sent on its own; returns the record's entry id."""
    entry = await queue_record(r, cfg, event)
    return as_str(entry)


def analytics_hook(pipe: Any, cfg: StreamConfig, event: Event) -> None:
    """The event hook recording every event, on the pipeline that publishes it (``streams.events.fan_out``
    logs a failed write). A malformed event is logged, never raised: the hook runs inside ``publish`` and
    must not fail the client's request."""
    try:
        queue_record(pipe, cfg, event)
    except (ValidationError, ValueError) as exc:
        log.warning("analytics event %s of type %s not recorded: %s", event.id, event.type, exc)


async def read_window(r: Redis, start_ms: int | str = "-", end_ms: int | str = "+",
                      page: int = 500) -> list[tuple[str, dict[str, Any]]]:
    """Raw analytics records (entry id, decoded JSON) with stream ids in [start_ms, end_ms]."""
    out: list[tuple[str, dict[str, Any]]] = []
    start = str(start_ms)
    while True:
        rows = await r.xrange(keys.ANALYTICS, min=start, max=str(end_ms), count=page)
        for entry_id, fields in rows:
            entry = as_str(entry_id)
            try:
                out.append((entry, orjson.loads(fields[b"e"])))
            except (KeyError, orjson.JSONDecodeError):
                out.append((entry, {}))
        if len(rows) < page:
            return out
        start = f"({out[-1][0]}"
