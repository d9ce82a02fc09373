"""How sessions end: failed, finished or erased — and in every case, no media key left behind."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from redis.exceptions import ResponseError

from schemas.errors import ErrorCode
from schemas.events import ErrorData, SessionErasedData
from schemas.lifecycle import FINISHED, State
from streams import keys
from streams.admission import claim_idle, idle_due, release, touch
from streams.audit import audit, pseudonym
from streams.config import StreamConfig
from streams.connection import Redis
from streams.events import live_events_minid, publish
from streams.media import delete_media
from streams.sessions import get_meta, set_state


async def pending_meta(r: Redis, sid: str) -> dict[str, str] | None:
    """The meta of a session a worker should still work on; None (and its media deleted) otherwise.

    A job can outlive its session: erased (its meta is deleted right after the tombstone is set; the
    workers check the tombstone again before they store anything), expired, or already finished by an
    earlier delivery.
    """
    meta = await get_meta(r, sid)
    if meta is None or meta.get("state") in FINISHED:
        await delete_media(r, sid)
        return None
    return meta


async def fail_session(r: Redis, cfg: StreamConfig, sid: str, code: str, message: str, *, retryable: bool = False) -> None:
    """Delete media first (so nothing lingers if the rest fails), then tell the client."""
    deleted = await delete_media(r, sid)
    meta = await get_meta(r, sid)
    if meta is None or meta.get("state") == State.FAILED:
        return
    await set_state(r, cfg, sid, State.FAILED, error_code=code, error=message)
    await publish(r, cfg, sid, ErrorData(code=code, message=message, retryable=retryable, final=True))
    await audit(r, cfg, "session_failed", sid, code=code, media_keys_deleted=deleted)


async def erase_session(r: Redis, cfg: StreamConfig, sid: str) -> dict[str, Any]:
    """Erase every Redis key and stream entry of the session, leaving only a tombstone that stops late
    workers: a keyed pseudonym of the id, never the id.

    The stored result lives outside Redis; the caller deletes it and completes the receipt. Connected
    clients are told with a ``session_erased`` event that Redis keeps ``events_retention_s`` at most.
    """
    await r.zadd(keys.ERASED, {pseudonym(cfg, sid): time.time()})
    existing = await existing_keys(r, sid)
    if existing:
        await r.delete(*existing)
    await release(r, sid)
    entries = await purge_entries(r, sid)
    await publish(r, cfg, sid, SessionErasedData(keys_deleted=len(existing)))
    await r.expire(keys.session_events(sid), cfg.events_retention_s)
    await audit(r, cfg, "session_erased", sid, keys_deleted=len(existing), stream_entries_deleted=entries)
    return {"session_id": sid, "redis_keys_deleted": [k.split(":")[-1] for k in existing], "erased_at": time.time()}


async def existing_keys(r: Redis, sid: str) -> list[str]:
    return [k for k in keys.session_keys(sid) if await r.exists(k)]


async def is_tombstoned(r: Redis, cfg: StreamConfig, sid: str) -> bool:
    return await r.zscore(keys.ERASED, pseudonym(cfg, sid)) is not None


PURGED_STREAMS: tuple[str, ...] = (keys.EVENTS, keys.JOBS, keys.FOLLOW, keys.ANALYZE, keys.DEAD)
"""Global streams whose entries may name a session: live events, jobs not yet acknowledged, dead letters."""
PAGE = 500


async def purge_entries(r: Redis, sid: str) -> int:
    """XDEL every entry of the global streams that names ``sid`` (acknowledging it first in a work
    stream, so no consumer group keeps a pending reference); returns how many were deleted."""
    needle, deleted = sid.encode(), 0
    for stream in PURGED_STREAMS:
        doomed: list[bytes] = []
        start = "-"
        while True:
            rows = await r.xrange(stream, min=start, max="+", count=PAGE)
            doomed += [entry for entry, fields in rows if any(needle in value for value in fields.values())]
            if len(rows) < PAGE:
                break
            start = f"({rows[-1][0].decode()}"
        if not doomed:
            continue
        if stream in keys.GROUPS:
            with contextlib.suppress(ResponseError):
                await r.xack(stream, keys.GROUPS[stream], *doomed)
        deleted += await r.xdel(stream, *doomed)
    return deleted


async def reap_idle(r: Redis, cfg: StreamConfig) -> list[str]:
    """Fail the uploads that sent nothing for ``upload_idle_s``: media deleted, a final ``upload_idle``
    error event, slot freed. Safe to run from every gateway at once: each session is claimed by one.

    A tus PATCH in progress (its lock held) is bytes arriving: the deadline moves on. A finished partial
    tus upload waits for its concatenation without sending bytes: it keeps its slot (until the session
    TTL) but loses its idle deadline.
    """
    reaped: list[str] = []
    for sid in await idle_due(r):
        if not await claim_idle(r, sid):
            continue
        if await r.exists(keys.tus_lock(sid)):
            await touch(r, cfg, sid, force=True)
            continue
        upload = await r.hmget(keys.tus(sid), ["concat", "offset", "length"])
        if upload[0] == b"partial" and upload[1] is not None and int(upload[1]) >= int(upload[2]):
            continue
        await fail_session(r, cfg, sid, ErrorCode.UPLOAD_IDLE,
                           f"no chunk arrived for {cfg.upload_idle_s:g} s; the upload was dropped, start again",
                           retryable=True)
        await release(r, sid)
        reaped.append(sid)
    return reaped


async def trim_live_events(r: Redis, cfg: StreamConfig) -> None:
    """Drop ``dodo:events`` entries older than ``events_retention_s`` even when nothing new is published."""
    await r.xtrim(keys.EVENTS, minid=live_events_minid(cfg), approximate=False)
