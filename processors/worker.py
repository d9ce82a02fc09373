"""The consumer-group loop every worker runs: read, handle, ack; claim what others left; dead-letter.

Read top to bottom: each turn first claims entries idle for too long (a worker died holding
them), then reads new ones, and runs each in its own task under a concurrency bound. While a
handler runs its entry is kept claimed (``keep_claimed``), so a job longer than ``claim_idle_ms``
is not taken over by another worker while this one is still at it. A handler that returns has
finished the job (success or a reported failure) and the entry is acknowledged; one that raises
leaves it pending, to be claimed again after ``claim_idle_ms``.
After ``max_deliveries`` the entry goes to ``dodo:dead`` and the session is failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from schemas.errors import ErrorCode
from streams.config import StreamConfig
from streams.connection import RETRYABLE, Redis
from streams.jobs import Job, ack, claim_stale, dead_letter, deliveries, ensure_group, read_new, touch
from streams.lifecycle import fail_session

log = logging.getLogger("dodolens.worker")

Handler = Callable[[Job], Awaitable[None]]


async def keep_claimed(r: Redis, job: Job, group: str, consumer: str, idle_ms: int) -> None:
    """Until cancelled, reset the entry's idle time every third of ``idle_ms``: a job still running
    must not look stale to other workers' XAUTOCLAIM (a decode or an analysis can outlast it)."""
    while True:
        await asyncio.sleep(idle_ms / 3000)
        with contextlib.suppress(*RETRYABLE):
            await touch(r, job.stream, group, consumer, job.entry_id)


async def run_group(
    r: Redis,
    cfg: StreamConfig,
    *,
    stream: str,
    group: str,
    consumer: str,
    handler: Handler,
    concurrency: int,
    claim_idle_ms: int,
    max_deliveries: int,
    block_ms: int = 1000,
    stop: asyncio.Event | None = None,
) -> None:
    stop = stop or asyncio.Event()
    slots = asyncio.Semaphore(concurrency)
    running: set[asyncio.Task[None]] = set()
    delay = 0.1

    async def handle(job: Job) -> None:
        try:
            if await deliveries(r, stream, group, job.entry_id) > max_deliveries:
                await fail_session(r, cfg, job.session_id, ErrorCode.TOO_MANY_ATTEMPTS,
                                   f"processing failed {max_deliveries} times; upload the video again", retryable=True)
                await dead_letter(r, cfg, job, "too many deliveries")
                return
            keeping = asyncio.create_task(keep_claimed(r, job, group, consumer, claim_idle_ms))
            try:
                await handler(job)
            finally:
                keeping.cancel()
            await ack(r, stream, group, job.entry_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %s on %s failed; left pending for a retry", job.entry_id, stream)
        finally:
            slots.release()

    try:
        while not stop.is_set():
            try:
                await ensure_group(r, stream, group)
                free = concurrency - len(running)
                jobs = await claim_stale(r, stream, group, consumer, claim_idle_ms, free) if free else []
                if free - len(jobs) > 0:
                    jobs += await read_new(r, stream, group, consumer, free - len(jobs), block_ms)
                delay = 0.1
            except RETRYABLE:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if not jobs and not free:
                await asyncio.sleep(block_ms / 1000)
            for job in jobs:
                await slots.acquire()
                task = asyncio.create_task(handle(job))
                running.add(task)
                task.add_done_callback(running.discard)
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
