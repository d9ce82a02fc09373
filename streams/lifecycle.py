"""How sessions end: failed, finished or erased — and in every case, no media key left behind."""

from __future__ import annotations

import time
from typing import Any

from schemas.events import ErrorData, SessionErasedData
from schemas.lifecycle import FINISHED, State
from streams import keys
from streams.audit import audit
from streams.config import StreamConfig
from streams.connection import Redis
from streams.events import publish
from streams.media import delete_media
from streams.sessions import get_meta, is_erased, set_state


async def pending_meta(r: Redis, sid: str) -> dict[str, str] | None:
    """The meta of a session a worker should still work on; None (and its media deleted) otherwise.

    A job can outlive its session: erased, expired, or already finished by an earlier delivery.
    """
    meta = await get_meta(r, sid)
    if meta is None or meta.get("state") in FINISHED or await is_erased(r, sid):
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
    """Erase every Redis key of the session and mark it erased so late workers write nothing.

    The stored result lives outside Redis; the caller deletes it and completes the receipt.
    """
    await r.zadd(keys.ERASED, {sid: time.time()})
    existing = [k for k in keys.session_keys(sid) if await r.exists(k)]
    if existing:
        await r.delete(*existing)
    await r.zrem(keys.ACTIVE, sid)
    await publish(r, cfg, sid, SessionErasedData(keys_deleted=len(existing)))
    await r.expire(keys.session_events(sid), 60)
    await audit(r, cfg, "session_erased", sid, keys_deleted=len(existing))
    return {"session_id": sid, "redis_keys_deleted": [k.split(":")[-1] for k in existing], "erased_at": time.time()}
