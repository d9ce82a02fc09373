"""The session's chunk stream: encrypted appends, random access by index, in-order iteration."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from streams import keys
from streams.config import StreamConfig
from streams.sessions import CHUNK_FIELD, chunk_map, get_meta

KIND = "chunk"


class ChunkMissing(LookupError):
    """A chunk the meta hash promised is gone from the stream (expired or erased)."""


async def append_chunk(r, cfg: StreamConfig, sid: str, index: int, data: bytes | bytearray) -> int | None:
    """Seal and append one chunk; returns how many chunks the session now holds, or None when that
    index was already stored (a harmless repeat).

    Two racing PUTs of one index both append, but only the first to claim ``c:<index>`` in the
    meta hash wins; the loser deletes its entry, so the stream holds each index once.
    """
    meta_key, stream = keys.meta(sid), keys.chunks(sid)
    if await r.hexists(meta_key, f"{CHUNK_FIELD}{index}"):
        return None
    epoch, blob = await asyncio.to_thread(cfg.keyring.seal, data, sid, KIND, index)
    entry = await r.xadd(
        stream,
        {"i": index, "n": len(data), "ep": epoch, "ct": blob},
        maxlen=cfg.max_chunks + 8,
        approximate=False,
    )
    entry_id = entry.decode() if isinstance(entry, bytes) else entry
    if not await r.hsetnx(meta_key, f"{CHUNK_FIELD}{index}", f"{entry_id}:{len(data)}"):
        await r.xdel(stream, entry_id)
        return None
    async with r.pipeline(transaction=True) as pipe:
        pipe.hincrby(meta_key, "received", 1)
        pipe.hincrby(meta_key, "bytes", len(data))
        pipe.expire(stream, cfg.chunk_ttl_s)
        pipe.expire(meta_key, cfg.session_ttl_s)
        received, *_ = await pipe.execute()
    return int(received)


async def read_chunk(r, cfg: StreamConfig, sid: str, index: int, entry_id: str) -> bytes:
    rows = await r.xrange(keys.chunks(sid), min=entry_id, max=entry_id, count=1)
    if not rows:
        raise ChunkMissing(f"chunk {index} of the session is gone (expired or erased)")
    fields = rows[0][1]
    return await asyncio.to_thread(cfg.keyring.open, int(fields[b"ep"]), fields[b"ct"], sid, KIND, index)


async def iter_chunks(r, cfg: StreamConfig, sid: str) -> AsyncIterator[bytes]:
    """Plaintext chunks in index order, one at a time (for hashing without assembling)."""
    meta = await get_meta(r, sid)
    if meta is None:
        raise ChunkMissing("the session is gone")
    index = chunk_map(meta)
    for i in sorted(index):
        yield await read_chunk(r, cfg, sid, i, index[i][0])
