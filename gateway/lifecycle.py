"""How an upload begins and ends at the gateway — created, queued for decoding or erased — whatever
protocol brought it."""

from __future__ import annotations

import logging
import time

from gateway.auth import issue_token
from gateway.config import GatewayConfig, ResultStore
from gateway.errors import ApiError
from schemas.api import ErasureReceipt
from schemas.events import ErrorData, SessionCreatedData, UploadCompleteData
from schemas.lifecycle import UPLOADABLE
from streams import keys
from streams.admission import touch
from streams.audit import audit
from streams.chunks import append_sealed
from streams.connection import Redis
from streams.events import fan_out, publish
from streams.jobs import enqueue
from streams.lifecycle import erase_session, fail_session
from streams.results import queue_for_sink
from streams.sessions import (
    State,
    create_session,
    expected_chunks,
    missing_chunks,
    set_state,
)

log = logging.getLogger("dodolens.gateway")


def check_size(cfg: GatewayConfig, size: int) -> None:
    if size > cfg.stream.max_size:
        raise ApiError(413, "video_too_large", f"videos are limited to {cfg.stream.max_size} bytes")


async def begin_upload(r: Redis, cfg: GatewayConfig, sid: str, size: int, content_type: str, *,
                       protocol: str | None = None, follow: bool = True) -> tuple[str, str, float]:
    """Create the session ``sid`` (admitted by ``gateway.admission``) of an upload of ``size`` bytes;
    returns its id, its token and the token's expiry.

    ``follow`` queues the job that reads the upload while it arrives (``processors.decode_jobs.follow_job``);
    a partial tus upload, never decoded on its own, goes without.
    """
    await create_session(r, cfg.stream, sid, size, content_type)
    tagged = {"protocol": protocol} if protocol else {}
    if protocol:
        await r.hset(keys.meta(sid), "protocol", protocol)
    token, expires = issue_token(cfg.stream.keyring, sid, cfg.token_ttl_s)
    await publish(r, cfg.stream, sid,
                  SessionCreatedData(size=size, chunks=expected_chunks(size, cfg.stream.chunk_size), **tagged))
    await audit(r, cfg.stream, "session_created", sid, size=size, **tagged)
    if follow:
        await enqueue(r, cfg.stream, keys.FOLLOW, sid)
    return sid, token, expires


async def store_chunk(r: Redis, cfg: GatewayConfig, sid: str, index: int, length: int, epoch: int,
                      sealed: bytes | bytearray | memoryview, count: int) -> bool:
    """Append chunk ``index`` of a ``count``-chunk upload (sealed as ``sealed``), moving the session to
    uploading and announcing it with ``chunk_received``; False when that index was already stored.

    Whoever holds the bytes (the chunk API, the in-process ``dodolens analyze``) appends through here,
    so every upload leaves the same meta, events and follow-job input.
    """
    received, event = await append_sealed(r, cfg.stream, sid, index, length, epoch, sealed, mark_uploading=True,
                                          announce=count)
    await touch(r, cfg.stream, sid)
    if event is not None:
        await fan_out(r, cfg.stream, event)
    return received is not None


async def complete_upload(r: Redis, cfg: GatewayConfig, sid: str, meta: dict[str, str], *, chunks: int | None = None,
                          sha256: str | None = None) -> str:
    """Check that every byte is there, then queue the session for the decoders; returns its state.

    ``chunks`` is the client's own count (the chunk API sends it; tus has none to send).
    A declared ``sha256`` is kept in the meta and checked by the decoder, which reads every chunk
    anyway: hashing here would be a second pass over the upload on the way to the result.
    A session already past uploading is left as it is: completing twice is harmless.
    """
    if meta["state"] not in UPLOADABLE:
        return meta["state"]
    if meta.get("protocol") == "tus-partial":
        raise ApiError(409, "partial_upload", "a partial tus upload is processed only inside a final concatenation")
    size, chunk_size = int(meta["size"]), int(meta["chunk_size"])
    count = expected_chunks(size, chunk_size)
    missing = missing_chunks(meta)
    if missing:
        message = f"{len(missing)} chunk(s) missing; send them and complete again"
        await publish(r, cfg.stream, sid, ErrorData(code="missing_chunks", message=message, retryable=True, final=False,
                                                    missing=missing[:100]))
        raise ApiError(409, "missing_chunks", message, missing=missing)
    if (chunks is not None and chunks != count) or int(meta["bytes"]) != size:
        message = f"declared {size} bytes in {count} chunks, got {meta['bytes']} bytes and complete(chunks={chunks})"
        await fail_session(r, cfg.stream, sid, "size_mismatch", message)
        raise ApiError(422, "size_mismatch", message)
    checksum = {"sha256": sha256.lower()} if sha256 else {}
    await set_state(r, cfg.stream, sid, State.QUEUED, uploaded_at=time.time(), **checksum)
    await enqueue(r, cfg.stream, keys.JOBS, sid)
    await publish(r, cfg.stream, sid, UploadCompleteData(size=size, chunks=count))
    await audit(r, cfg.stream, "upload_complete", sid, size=size, chunks=count)
    return State.QUEUED


async def erase_upload(r: Redis, cfg: GatewayConfig, results: ResultStore, sid: str) -> ErasureReceipt:
    """Every Redis key of the session, then its stored result: the GDPR art. 17 path."""
    receipt = await erase_session(r, cfg.stream, sid)
    try:
        deleted = await results.delete(sid)
    except Exception as exc:  # the store's own error types are the processors' business
        log.warning("result of %s not erased yet, a worker will retry: %s", sid, exc)
        await queue_for_sink(r, sid)
        deleted = False
    await audit(r, cfg.stream, "result_erased", sid, deleted=deleted)
    return ErasureReceipt(**receipt, result_deleted=deleted)
