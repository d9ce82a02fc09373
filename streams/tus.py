"""Redis side of tus uploads: protocol state, the encrypted tail, a lock, and fixed-size chunking.

A tus PATCH body starts and ends anywhere, while a session stores fixed-size chunks. Whole
chunks go to the session's chunk stream as they fill; the bytes past the last whole chunk (the
tail) are sealed into ``keys.tus_tail``. Nothing lives in process memory between requests, so
any gateway can take the next PATCH.

A PATCH with a checksum is staged: its whole chunks are sealed into ``keys.tus_staged`` as they
fill, and become the session's only once the checksum of the body holds. The gateway never
holds more than a chunk of it, and a body that fails its checksum leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from streams import keys
from streams.admission import release, touch
from streams.chunks import KIND, append_sealed, promote_staged
from streams.config import StreamConfig
from streams.connection import Redis, str_fields
from streams.crypto import Sealing, sealed_size, wipe
from streams.sessions import expected_length
from streams.threads import in_thread

TAIL_KIND = "tus_tail"
METADATA_KIND = "tus_metadata"
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
    """Record a new upload; its ``Upload-Metadata`` is kept sealed (it may name a file or a person)."""
    expires_at = time.time() + cfg.chunk_ttl_s
    upload = TusUpload(sid, length, offset, concat, expires_at)
    sealed = ""
    if metadata:
        epoch, blob = cfg.keyring.seal(metadata.encode(), sid, METADATA_KIND)
        sealed = base64.b64encode(epoch.to_bytes(8, "big") + blob).decode()
    async with r.pipeline(transaction=True) as pipe:
        pipe.hset(keys.tus(sid), mapping={"length": length, "offset": offset, "concat": concat,
                                          "metadata": sealed, "expires_at": expires_at})
        pipe.expire(keys.tus(sid), cfg.session_ttl_s)
        await pipe.execute()
    return upload


async def get_upload(r: Redis, sid: str) -> TusUpload | None:
    raw = await r.hgetall(keys.tus(sid))
    if not raw:
        return None
    h = str_fields(raw)
    return TusUpload(sid, int(h["length"]), int(h["offset"]), h.get("concat", ""), float(h["expires_at"]))


async def upload_metadata(r: Redis, cfg: StreamConfig, sid: str) -> str:
    """The ``Upload-Metadata`` header exactly as the client sent it at creation (``""`` for none)."""
    sealed = base64.b64decode(await r.hget(keys.tus(sid), "metadata") or b"")
    if not sealed:
        return ""
    return cfg.keyring.open(int.from_bytes(sealed[:8], "big"), sealed[8:], sid, METADATA_KIND).decode()


async def load_tail(r: Redis, cfg: StreamConfig, sid: str, offset: int) -> bytearray:
    """The sealed bytes between the last whole chunk and ``offset``; the offset is the AAD index."""
    raw = await r.get(keys.tus_tail(sid))
    if raw is None:
        return bytearray()
    plain = await in_thread(cfg.keyring.open, int.from_bytes(raw[:8], "big"), raw[8:], sid, TAIL_KIND, offset)
    return bytearray(plain)


async def commit(r: Redis, cfg: StreamConfig, sid: str, offset: int, tail: bytes | bytearray) -> float:
    """Record the new offset and tail together; refresh every TTL; returns the new expiry."""
    sealed = None
    if tail:
        epoch, blob = await in_thread(cfg.keyring.seal, tail, sid, TAIL_KIND, offset)
        sealed = epoch.to_bytes(8, "big") + blob
    expires_at = time.time() + cfg.chunk_ttl_s
    async with r.pipeline(transaction=True) as pipe:
        pipe.hset(keys.tus(sid), mapping={"offset": offset, "expires_at": expires_at})
        if sealed is None:
            pipe.delete(keys.tus_tail(sid))
        else:
            pipe.set(keys.tus_tail(sid), sealed, ex=cfg.chunk_ttl_s)
        keep_alive(pipe, cfg, sid)
        await pipe.execute()
    await touch(r, cfg, sid)
    return expires_at


def keep_alive(pipe: Any, cfg: StreamConfig, sid: str) -> None:
    """Queue the TTL refreshes of an upload that is receiving bytes (its keys and its lock)."""
    pipe.expire(keys.tus(sid), cfg.session_ttl_s)
    pipe.expire(keys.meta(sid), cfg.session_ttl_s)
    pipe.expire(keys.chunks(sid), cfg.chunk_ttl_s)
    pipe.pexpire(keys.tus_lock(sid), LOCK_TTL_MS)


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

    Each chunk is sealed part by part as the bytes arrive, into one buffer the writer reuses, and
    stored as soon as it is whole (``write`` returns its index); ``save`` records the bytes past the
    last whole chunk as the tail. No plaintext is held beyond the part being written.
    With ``staged``, whole chunks are sealed aside instead, until ``promote`` makes them the
    session's (the body checked out) or ``discard`` drops them (it did not).
    """

    def __init__(self, r: Redis, cfg: StreamConfig, sid: str, *, size: int, chunk_size: int, offset: int,
                 tail: bytearray, staged: bool = False) -> None:
        self.r, self.cfg, self.sid = r, cfg, sid
        self.size, self.chunk_size, self.staged = size, chunk_size, staged
        self.base = offset - len(tail)
        """Where the chunk being sealed starts."""
        self.pending: list[tuple[int, int, int]] = []
        """(index, length, epoch) of the chunks sealed into ``keys.tus_staged``, not yet the session's."""
        self._out = bytearray()
        self._sealing: Sealing | None = None
        self._epoch = 0
        if tail:
            self._current().update(tail)
            wipe(tail)

    @property
    def offset(self) -> int:
        return self.base + (self._sealing.sealed if self._sealing else 0)

    def _current(self) -> Sealing:
        """The sealing of the chunk at ``base``, begun on its first byte."""
        if self._sealing is None:
            if not self._out:
                self._out = bytearray(sealed_size(self.chunk_size))
            index = self.base // self.chunk_size
            want = expected_length(self.size, self.chunk_size, index)
            out = memoryview(self._out)[: sealed_size(want)]
            self._epoch, self._sealing = self.cfg.keyring.sealing(self.sid, KIND, index, out, want)
        return self._sealing

    async def write(self, data: bytes | bytearray | memoryview) -> list[tuple[int, bool]]:
        """Append ``data`` (the caller keeps it within ``size``); (index, newly stored) per chunk."""
        stored: list[tuple[int, bool]] = []
        with memoryview(data) as view:
            while view:
                sealing = self._current()
                room = sealing.length - sealing.sealed
                sealing.update(view[:room])
                view = view[room:]
                if sealing.sealed == sealing.length:
                    stored += await self._store(self.base // self.chunk_size, sealing.length, sealing.finish())
        return stored

    async def _store(self, index: int, length: int, sealed: memoryview) -> list[tuple[int, bool]]:
        self._sealing = None
        self.base += length
        if self.staged:
            async with self.r.pipeline(transaction=True) as pipe:
                pipe.hset(keys.tus_staged(self.sid), f"c{index}", sealed)
                pipe.expire(keys.tus_staged(self.sid), self.cfg.chunk_ttl_s)
                pipe.expire(keys.tus_tail(self.sid), self.cfg.chunk_ttl_s)  # still the tail until the body checks out
                keep_alive(pipe, self.cfg, self.sid)
                await pipe.execute()
            self.pending.append((index, length, self._epoch))
            return []
        received, _event = await append_sealed(self.r, self.cfg, self.sid, index, length, self._epoch, sealed)
        await commit(self.r, self.cfg, self.sid, self.base, b"")
        return [(index, received is not None)]

    async def promote(self) -> list[tuple[int, bool]]:
        """Make the staged chunks the session's, one at a time, inside Redis; (index, newly stored) per chunk."""
        stored: list[tuple[int, bool]] = []
        for index, length, epoch in self.pending:
            received = await promote_staged(self.r, self.cfg, self.sid, keys.tus_staged(self.sid), index, length, epoch)
            await commit(self.r, self.cfg, self.sid, index * self.chunk_size + length, b"")
            stored.append((index, received is not None))
        self.pending.clear()
        await self.r.delete(keys.tus_staged(self.sid))
        return stored

    async def discard(self) -> None:
        """Forget everything written since the last save: the upload stays where it was."""
        self.pending.clear()
        self._sealing = None
        await self.r.delete(keys.tus_staged(self.sid))

    async def save(self) -> float:
        """Record the offset, with the bytes past the last whole chunk as the sealed tail."""
        tail = self._sealing.opened() if self._sealing else bytearray()
        try:
            return await commit(self.r, self.cfg, self.sid, self.offset, tail)
        finally:
            wipe(tail)
