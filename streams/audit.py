"""Audit trail: what happened to which (pseudonymous) session, never who or what was filmed."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import Any

import orjson

from streams import keys
from streams.config import StreamConfig
from streams.connection import RETRYABLE, Redis
from streams.crypto import derive_key

log = logging.getLogger("dodolens.audit")


def pseudonym(cfg: StreamConfig, sid: str) -> str:
    """A keyed, stable pseudonym: analysts can group by session without learning its id."""
    key = derive_key(cfg.keyring.master, "pseudonym")
    return hmac.new(key, sid.encode(), hashlib.sha256).hexdigest()[:20]


def minid(days: int, now: float | None = None) -> str:
    """Stream id below which entries are older than ``days`` (retention by MINID)."""
    return f"{int(((now or time.time()) - days * 86_400) * 1000)}-0"


async def audit(r: Redis, cfg: StreamConfig, action: str, sid: str | None = None, **fields: Any) -> None:
    """Record one audit entry in ``dodo:audit`` and as a JSON log line; never raises on an outage."""
    record = {"action": action, "at": round(time.time(), 3), **fields}
    if sid is not None:
        record["session"] = pseudonym(cfg, sid)
    line = orjson.dumps(record)
    log.info(line.decode())
    try:
        await r.xadd(keys.AUDIT, {"r": line}, minid=minid(cfg.audit_days), approximate=True)
    except RETRYABLE:
        log.warning("audit record kept in the log only: Redis unreachable")
