"""Redis side of tus uploads: protocol state, the encrypted tail, a lock, and fixed-size chunking.

A tus PATCH body starts and ends anywhere, while a session stores fixed-size chunks. Whole
chunks go to the session's chunk stream as they fill; the bytes past the last whole chunk (the
tail) are sealed into ``keys.tus_tail``. Nothing lives in process memory between requests, so
any gateway can take the next PATCH.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from streams import keys
from streams.admission import release, touch
from streams.chunks import append_chunk
from streams.config import StreamConfig
from streams.connection import Redis
from streams.crypto import wipe
from streams.sessions import decode_hash, expected_length

TAIL_KIND = "tus_tail"
LOCK_TTL_MS = 30_000

_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class UploadLocked(Exception):
    """Another request is writing this upload right now."""


@dataclass(frozen=True)
class TusUpload:
    sid: str
    length: int
    offset: int
    concat: str
    """``""`` for a plain upload, ``"partial"``, or ``"final;<url> <url>..."``."""
    metadata: str
    expires_at: float

    @property
    def partial(self) -> bool:
        return self.concat == "partial"

    @property
    def final(self) -> bool:
        return self.concat.startswith("final;")

    @property
    def finished(self) -> bool:
        return self.offset >= self.length


async def create_upload(r: Redis, cfg: StreamConfig, sid: str, length: int, *, concat: str = "",
                        metadata: str = "", offset: int = 0) -> TusUpload:
    expires_at = time.time() + cfg.chunk_ttl_s
    upload = TusUpload(sid, length, offset, concat, metadata, expires_at)
    async with r.pipeline(transaction=True) as pipe:
        pipe.hset(keys.tus(sid), mapping={"length": length, "offset": offset, "concat": concat,
                                          "metadata": metadata, "expires_at": expires_at})
        pipe.expire(keys.tus(sid), cfg.session_ttl_s)
        await pipe.execute()
    return upload


async def get_upload(r: Redis, sid: str) -> TusUpload | None:
    raw = await r.hgetall(keys.tus(sid))
    if not raw:
        return None
    h = decode_hash(raw)
    return TusUpload(sid, int(h["length"]), int(h["offset"]), h.get("concat", ""), h.get("metadata", ""),
                     float(h["expires_at"]))


async def load_tail(r: Redis, cfg: StreamConfig, sid: str, offset: int) -> bytearray:
    """The sealed bytes between the last whole chunk and ``offset``; the offset is the AAD index."""
    raw = await r.get(keys.tus_tail(sid))
    if raw is None:
        return bytearray()
    plain = await asyncio.to_thread(cfg.keyring.open, int.from_bytes(raw[:8], "big"), raw[8:], sid, TAIL_KIND, offset)
    return bytearray(plain)


async def commit(r: Redis, cfg: StreamConfig, sid: str, offset: int, tail: bytes | bytearray) -> float:
    """Record the new offset and tail together; refresh every TTL; returns the new expiry."""
    sealed = None
    if tail:
        epoch, blob = await asyncio.to_thread(cfg.keyring.seal, tail, sid, TAIL_KIND, offset)
        sealed = epoch.to_bytes(8, "big") + blob
    expires_at = time.time() + cfg.chunk_ttl_s
    async with r.pipeline(transaction=True) as pipe:
        pipe.hset(keys.tus(sid), mapping={"offset": offset, "expires_at": expires_at})
        if sealed is None:
            pipe.delete(keys.tus_tail(sid))
        else:
            pipe.set(keys.tus_tail(sid), sealed, ex=cfg.chunk_ttl_s)
        pipe.expire(keys.tus(sid), cfg.session_ttl_s)
        pipe.expire(keys.meta(sid), cfg.session_ttl_s)
        pipe.expire(keys.chunks(sid), cfg.chunk_ttl_s)
        pipe.pexpire(keys.tus_lock(sid), LOCK_TTL_MS)
        await pipe.execute()
    await touch(r, cfg, sid)
    return expires_at


@contextlib.asynccontextmanager
async def locked(r: Redis, sid: str) -> AsyncIterator[None]:
    """Hold the upload's lock; it expires on its own if this gateway dies mid-request."""
    token = secrets.token_hex(8)
    if not await r.set(keys.tus_lock(sid), token, nx=True, px=LOCK_TTL_MS):
        raise UploadLocked(sid)
    try:
        yield
    finally:
        await r.eval(_RELEASE, 1, keys.tus_lock(sid), token)


async def wait_unlocked(r: Redis, sid: str, timeout_s: float = 3.0) -> None:
    """Let an interrupted PATCH finish saving, so a HEAD right after reports the settled offset."""
    deadline = time.monotonic() + timeout_s
    while await r.exists(keys.tus_lock(sid)) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def discard(r: Redis, sid: str) -> None:
    """Drop every key of an upload that was consumed (a partial upload after concatenation)."""
    await r.delete(*keys.session_keys(sid))
    await release(r, sid)


class ChunkWriter:
    """Turns a byte stream starting at ``offset`` into the session's fixed-size chunks.

    ``write`` stores each chunk as soon as it is whole and returns its index; ``save`` records
    whatever is left as the tail. Memory held: one chunk plus the part being written.
    """

    def __init__(self, r: Redis, cfg: StreamConfig, sid: str, *, size: int, chunk_size: int, offset: int,
                 tail: bytearray) -> None:
        self.r, self.cfg, self.sid = r, cfg, sid
        self.size, self.chunk_size = size, chunk_size
        self.base = offset - len(tail)
        self.buffer = tail

    @property
    def offset(self) -> int:
        return self.base + len(self.buffer)

    async def write(self, data: bytes | bytearray | memoryview) -> list[tuple[int, bool]]:
        """Append ``data`` (the caller keeps it within ``size``); (index, newly stored) per chunk."""
        self.buffer += data
        stored: list[tuple[int, bool]] = []
        while self.base < self.size:
            index = self.base // self.chunk_size
            want = expected_length(self.size, self.chunk_size, index)
            if len(self.buffer) < want:
                break
            new = await append_chunk(self.r, self.cfg, self.sid, index, bytes(self.buffer[:want]))
            self.buffer[:want] = b""
            self.base += want
            await commit(self.r, self.cfg, self.sid, self.base, b"")
            stored.append((index, new is not None))
        return stored

    async def save(self) -> float:
        expires_at = await commit(self.r, self.cfg, self.sid, self.offset, self.buffer)
        wipe(self.buffer)
        return expires_at
