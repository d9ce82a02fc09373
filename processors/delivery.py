"""Getting a finished result into the sink, however long the sink refuses it.

The analyzer keeps the result sealed in Redis (``streams.results``) and makes the first write
itself; what fails for a reason that may pass (Airtable's 429 and its 30 s lock, a 5xx, the
network) is queued again for when the sink said to come back (``Retry-After``, the lock) or
after a doubling backoff. Every worker runs :func:`run_delivery`, so a write outlives the worker
that began it. A write that lands for a session erased meanwhile is deleted straight after: an
erasure never leaves a record behind, whichever of the two came first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from processors.sinks import ResultSink, SinkError
from processors.sweeper import alert
from schemas.errors import ErrorCode
from schemas.events import EventType
from schemas.result import decode_result
from streams.audit import audit
from streams.config import StreamConfig
from streams.connection import RETRYABLE, Redis
from streams.crypto import EPOCH_SECONDS
from streams.events import publish
from streams.lifecycle import fail_session
from streams.results import count_try, kept_result, queue_for_sink, settled, take_due
from streams.sessions import State, get_meta, is_erased, set_state, update_meta

log = logging.getLogger("dodolens.delivery")


@dataclass(frozen=True)
class DeliveryConfig:
    hold_s: int = 86_400
    """How long a result waits in Redis for the sink; the sealing key opens it for a day at least."""
    backoff_s: float = 2.0
    """First wait after a failure the sink gave no wait for; it doubles with each failure."""
    max_backoff_s: float = 300.0
    lease_s: float = 120.0
    """A write taken by a worker is its own this long; longer than one sink call can take."""
    poll_s: float = 1.0
    batch: int = 10
    clock: Callable[[], float] = field(default=time.time, compare=False)

    def __post_init__(self) -> None:
        if not 0 < self.hold_s <= EPOCH_SECONDS:
            raise ValueError(f"hold_s must be in (0, {EPOCH_SECONDS}]: a sealed result opens for one day after")
        if self.backoff_s <= 0 or self.max_backoff_s < self.backoff_s or self.lease_s <= 0 or self.poll_s <= 0:
            raise ValueError("backoff_s, lease_s and poll_s must be positive, max_backoff_s at least backoff_s")

    def lease(self) -> float:
        return self.clock() + self.lease_s


async def deliver(r: Redis, cfg: StreamConfig, delivery: DeliveryConfig, sink: ResultSink, sid: str) -> None:
    """One attempt to settle ``sid`` with the sink (write its kept result, or erase its record)."""
    try:
        if await is_erased(r, sid):
            await sink.delete(sid)
            await settled(r, sid)
            return
        blob = await kept_result(r, cfg, sid)
        if blob is None:
            await settled(r, sid)
            await _lost(r, cfg, sid)
            return
        await sink.put(sid, blob)
        if await is_erased(r, sid):
            await sink.delete(sid)
            await settled(r, sid)
            return
    except SinkError as exc:
        await _failed(r, cfg, delivery, sid, exc)
        return
    await settled(r, sid)
    await _stored(r, cfg, sid, blob)


async def run_delivery(r: Redis, cfg: StreamConfig, delivery: DeliveryConfig, sink: ResultSink,
                       stop: asyncio.Event) -> None:
    """Settle every due session, then wait ``poll_s``; until ``stop`` is set."""
    while not stop.is_set():
        try:
            now = delivery.clock()
            for sid in await take_due(r, now, now + delivery.lease_s, delivery.batch):
                await deliver(r, cfg, delivery, sink, sid)
        except RETRYABLE:
            log.warning("result delivery paused: Redis unreachable")
        try:
            await asyncio.wait_for(stop.wait(), delivery.poll_s)
        except asyncio.TimeoutError:
            pass


async def _stored(r: Redis, cfg: StreamConfig, sid: str, blob: bytes) -> None:
    if await get_meta(r, sid) is None:
        return
    result = decode_result(blob)
    await set_state(r, cfg, sid, State.DONE, result_bytes=len(blob))
    await publish(r, cfg, sid, EventType.ANALYSIS_COMPLETE, {"result": result.model_dump(mode="json")})
    await audit(r, cfg, "analysis_complete", sid, result_bytes=len(blob), seconds=result.timings.total_s)


async def _failed(r: Redis, cfg: StreamConfig, delivery: DeliveryConfig, sid: str, exc: SinkError) -> None:
    if not exc.retryable:
        log.error("result of %s refused by the sink: %s", sid, exc)
        await settled(r, sid)
        await alert(r, "sink_refused", message=str(exc)[:300])
        await fail_session(r, cfg, sid, ErrorCode.SINK_FAILED, f"the result store refused the result: {exc}")
        return
    tries = await count_try(r, sid)
    wait = exc.retry_after
    if wait is None:
        wait = min(delivery.max_backoff_s, delivery.backoff_s * 2 ** max(0, tries - 1))
    due = delivery.clock() + wait
    await queue_for_sink(r, sid, due)
    await update_meta(r, cfg, sid, sink_retry_at=round(due, 3), sink_tries=tries)
    log.warning("result of %s not stored yet (try %d), again in %.1f s: %s", sid, tries, wait, exc)


async def _lost(r: Redis, cfg: StreamConfig, sid: str) -> None:
    """The kept result expired (the sink refused it for ``hold_s``) or no longer opens."""
    meta = await get_meta(r, sid)
    if meta is None or meta.get("state") != State.STORING:
        return
    await alert(r, "result_lost")
    await fail_session(r, cfg, sid, ErrorCode.SINK_FAILED,
                       "the result could not be stored before it expired; upload the video again", retryable=True)
