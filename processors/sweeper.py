"""Cleanup sweeper: the safety net behind TTLs and the workers' own deletes.

Every ``sweep_interval_s`` it finds media keys that should not exist (session finished or
gone, or no TTL), deletes them and records a ``failed_cleanup`` alert; tells clients of
sessions that expired; and, when Redis passes 80 % of ``maxmemory``, fails the oldest
sessions to make room.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from redis.exceptions import ResponseError

from schemas.errors import ErrorCode
from schemas.events import ErrorData
from schemas.lifecycle import FINISHED
from streams import keys
from streams.admission import release
from streams.audit import audit
from streams.config import StreamConfig
from streams.connection import RETRYABLE, Redis, as_str, info_per_node
from streams.events import publish
from streams.lifecycle import fail_session
from streams.sessions import get_meta

log = logging.getLogger("dodolens.sweeper")

MEMORY_THRESHOLD = 0.8
MEMORY_RELIEF_TARGET = 0.75
"""Shed load down to here, not just under the threshold, so the next upload does not trip it again."""
ERASED_RETENTION_S = 86_400
GONE_CONSUMER_IDLE_MS = 3_600_000


@dataclass
class SweepReport:
    orphans_deleted: list[str] = field(default_factory=list)
    orphan_bytes: int = 0
    """Redis's MEMORY USAGE of the orphans, read just before they were deleted."""
    expired_sessions: list[str] = field(default_factory=list)
    pressure_failed: list[str] = field(default_factory=list)
    consumers_forgotten: list[str] = field(default_factory=list)


async def alert(r: Redis, kind: str, **fields: str | int | float) -> None:
    await r.xadd(keys.ALERTS, {"type": kind, "at": time.time(), **fields}, maxlen=1000, approximate=True)


async def media_keys_by_session(r: Redis) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    async for raw in r.scan_iter(match=f"{keys.PREFIX}:{{*}}:*", count=500):
        key = as_str(raw)
        sid = keys.session_id_of(key)
        if sid and key in keys.media_keys(sid):
            found.setdefault(sid, []).append(key)
    return found


async def sweep_orphans(r: Redis, cfg: StreamConfig, report: SweepReport) -> None:
    for sid, media in (await media_keys_by_session(r)).items():
        meta = await get_meta(r, sid)
        finished = meta is None or meta.get("state") in FINISHED
        stray = [k for k in media if finished or await r.ttl(k) == -1]
        if not stray:
            continue
        report.orphan_bytes += sum([await r.memory_usage(k, samples=0) or 0 for k in stray])
        await r.delete(*stray)
        report.orphans_deleted.extend(stray)
        await alert(r, "failed_cleanup", keys=len(stray))
        await audit(r, cfg, "failed_cleanup", sid, keys_deleted=len(stray))


async def sweep_expired(r: Redis, cfg: StreamConfig, report: SweepReport) -> None:
    """Sessions still listed as active whose meta expired: delete leftovers and tell the client."""
    for raw in await r.zrange(keys.ACTIVE, 0, -1):
        sid = as_str(raw)
        if await get_meta(r, sid) is not None:
            continue
        await release(r, sid)
        await r.delete(*keys.media_keys(sid))
        await publish(r, cfg, sid, ErrorData(code=ErrorCode.MEDIA_EXPIRED, retryable=True, final=True,
                                             message="the session expired before it finished; upload again"))
        report.expired_sessions.append(sid)
        await audit(r, cfg, "ttl_expired", sid)


async def memory_fraction(r: Redis) -> float | None:
    """Used share of ``maxmemory`` on the fullest node (every primary of a cluster); None when unlimited."""
    fractions = [int(info["used_memory"]) / int(info["maxmemory"])
                 for info in await info_per_node(r, "memory") if int(info.get("maxmemory", 0))]
    return max(fractions) if fractions else None


async def relieve_memory(r: Redis, cfg: StreamConfig, report: SweepReport, threshold: float = MEMORY_THRESHOLD,
                         target: float = MEMORY_RELIEF_TARGET) -> None:
    """Past ``threshold`` of maxmemory, fail the oldest active sessions until Redis is under ``target``."""
    fraction = await memory_fraction(r)
    if fraction is None or fraction <= threshold:
        return
    while fraction is not None and fraction > target:
        oldest = await r.zrange(keys.ACTIVE, 0, 0)
        if not oldest:
            await alert(r, "memory_pressure", fraction=round(fraction, 3), sessions=0)
            return
        sid = as_str(oldest[0])
        await release(r, sid)
        await fail_session(r, cfg, sid, ErrorCode.MEMORY_PRESSURE,
                           "the service ran short of memory and dropped this upload; upload again", retryable=True)
        report.pressure_failed.append(sid)
        await alert(r, "memory_pressure", fraction=round(fraction, 3))
        fraction = await memory_fraction(r)


async def forget_gone_consumers(r: Redis, report: SweepReport, idle_ms: int = GONE_CONSUMER_IDLE_MS) -> None:
    """Remove consumers idle for long with nothing pending: every worker process has its own name,
    so without this the groups (and ``dodolens lag``) list every worker that ever ran."""
    for stream, group in keys.GROUPS.items():
        try:
            consumers = await r.xinfo_consumers(stream, group)
        except ResponseError:
            continue
        for consumer in consumers:
            name = as_str(consumer["name"])
            if consumer["pending"] == 0 and consumer["idle"] > idle_ms:
                await r.xgroup_delconsumer(stream, group, name)
                report.consumers_forgotten.append(f"{group}/{name}")


async def sweep_once(r: Redis, cfg: StreamConfig) -> SweepReport:
    report = SweepReport()
    await sweep_orphans(r, cfg, report)
    await sweep_expired(r, cfg, report)
    await relieve_memory(r, cfg, report)
    await forget_gone_consumers(r, report)
    await r.zremrangebyscore(keys.ERASED, "-inf", time.time() - ERASED_RETENTION_S)
    return report


async def run_sweeper(r: Redis, cfg: StreamConfig, interval_s: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await sweep_once(r, cfg)
        except RETRYABLE:
            log.warning("sweep skipped: Redis unreachable")
        try:
            await asyncio.wait_for(stop.wait(), interval_s)
        except asyncio.TimeoutError:
            pass
