"""Decoder job: chunks (random access, never assembled) -> PyAV -> frames + audio in Redis."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from processors.config import WorkerConfig
from processors.decode import DecodeError, DecodedMedia, decode_media
from processors.media_reader import ChunkReader
from schemas.errors import ErrorCode
from schemas.events import EventType
from streams import keys
from streams.audit import audit
from streams.chunks import ChunkMissing, read_chunk
from streams.connection import Redis
from streams.crypto import SealError
from streams.events import publish
from streams.jobs import Job, enqueue
from streams.lifecycle import fail_session, pending_meta
from streams.media import delete_media, store_media
from streams.sessions import State, chunk_map, is_erased, set_state, update_meta

FETCH_TIMEOUT_S = 30.0


class Aborted(Exception):
    """The decode was told to stop (timeout or erasure) while it was reading chunks."""


def chunk_fetcher(r: Redis, cfg: WorkerConfig, sid: str, meta: dict[str, str], loop: asyncio.AbstractEventLoop,
                  abort: threading.Event) -> tuple[Callable[[int], bytes], list[BaseException]]:
    """A blocking ``fetch(index)`` for the decode thread, served by the event loop's Redis client."""
    entries = chunk_map(meta)
    failures: list[BaseException] = []

    def fetch(index: int) -> bytes:
        if abort.is_set():
            failures.append(Aborted())
            raise failures[-1]
        try:
            future = asyncio.run_coroutine_threadsafe(read_chunk(r, cfg.stream, sid, index, entries[index][0]), loop)
            return future.result(FETCH_TIMEOUT_S)
        except BaseException as exc:
            failures.append(exc)
            raise

    return fetch, failures


async def decode_job(r: Redis, cfg: WorkerConfig, job: Job) -> None:
    sid = job.session_id
    meta = await pending_meta(r, sid)
    if meta is None:
        return
    started = time.time()
    await set_state(r, cfg.stream, sid, State.PROCESSING, processing_started_at=meta.get("processing_started_at", started))
    await publish(r, cfg.stream, sid, EventType.PROCESSING_STARTED, {"stage": "decode"})
    await audit(r, cfg.stream, "media_access", sid, stage="decode", consumer=cfg.consumer)

    abort = threading.Event()
    fetch, failures = chunk_fetcher(r, cfg, sid, meta, asyncio.get_running_loop(), abort)
    reader = ChunkReader(int(meta["size"]), int(meta["chunk_size"]), fetch)
    budget = cfg.processing_timeout_s - (started - float(meta.get("processing_started_at", started)))
    try:
        media: DecodedMedia = await asyncio.wait_for(asyncio.to_thread(decode_media, reader, cfg.limits), budget)
    except asyncio.TimeoutError:
        abort.set()
        await fail_session(r, cfg.stream, sid, ErrorCode.PROCESSING_TIMEOUT,
                           f"decoding took longer than {cfg.processing_timeout_s:.0f} s", retryable=True)
        return
    except DecodeError as exc:
        if any(isinstance(f, ChunkMissing) for f in failures):
            await fail_session(r, cfg.stream, sid, ErrorCode.MEDIA_EXPIRED,
                               "the uploaded chunks expired or were lost before decoding; upload again", retryable=True)
        elif any(isinstance(f, SealError) for f in failures):
            await fail_session(r, cfg.stream, sid, ErrorCode.MEDIA_UNREADABLE,
                               "a stored chunk failed its integrity check; upload again", retryable=True)
        elif failures and not any(isinstance(f, Aborted) for f in failures):
            raise failures[0] from exc
        else:
            await fail_session(r, cfg.stream, sid, exc.code, exc.message)
        return
    finally:
        reader.close()

    if await is_erased(r, sid):
        await delete_media(r, sid)
        return
    decode_s = time.time() - started
    await store_media(r, cfg.stream, sid, [(f.timestamp, f.jpeg) for f in media.frames], media.audio_wav)
    await r.delete(keys.chunks(sid))
    await update_meta(r, cfg.stream, sid, duration=media.duration, width=media.width, height=media.height,
                      codec=media.video_codec, container=media.container, rotation=media.rotation,
                      has_audio=int(media.audio_wav is not None), decode_s=round(decode_s, 3), decoded_at=time.time())
    await enqueue(r, cfg.stream, keys.ANALYZE, sid)
    await publish(r, cfg.stream, sid, EventType.FRAMES_EXTRACTED, {
        "frames": len(media.frames),
        "timestamps": [round(f.timestamp, 2) for f in media.frames],
        "duration": round(media.duration, 3),
        "audio": media.audio_wav is not None,
    })
    await audit(r, cfg.stream, "decoded", sid, frames=len(media.frames), seconds=round(decode_s, 3))
