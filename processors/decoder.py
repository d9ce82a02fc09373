"""Decoder job: chunks (random access, never assembled) -> PyAV -> frames + audio in Redis."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from typing import BinaryIO

from processors.config import WorkerConfig
from processors.decode import DecodedMedia, DecodeError, DecodeLimits, decode_media
from processors.media_reader import ChunkReader, OrderedDigest
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
from streams.sessions import (
    State,
    chunk_map,
    expected_chunks,
    is_erased,
    set_state,
    update_meta,
)

FETCH_TIMEOUT_S = 30.0
READ_AHEAD = 2
"""Chunks fetched ahead of a front-to-back reader, so Redis reads and decryption overlap decoding."""


class Aborted(Exception):
    """The decode was told to stop (timeout or erasure) while it was reading chunks."""


class ChecksumMismatch(Exception):
    """The uploaded bytes do not hash to the SHA-256 the client declared at completion."""


class ChunkFetcher:
    """A blocking ``fetch(index)`` for the decode thread, served by the event loop's Redis client.

    Sequential reads (the audio pass, a streamable container) are read ahead by ``READ_AHEAD``
    chunks; every chunk fetched in order feeds the SHA-256 the client declared, so checking it needs
    no second pass. Failures are recorded so the job can tell an expired chunk from a bad file.
    """

    def __init__(self, r: Redis, cfg: WorkerConfig, sid: str, entries: dict[int, tuple[str, int]], count: int,
                 loop: asyncio.AbstractEventLoop, abort: threading.Event) -> None:
        self.failures: list[BaseException] = []
        self.digest = OrderedDigest(count)
        self._r, self._cfg, self._sid, self._loop, self._abort = r, cfg, sid, loop, abort
        self._entries = entries
        self._count = count
        self._ahead: dict[int, concurrent.futures.Future[bytes]] = {}
        self._last = -1

    def __call__(self, index: int) -> bytes:
        try:
            if self._abort.is_set():
                raise Aborted()
            future = self._ahead.pop(index, None) or self._request(index)
            sequential = index == self._last + 1
            self._last = index
            for stale in [i for i in self._ahead if not index < i <= index + READ_AHEAD]:
                self._ahead.pop(stale).cancel()
            if sequential:
                for ahead in range(index + 1, min(index + 1 + READ_AHEAD, self._count)):
                    if ahead not in self._ahead and ahead in self._entries:
                        self._ahead[ahead] = self._request(ahead)
            data = future.result(FETCH_TIMEOUT_S)
        except BaseException as exc:
            self.failures.append(exc)
            raise
        self.digest.offer(index, data)
        return data

    def sha256(self) -> str:
        """The SHA-256 of the whole upload, fetching only the chunks not yet read in order."""
        return self.digest.hexdigest(self)

    def close(self) -> None:
        for future in self._ahead.values():
            future.cancel()
        self._ahead.clear()

    def _request(self, index: int) -> concurrent.futures.Future[bytes]:
        if index not in self._entries:
            raise ChunkMissing(f"chunk {index} of the session is not stored")
        read = read_chunk(self._r, self._cfg.stream, self._sid, index, self._entries[index][0])
        return asyncio.run_coroutine_threadsafe(read, self._loop)


def decode_checked(reader: BinaryIO, fetcher: ChunkFetcher, limits: DecodeLimits, sha256: str | None) -> DecodedMedia:
    """Decode, then check the declared SHA-256; a mismatch outranks a decode error (a damaged transfer)."""
    try:
        media = decode_media(reader, limits)
    except DecodeError:
        if sha256 and fetcher.sha256() != sha256:
            raise ChecksumMismatch() from None
        raise
    if sha256 and fetcher.sha256() != sha256:
        raise ChecksumMismatch()
    return media


async def fail_decode(r: Redis, cfg: WorkerConfig, sid: str, exc: BaseException, failures: list[BaseException]) -> None:
    """Tell the client why the decode stopped; an unexpected fetch failure is re-raised so the job is retried."""
    if isinstance(exc, ChecksumMismatch):
        await fail_session(r, cfg.stream, sid, ErrorCode.CHECKSUM_MISMATCH,
                           "the SHA-256 of the received bytes does not match the one declared")
    elif isinstance(exc, ChunkMissing) or any(isinstance(f, ChunkMissing) for f in failures):
        await fail_session(r, cfg.stream, sid, ErrorCode.MEDIA_EXPIRED,
                           "the uploaded chunks expired or were lost before decoding; upload again", retryable=True)
    elif isinstance(exc, SealError) or any(isinstance(f, SealError) for f in failures):
        await fail_session(r, cfg.stream, sid, ErrorCode.MEDIA_UNREADABLE,
                           "a stored chunk failed its integrity check; upload again", retryable=True)
    elif failures and not any(isinstance(f, Aborted) for f in failures):
        raise failures[0] from exc
    elif isinstance(exc, DecodeError):
        await fail_session(r, cfg.stream, sid, exc.code, exc.message)


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
    size, chunk_size = int(meta["size"]), int(meta["chunk_size"])
    fetcher = ChunkFetcher(r, cfg, sid, chunk_map(meta), expected_chunks(size, chunk_size), asyncio.get_running_loop(), abort)
    reader = ChunkReader(size, chunk_size, fetcher)
    budget = cfg.processing_timeout_s - (started - float(meta.get("processing_started_at", started)))
    try:
        media: DecodedMedia = await asyncio.wait_for(
            asyncio.to_thread(decode_checked, reader, fetcher, cfg.limits, meta.get("sha256")), budget)
    except TimeoutError:
        abort.set()
        await fail_session(r, cfg.stream, sid, ErrorCode.PROCESSING_TIMEOUT,
                           f"decoding took longer than {cfg.processing_timeout_s:.0f} s", retryable=True)
        return
    except (DecodeError, ChecksumMismatch, ChunkMissing, SealError) as exc:
        await fail_decode(r, cfg, sid, exc, fetcher.failures)
        return
    finally:
        fetcher.close()
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
