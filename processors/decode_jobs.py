"""Decoder jobs: chunks (never assembled) -> PyAV -> frames + audio in Redis.

Two jobs can decode a session and exactly one does (``claim_decode``): the follow job, started
when the upload begins, decodes a streamable container (or an MP4 whose index was sent first)
while chunks arrive; the decode job, queued at completion, does a seeking decode of the stored
chunks (an MP4 sent in plain order, or whatever the follow job gave back).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import BinaryIO

from processors.config import WorkerConfig
from processors.video import (
    HEAD_BYTES,
    ArrivingReader,
    ChunkReader,
    DecodedMedia,
    DecodeError,
    DecodeLimits,
    OrderedDigest,
    TooFewKeyframes,
    decode_arriving,
    decode_media,
    leading_chunks,
    streamable,
)
from schemas.errors import ErrorCode
from schemas.events import FramesExtractedData, ProcessingStartedData
from schemas.lifecycle import accepts_chunks
from streams import keys
from streams.audit import audit
from streams.blocking import chunk_entry_blocking, read_chunk_blocking
from streams.chunks import ChunkMissing, MediaGone, SessionGone
from streams.connection import BlockingRedis, Redis
from streams.crypto import SealError, wipe
from streams.events import publish
from streams.jobs import Job, enqueue
from streams.lifecycle import fail_session, pending_meta
from streams.media import delete_media, store_media
from streams.sessions import (
    CHUNK_FIELD,
    State,
    chunk_map,
    claim_decode,
    expected_chunks,
    get_fields,
    get_meta,
    is_erased,
    release_decode,
    set_state,
    update_meta,
)
from streams.threads import in_own_thread, in_thread, on_loop, pool

log = logging.getLogger("dodolens.decoder")

READ_AHEAD = 2
"""Chunks fetched ahead of a front-to-back reader, so Redis reads and decryption overlap decoding."""
READERS = 4
"""Recent read positions remembered: the decode reads the audio front to back while it seeks the
video, so "sequential" means following any of them, not only the last read."""
POLL_MAX_S = 0.05
"""Longest pause between two looks for a chunk that has not arrived yet."""
HASHER_WAIT_S = 2.0
"""How long a decode waits for the follow job's SHA-256 verdict before hashing the upload itself."""


class Aborted(Exception):
    """The decode was told to stop (timeout, erasure, failure) while it was reading chunks."""


class Stalled(Exception):
    """The upload a follow job was decoding stopped sending chunks for ``follow_idle_s``."""


class ChecksumMismatch(Exception):
    """The uploaded bytes do not hash to the SHA-256 the client declared at completion."""


ReadChunk = Callable[[int], bytearray]
"""A blocking read of one chunk, run on the decode thread (or its read-ahead thread), never on the loop."""


class ChunkFetcher:
    """``fetch(index)`` for a reader on the decode thread: reads with a blocking client, reads ahead.

    Calls take turns: the two containers of one decode share their reader behind one lock
    (``processors.video.parallel.SharedWindow``); only the read-ahead thread runs beside them.

    Sequential reads (the audio pass, a streamable container) are read ahead by ``READ_AHEAD``
    chunks on a thread of their own, so Redis reads and decryption overlap decoding. Every chunk
    read in order feeds the SHA-256 the client declared, so checking it needs no second pass.
    Failures are recorded so the job can tell an expired chunk from a bad file.
    """

    def __init__(self, read: ReadChunk, count: int, abort: threading.Event, *, hashing: bool = True) -> None:
        self.failures: list[BaseException] = []
        self.digest = OrderedDigest(count)
        self._hashing = hashing
        self._read, self._count, self._abort = read, count, abort
        self._ahead: dict[int, concurrent.futures.Future[bytearray]] = {}
        self._pool: concurrent.futures.Executor | None = None
        self._lock = threading.Lock()
        self._recent: collections.deque[int] = collections.deque([-1], maxlen=READERS)

    def __call__(self, index: int) -> bytearray:
        try:
            if self._abort.is_set():
                raise Aborted()
            future = self._ahead.pop(index, None)
            data = future.result() if future is not None else self._fetch(index)
            sequential = index - 1 in self._recent
            self._recent.append(index)
            for stale in [i for i in self._ahead if not any(r < i <= r + READ_AHEAD for r in self._recent)]:
                _discard(self._ahead.pop(stale))
            if sequential:
                for ahead in range(index + 1, min(index + 1 + READ_AHEAD, self._count)):
                    if ahead not in self._ahead:
                        self._ahead[ahead] = self._executor().submit(self._fetch, ahead)
        except BaseException as exc:
            self.failures.append(exc)
            raise
        return data

    def sha256(self) -> str:
        """The SHA-256 of the whole upload, fetching only the chunks not yet read in order."""
        self._hashing = True
        return self.digest.hexdigest(self)

    def close(self) -> None:
        for future in self._ahead.values():
            _discard(future)
        self._ahead.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def offer(self, index: int, data: bytes | bytearray) -> None:
        """Feed the checksum; the decode's threads and the read-ahead thread all may."""
        if not self._hashing:
            return
        with self._lock:
            self.digest.offer(index, data)

    def _fetch(self, index: int) -> bytearray:
        data = self._read(index)
        self.offer(index, data)
        return data

    def _executor(self) -> concurrent.futures.Executor:
        if self._pool is None:
            self._pool = pool(1, "dodolens-read-ahead")
        return self._pool


def _discard(future: concurrent.futures.Future[bytearray]) -> None:
    """Drop a read-ahead nobody will use: cancelled if it has not run, its plaintext wiped if it has."""
    if not future.cancel() and future.done() and future.exception() is None:
        wipe(future.result())


def stored_chunk_reader(blocking: BlockingRedis, cfg: WorkerConfig, sid: str, meta: dict[str, str]) -> ReadChunk:
    """A reader of the chunks the meta says are stored (an upload that is complete)."""
    entries = chunk_map(meta)

    def read(index: int) -> bytearray:
        if index not in entries:
            raise ChunkMissing(f"chunk {index} of the session is not stored")
        return read_chunk_blocking(blocking, cfg.stream, sid, index, entries[index][0])

    return read


def arriving_chunk_reader(blocking: BlockingRedis, cfg: WorkerConfig, sid: str, abort: threading.Event,
                    on_read: Callable[[int], None] = lambda index: None) -> ReadChunk:
    """A reader that waits for each chunk to arrive; it gives up after ``follow_idle_s`` without one.

    The session's state is read with the chunk's entry, so a failed, erased or expired session
    stops the wait at once.
    """

    def read(index: int) -> bytearray:
        waited, pause = 0.0, 0.002
        while True:
            if abort.is_set():
                raise Aborted()
            state, entry = chunk_entry_blocking(blocking, sid, index)
            if state is None:
                raise SessionGone("the session is gone (expired or erased)")
            if state == State.FAILED:
                raise Aborted()
            if entry is not None:
                data = read_chunk_blocking(blocking, cfg.stream, sid, index, entry)
                on_read(index)
                return data
            if waited >= cfg.follow_idle_s:
                raise Stalled(f"no chunk {index} for {cfg.follow_idle_s:.0f} s")
            time.sleep(pause)
            waited += pause
            pause = min(pause * 2, POLL_MAX_S)

    return read


def decode_checked(reader: BinaryIO, fetcher: ChunkFetcher, limits: DecodeLimits, sha256: str | None,
                   verified: Callable[[], bool] = lambda: False) -> DecodedMedia:
    """Decode, then check the declared SHA-256; a mismatch outranks a decode error (a damaged transfer).

    ``verified()`` says whether the job that followed the upload already found the SHA-256 right;
    only if not is it computed here.
    """
    def matches() -> bool:
        return not sha256 or verified() or fetcher.sha256() == sha256

    try:
        media = decode_media(reader, limits)
    except DecodeError:
        if not matches():
            raise ChecksumMismatch() from None
        raise
    if not matches():
        raise ChecksumMismatch()
    return media


def follower_verdict_check(blocking: BlockingRedis, sid: str, sha256: str, wait_s: float) -> Callable[[], bool]:
    """A check of whether the follow job hashed the upload as it arrived and found ``sha256``, waiting up to
    ``wait_s`` for its verdict (it is caught up when complete comes, so the verdict is milliseconds behind).
    A session failed meanwhile (the follow job found a mismatch) stops the decode with ``Aborted``."""

    def verified() -> bool:
        deadline = time.monotonic() + wait_s
        while True:
            state, found = blocking.hmget(keys.meta(sid), ["state", "sha256_verified"])
            if state is None or state.decode() == State.FAILED:
                raise Aborted()
            if found is not None or time.monotonic() >= deadline:
                return found is not None and found.decode() == sha256
            time.sleep(0.005)

    return verified


async def fail_decode(r: Redis, cfg: WorkerConfig, sid: str, exc: BaseException, failures: list[BaseException]) -> None:
    """Tell the client why the decode stopped; an unexpected fetch failure is re-raised so the job is retried."""
    if isinstance(exc, ChecksumMismatch):
        await fail_session(r, cfg.stream, sid, ErrorCode.CHECKSUM_MISMATCH,
                           "the SHA-256 of the received bytes does not match the one declared")
    elif isinstance(exc, MediaGone) or any(isinstance(f, MediaGone) for f in failures):
        await fail_session(r, cfg.stream, sid, ErrorCode.MEDIA_EXPIRED,
                           "the uploaded chunks expired or were lost before decoding; upload again", retryable=True)
    elif isinstance(exc, SealError) or any(isinstance(f, SealError) for f in failures):
        await fail_session(r, cfg.stream, sid, ErrorCode.MEDIA_UNREADABLE,
                           "a stored chunk failed its integrity check; upload again", retryable=True)
    elif failures and not any(isinstance(f, Aborted) for f in failures):
        raise failures[0] from exc
    elif isinstance(exc, DecodeError):
        await fail_session(r, cfg.stream, sid, exc.code, exc.message)


async def start_processing(r: Redis, cfg: WorkerConfig, sid: str, meta: dict[str, str], started: float) -> bool:
    """Mark the session as being decoded; False if it has ended meanwhile (failed by the job that
    followed its upload, erased, expired), and then nothing is decoded."""
    if not await set_state(r, cfg.stream, sid, State.PROCESSING,
                           processing_started_at=meta.get("processing_started_at", started)):
        return False
    await publish(r, cfg.stream, sid, ProcessingStartedData(stage="decode"))
    await audit(r, cfg.stream, "media_access", sid, stage="decode", consumer=cfg.consumer)
    return True


async def decode_job(r: Redis, blocking: BlockingRedis, cfg: WorkerConfig, job: Job) -> None:
    """Decode a completed upload, unless the job that followed its upload already has it."""
    sid = job.session_id
    meta = await pending_meta(r, sid)
    if meta is None or not await claim_decode(r, sid, job.entry_id):
        return
    started = time.time()
    if await start_processing(r, cfg, sid, meta, started):
        await decode_stored(r, blocking, cfg, sid, meta, started)


async def decode_stored(r: Redis, blocking: BlockingRedis, cfg: WorkerConfig, sid: str, meta: dict[str, str],
                        started: float) -> None:
    """The seeking decode over the stored chunks, within what is left of the processing time bound."""
    abort = threading.Event()
    size, chunk_size = int(meta["size"]), int(meta["chunk_size"])
    declared, hasher = meta.get("sha256"), meta.get("hasher")
    fetcher = ChunkFetcher(stored_chunk_reader(blocking, cfg, sid, meta), expected_chunks(size, chunk_size), abort,
                           hashing=bool(declared) and not hasher)
    reader = ChunkReader(size, chunk_size, fetcher, on_chunk=fetcher.offer)
    verified = follower_verdict_check(blocking, sid, declared, HASHER_WAIT_S) if declared and hasher else lambda: False
    budget = cfg.processing_timeout_s - (started - float(meta.get("processing_started_at", started)))
    try:
        media: DecodedMedia = await asyncio.wait_for(
            in_thread(decode_checked, reader, fetcher, cfg.limits, declared, verified), budget)
    except TimeoutError:
        abort.set()
        await fail_session(r, cfg.stream, sid, ErrorCode.PROCESSING_TIMEOUT,
                           f"decoding took longer than {cfg.processing_timeout_s:.0f} s", retryable=True)
        return
    except (DecodeError, ChecksumMismatch, MediaGone, SealError, Aborted) as exc:
        await fail_decode(r, cfg, sid, exc, fetcher.failures)
        return
    finally:
        fetcher.close()
        reader.close()
    await deliver(r, cfg, sid, media, started)


async def deliver(r: Redis, cfg: WorkerConfig, sid: str, media: DecodedMedia, started: float, **facts: int) -> None:
    """Frames and audio into Redis, chunks out, the session queued for analysis, the client told."""
    if await is_erased(r, cfg.stream, sid):
        await delete_media(r, sid)
        return
    decode_s = time.time() - started
    await store_media(r, cfg.stream, sid, [(f.timestamp, f.jpeg) for f in media.frames], media.audio_wav)
    await r.delete(keys.chunks(sid))
    await update_meta(r, cfg.stream, sid, duration=media.duration, width=media.width, height=media.height,
                      codec=media.video_codec, container=media.container, rotation=media.rotation,
                      has_audio=int(media.audio_wav is not None), decode_s=round(decode_s, 3), decoded_at=time.time(),
                      **facts)
    await enqueue(r, cfg.stream, keys.ANALYZE, sid)
    await publish(r, cfg.stream, sid, FramesExtractedData(
        frames=len(media.frames),
        timestamps=[round(f.timestamp, 2) for f in media.frames],
        duration=round(media.duration, 3),
        audio=media.audio_wav is not None,
    ))
    await audit(r, cfg.stream, "decoded", sid, frames=len(media.frames), seconds=round(decode_s, 3), **facts)


async def follow_job(r: Redis, blocking: BlockingRedis, cfg: WorkerConfig, job: Job) -> None:
    """Read an upload while its chunks arrive, so little is left to do after the last one.

    Read top to bottom: wait for the first chunk and look at it. A streamable container, or an MP4
    whose index at the end was sent first (``processors.video.sniff.leading_chunks``: our clients do),
    can be decoded front to back: claim the decode, decode forward as chunks arrive, wait for
    completion (the client's chunk count and SHA-256), then deliver. Any other upload (an MP4 sent
    in plain order) is only hashed as it arrives; its decode job, queued at completion, then need
    not check the SHA-256 itself. Too few keyframes, or a container that fails front to back,
    falls back to the seeking decode once the upload is complete; an upload that goes quiet gives
    the decode back to the completion job.
    """
    sid = job.session_id
    meta = await pending_meta(r, sid)
    if meta is None:
        return
    if not accepts_chunks(meta["state"]):
        if meta.get("decoder") == job.entry_id:
            started = time.time()
            if await start_processing(r, cfg, sid, meta, started):
                await decode_stored(r, blocking, cfg, sid, meta, started)
        return
    abort = threading.Event()
    size, chunk_size = int(meta["size"]), int(meta["chunk_size"])
    try:
        first = await in_own_thread(arriving_chunk_reader(blocking, cfg, sid, abort), 0)
    except (Stalled, Aborted, MediaGone):
        return
    with memoryview(first) as view:
        head, looks_streamable = bytes(view[:512]), streamable(view[:HEAD_BYTES])
        index = [] if looks_streamable else leading_chunks(view[:HEAD_BYTES], size, chunk_size)
    index_first = bool(index) and await _all_stored(r, sid, index)
    try:
        if looks_streamable or index_first:
            if await claim_decode(r, sid, job.entry_id):
                await _follow(r, blocking, cfg, sid, size, chunk_size, head, abort, job.entry_id, seekable=index_first)
        elif await update_meta(r, cfg.stream, sid, hasher=job.entry_id):
            await _hash_arriving(r, blocking, cfg, sid, expected_chunks(size, chunk_size), first, abort)
    finally:
        abort.set()
        wipe(first)


async def _all_stored(r: Redis, sid: str, indexes: list[int]) -> bool:
    fields = await get_fields(r, sid, *(f"{CHUNK_FIELD}{i}" for i in indexes))
    return fields is not None and all(f"{CHUNK_FIELD}{i}" in fields for i in indexes)


async def _hash_arriving(r: Redis, blocking: BlockingRedis, cfg: WorkerConfig, sid: str, count: int, first: bytearray,
                         abort: threading.Event) -> None:
    """Hash an upload the decode must wait for (an index at the end, sent last) as it arrives, so that
    checking the SHA-256 declared at completion costs the decode nothing: the verdict goes to the meta
    (``sha256_verified``), or a mismatch fails the session. A stall just leaves the check to the decode."""
    read = arriving_chunk_reader(blocking, cfg, sid, abort)

    def digest() -> str:
        hashed = hashlib.sha256(first)
        for index in range(1, count):
            chunk = read(index)
            hashed.update(chunk)
            wipe(chunk)
        return hashed.hexdigest()

    try:
        actual = await in_own_thread(digest)
    except (Stalled, Aborted, MediaGone, SealError):
        return
    meta = await _completed_meta(r, cfg, sid, abort)
    if meta is None or not meta.get("sha256"):
        return
    if actual == meta["sha256"]:
        await update_meta(r, cfg.stream, sid, sha256_verified=actual)
    else:
        await fail_decode(r, cfg, sid, ChecksumMismatch(), [])


async def _follow(r: Redis, blocking: BlockingRedis, cfg: WorkerConfig, sid: str, size: int, chunk_size: int,
                  head: bytes, abort: threading.Event, owner: str, *, seekable: bool = False) -> None:
    """Decode front to back as chunks arrive, then deliver once complete. ``seekable`` reads through a
    random-access reader, for an MP4 whose index at the end is already stored: the demuxer reads it
    there first, then comes back for the media."""
    count = expected_chunks(size, chunk_size)
    loop = asyncio.get_running_loop()
    noted = 0
    read: set[int] = set()
    ordered = asyncio.Lock()

    async def note(index: int) -> None:
        """How many chunks the decode has read, in the meta for clients and operators to see (one
        write at a time, so a slower write of an earlier figure never lands last)."""
        nonlocal noted
        read.add(index)
        async with ordered:
            if len(read) > noted:
                noted = len(read)
                await update_meta(r, cfg.stream, sid, followed=noted)

    def on_read(index: int) -> None:
        on_loop(loop, note(index))

    fetcher = ChunkFetcher(arriving_chunk_reader(blocking, cfg, sid, abort, on_read), count, abort)
    reader: BinaryIO = (ChunkReader(size, chunk_size, fetcher, on_chunk=fetcher.offer) if seekable
                        else ArrivingReader(size, chunk_size, fetcher))

    def decode_and_hash() -> tuple[DecodedMedia, str]:
        """The front-to-back decode, then the SHA-256 of every byte: a demuxer may stop before the
        end of the file, and the bytes it left unread are part of what the client declared."""
        return decode_arriving(reader, head, cfg.limits), fetcher.sha256()

    media: DecodedMedia | None = None
    actual = ""
    problem: BaseException | None = None
    try:
        media, actual = await in_own_thread(decode_and_hash)
    except (Stalled, Aborted, MediaGone, SealError) as exc:
        problem = exc
    except (DecodeError, TooFewKeyframes, OSError, ValueError) as exc:
        log.info("decoding %s front to back fell back to the seeking decode: %s", sid, exc)
    finally:
        fetcher.close()
        reader.close()
    stalled = isinstance(problem, Stalled) or any(isinstance(f, Stalled) for f in fetcher.failures)
    if stalled and await release_decode(r, sid, owner):
        return
    meta = await _completed_meta(r, cfg, sid, abort)
    if meta is None:
        if await release_decode(r, sid, owner):
            return
        meta = await pending_meta(r, sid)
        if meta is None:
            return
    started = time.time()
    if not await start_processing(r, cfg, sid, meta, started):
        return
    if media is None or problem is not None:
        await decode_stored(r, blocking, cfg, sid, meta, started)
        return
    declared = meta.get("sha256")
    if declared and actual != declared:
        await fail_decode(r, cfg, sid, ChecksumMismatch(), [])
        return
    await deliver(r, cfg, sid, media, started, followed=count)


async def _completed_meta(r: Redis, cfg: WorkerConfig, sid: str, abort: threading.Event) -> dict[str, str] | None:
    """The meta once complete has queued the session; None if the upload goes quiet or the session ends.

    Polled every 10 ms, so it reads only the state: the whole meta holds a field per chunk."""
    waited = 0.0
    while waited < cfg.follow_idle_s and not abort.is_set():
        state = await get_fields(r, sid)
        if state is None or state["state"] == State.FAILED:
            return None
        if not accepts_chunks(state["state"]):
            return await get_meta(r, sid)
        await asyncio.sleep(0.01)
        waited += 0.01
    return None
