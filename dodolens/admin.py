"""Operator actions that span Redis and the result store."""

from __future__ import annotations

from typing import Any

from dodolens.runner import make_sink
from dodolens.settings import Settings, SettingsError
from processors.sinks import SinkError
from streams.audit import audit
from streams.connection import connect
from streams.lifecycle import erase_session
from streams.results import queue_for_sink


async def erase_everywhere(settings: Settings, sid: str) -> dict[str, Any]:
    """What ``DELETE /sessions/{sid}`` does, for an operator: Redis keys and the stored result."""
    if not settings.redis_url:
        raise SettingsError("erase needs REDIS_URL: the Redis that holds the session")
    r = connect(settings.redis_url, cluster=settings.redis_cluster)
    sink = make_sink(settings)
    try:
        stream = settings.stream_config(settings.keyring())
        receipt = await erase_session(r, stream, sid)
        try:
            receipt["result_deleted"] = await sink.delete(sid)
        except SinkError:
            await queue_for_sink(r, sid)
            receipt["result_deleted"] = False
            receipt["result_erasure"] = "queued: a worker deletes the result once the store answers"
        await audit(r, stream, "result_erased", sid, deleted=receipt["result_deleted"], by="operator")
        return receipt
    finally:
        await sink.close()
        await r.aclose()
