"""Operator requests to every worker process, over ``dodo:control``, and their answers.

Gateway and workers never import each other; they meet in Redis. The gateway appends a request to
``dodo:control``; every worker tails the stream (as the hub tails ``dodo:events``), acts, and pushes
its answer to a list that lives a minute; the gateway reads answers for a moment. A task only one
worker should do (a sweep) goes to whoever claims it first. Requests older than ``REQUEST_MAX_AGE_S``
are ignored: a worker that starts late does not act on yesterday's request.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import gc
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from streams import keys
from streams.connection import RETRYABLE, Redis, as_str, str_fields

log = logging.getLogger("dodolens.control")

CONTROL_MAXLEN = 100
REPLY_TTL_S = 60
REQUEST_MAX_AGE_S = 30.0
GRACE_S = 0.25
"""How long to keep reading answers once the awaited one is in: the other workers answer within milliseconds."""

Handler = Callable[[dict[str, str]], Awaitable[None]]


async def send_request(r: Redis, action: str) -> str:
    """Append a request for every worker; returns its id (where the answers will be)."""
    request_id = secrets.token_hex(8)
    await r.xadd(keys.CONTROL, {"action": action, "id": request_id, "at": repr(time.time())}, maxlen=CONTROL_MAXLEN,
                 approximate=True)
    return request_id


async def answer(r: Redis, request_id: str, body: dict[str, Any]) -> None:
    async with r.pipeline(transaction=False) as pipe:
        pipe.rpush(keys.control_replies(request_id), orjson.dumps(body))
        pipe.expire(keys.control_replies(request_id), REPLY_TTL_S)
        await pipe.execute()


async def claim(r: Redis, request_id: str, task: str) -> bool:
    """True for the first worker to ask, false for every other."""
    return bool(await r.set(keys.control_claim(request_id, task), "1", nx=True, ex=REPLY_TTL_S))


async def read_answers(r: Redis, request_id: str, *, enough: Callable[[list[dict[str, Any]]], bool],
                       timeout_s: float) -> list[dict[str, Any]]:
    """Answers until ``enough`` says so (then a short grace for the rest) or ``timeout_s`` passes."""
    replies: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while (remaining := deadline - time.monotonic()) > 0:
        popped = await r.blpop([keys.control_replies(request_id)], timeout=min(remaining, 0.5))
        if popped is None:
            continue
        replies.append(orjson.loads(popped[1]))
        if enough(replies):
            deadline = min(deadline, time.monotonic() + GRACE_S)
    return replies


async def _last_id(r: Redis) -> str:
    rows = await r.xrevrange(keys.CONTROL, count=1)
    return as_str(rows[0][0]) if rows else "0-0"


async def listen(r: Redis, handle: Handler, stop: asyncio.Event, block_ms: int = 1000) -> None:
    """Act on every request appended after this call, until ``stop``; a failing handler is logged, not fatal."""
    last = None
    while not stop.is_set():
        try:
            if last is None:
                last = await _last_id(r)
            reply = await r.xread({keys.CONTROL: last}, count=10, block=block_ms)
        except RETRYABLE:
            await asyncio.sleep(1)
            continue
        for _stream, rows in reply or []:
            for entry_id, fields in rows:
                last = as_str(entry_id)
                request = str_fields(fields)
                if time.time() - float(request.get("at", 0)) > REQUEST_MAX_AGE_S:
                    continue
                try:
                    await handle(request)
                except Exception:
                    log.exception("control request %s failed", request.get("action"))


def rss_bytes() -> int | None:
    """This process's resident memory now (Linux); None elsewhere."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


def reclaim_memory() -> dict[str, Any]:
    """A full garbage collection, then glibc gives freed heap pages back to the system (``malloc_trim``):
    without the trim, memory Python frees stays in the process and RSS does not move."""
    before = rss_bytes()
    collected = gc.collect()
    trim = _malloc_trim()
    trimmed = bool(trim(0)) if trim is not None else False
    after = rss_bytes()
    return {"pid": os.getpid(), "objects_collected": collected, "heap_trimmed": trimmed, "rss_before": before,
            "rss_after": after, "freed_bytes": max(0, before - after) if before is not None and after is not None else 0}
