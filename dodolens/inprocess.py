"""``dodolens analyze``'s own upload: the process that runs the pipeline appends the video into Redis
itself, through the functions the gateway appends with, instead of sending it to itself over HTTP.

The session gets the same meta, events, follow job and decode as one uploaded with the chunk API;
only the loopback HTTP hop (and its copies of every byte) is gone. ``dodolens upload`` stays a real client.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
from collections.abc import Iterator

import orjson

from dodolens.outcome import EventCallback, Outcome
from gateway.admission import admit_client
from gateway.config import GatewayConfig
from gateway.errors import ApiError
from gateway.lifecycle import begin_upload, check_size, complete_upload, store_chunk
from processors.video import HEAD_BYTES, leading_chunks
from streams.chunks import KIND, MediaGone, SessionGone
from streams.connection import Redis
from streams.events import session_tail
from streams.sessions import expected_chunks, get_meta


async def analyze_in_process(r: Redis, cfg: GatewayConfig, data: bytes | mmap.mmap, *, content_type: str,
                             on_event: EventCallback | None = None, parallel: int = 4,
                             timeout_s: float = 900.0) -> Outcome:
    """Create a session for ``data``, append its chunks (an MP4's trailing index first, as the clients
    send it, so the follow job decodes while the rest arrives), complete it and wait for its outcome."""
    try:
        check_size(cfg, len(data))
        admitted = await admit_client(r, cfg, "")
    except ApiError as exc:
        return Outcome("", "", error=_error_of(exc))
    sid, token, _expires = await begin_upload(r, cfg, admitted, len(data), content_type)
    outcome = Outcome(sid, token)
    follower = asyncio.create_task(_follow(r, sid, outcome, on_event))
    try:
        try:
            with memoryview(data) as view:
                await _append_all(r, cfg, sid, view, parallel)
            meta = await get_meta(r, sid)
            if meta is None:
                raise SessionGone("the session is gone (expired or erased)")
            await complete_upload(r, cfg, sid, meta, chunks=expected_chunks(len(data), cfg.stream.chunk_size))
        except ApiError as exc:
            outcome.error = _error_of(exc)
            return outcome
        except MediaGone as exc:  # erased or expired meanwhile: what the chunk API answers with a 410
            outcome.error = {"code": "session_gone", "message": str(exc)}
            return outcome
        await asyncio.wait_for(asyncio.shield(follower), timeout_s)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    return outcome


def _error_of(exc: ApiError) -> dict[str, str]:
    return {"code": exc.code, "message": exc.message}


async def _append_all(r: Redis, cfg: GatewayConfig, sid: str, view: memoryview, parallel: int) -> None:
    """Seal and append every chunk, ``parallel`` at a time; the leading ones stored before any other."""
    chunk_size = cfg.stream.chunk_size
    count = expected_chunks(len(view), chunk_size)
    lead = leading_chunks(view[:HEAD_BYTES], len(view), chunk_size) if count > 1 else []

    async def append(indexes: Iterator[int]) -> None:
        for index in indexes:
            part = view[index * chunk_size : (index + 1) * chunk_size]
            epoch, sealed = cfg.stream.keyring.seal(part, sid, KIND, index)
            await store_chunk(r, cfg, sid, index, len(part), epoch, sealed, count)

    await append(iter(lead))
    first = set(lead)
    rest = (i for i in range(count) if i not in first)
    await asyncio.gather(*(append(rest) for _ in range(parallel)))


async def _follow(r: Redis, sid: str, outcome: Outcome, on_event: EventCallback | None) -> None:
    """The session's events, as the WebSocket would send them, until one ends its story."""
    after = "0-0"
    while True:
        for event in await session_tail(r, sid, after):
            after = event.id
            if await outcome.take(orjson.loads(event.model_dump_json()), on_event):
                return
