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


APPEND = """
local field, index, length = ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
if redis.call('HEXISTS', KEYS[1], field) == 1 then return -1 end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[6], '*', 'i', index, 'n', length, 'ep', ARGV[4], 'ct', ARGV[5])
redis.call('HSET', KEYS[1], field, id .. ':' .. length)
redis.call('HINCRBY', KEYS[1], 'bytes', length)
local received = redis.call('HINCRBY', KEYS[1], 'received', 1)
redis.call('EXPIRE', KEYS[2], ARGV[7])
redis.call('EXPIRE', KEYS[1], ARGV[8])
return received
"""
"""Append a sealed chunk unless its index is already stored, in one atomic step (one round trip;
both keys share the session's hash slot). Returns the new chunk count, -1 for a repeat, -2 when
the session is gone."""


async def append_chunk(r, cfg: StreamConfig, sid: str, index: int, data: bytes | bytearray) -> int | None:
    """Seal and append one chunk; returns how many chunks the session now holds, or None when that
    index was already stored (a harmless repeat). Raises :class:`ChunkMissing` if the session is gone.
    """
    epoch, blob = await asyncio.to_thread(cfg.keyring.seal, data, sid, KIND, index)
    received = int(await r.eval(APPEND, 2, keys.meta(sid), keys.chunks(sid), f"{CHUNK_FIELD}{index}", index, len(data),
                                epoch, blob, cfg.max_chunks + 8, cfg.chunk_ttl_s, cfg.session_ttl_s))
    if received == -2:
        raise ChunkMissing("the session is gone (expired or erased)")
    return received if received > 0 else None


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
