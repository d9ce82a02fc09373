"""Operator actions that span Redis and the result store."""

from __future__ import annotations

from enum import Enum
from typing import Any

from processors.sinks import open_sink
from dodolens.settings import Settings, SettingsError
from gateway.auth import valid_session_id
from processors.sinks import SinkError
from streams import keys
from streams.audit import audit
from streams.connection import connect
from streams.lifecycle import erase_session, existing_keys, is_tombstoned
from streams.results import queue_for_sink


class NotASessionId(ValueError):
    """An id that cannot name a session: a usage error, refused before anything is read or written."""


class Erasure(Enum):
    ERASED = "erased"
    ALREADY_ERASED = "already_erased"
    UNKNOWN = "unknown"
    """Nothing of this id anywhere and no tombstone: nothing is written, so a mistyped id leaves no trace."""


async def erase_everywhere(settings: Settings, sid: str) -> tuple[Erasure, dict[str, Any]]:
    """What ``DELETE /sessions/{sid}`` does, for an operator: Redis keys and the stored result.

    Already erased: the tombstone is there and nothing but the short-lived ``session_erased`` notice is left."""
    if not settings.redis_url:
        raise SettingsError("erase needs REDIS_URL: the Redis that holds the session")
    if not valid_session_id(sid):
        raise NotASessionId(f"{sid!r} is not a session id (32 lowercase hex characters)")
    r = connect(settings.redis_url, cluster=settings.redis_cluster)
    sink = open_sink(settings.sink)
    try:
        stream = settings.stream_config(settings.keyring())
        tombstoned = await is_tombstoned(r, stream, sid)
        notice = keys.session_events(sid) if tombstoned else None
        left = [k for k in await existing_keys(r, sid) if k != notice]
        if not left and await sink.get(sid) is None:
            outcome = Erasure.ALREADY_ERASED if tombstoned else Erasure.UNKNOWN
            return outcome, {"session_id": sid, "outcome": outcome.value}
        receipt = await erase_session(r, stream, sid)
        try:
            receipt["result_deleted"] = await sink.delete(sid)
        except SinkError:
            await queue_for_sink(r, sid)
            receipt["result_deleted"] = False
            receipt["result_erasure"] = "queued: a worker deletes the result once the store answers"
        await audit(r, stream, "result_erased", sid, deleted=receipt["result_deleted"], by="operator")
        return Erasure.ERASED, {**receipt, "outcome": Erasure.ERASED.value}
    finally:
        await sink.close()
        await r.aclose()
