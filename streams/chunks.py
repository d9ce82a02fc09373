"""The session's chunk stream: encrypted appends, random access by index, in-order iteration."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from schemas.events import ChunkReceivedData, Event, EventType
from schemas.lifecycle import LUA
from streams import keys
from streams.config import StreamConfig
from streams.events import recorded_event
from streams.sessions import CHUNK_FIELD, chunk_map, get_meta

KIND = "chunk"


class MediaGone(LookupError):
    """What a request or a job needed of a session is no longer in Redis (expired or erased)."""


class ChunkMissing(MediaGone):
    """A chunk the meta hash promised is gone from the stream."""


class SessionGone(MediaGone):
    """The session itself is gone: no meta hash any more."""


_ARGS = LUA + """
local meta, stream, events, field, length = KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2]
"""
_PROBE = """
redis.call('XGROUP', 'DESTROY', stream, ARGV[3])
redis.call('XGROUP', 'CREATE', stream, ARGV[3], '$')
local id
for _, group in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  for k = 1, #group, 2 do
    if group[k] == 'name' and group[k + 1] ~= ARGV[3] then break end
    if group[k] == 'last-delivered-id' then id = group[k + 1] end
  end
end
redis.call('XGROUP', 'DESTROY', stream, ARGV[3])
"""
_RECORD_ENTRY = """
if redis.call('EXISTS', meta) == 0 then
  redis.call('XDEL', stream, id)
  if redis.call('XLEN', stream) == 0 then redis.call('DEL', stream) end
  return {-2}
end
if redis.call('HEXISTS', meta, field) == 1 then
  redis.call('XDEL', stream, id)
  return {-1}
end
redis.call('HSET', meta, field, id .. ':' .. length)
redis.call('HINCRBY', meta, 'bytes', length)
local received = redis.call('HINCRBY', meta, 'received', 1)
if ARGV[6] ~= '' and redis.call('HGET', meta, 'state') == CREATED then
  redis.call('HSET', meta, 'state', UPLOADING, 'updated_at', ARGV[6])
end
redis.call('EXPIRE', stream, ARGV[4])
redis.call('EXPIRE', meta, ARGV[5])
if ARGV[7] == '' then return {received} end
local data = cjson.decode(ARGV[9])
data[ARGV[10]] = received
data = cjson.encode(data)
local event = redis.call('XADD', events, 'MAXLEN', '~', ARGV[8], '*', 'type', 'chunk_received', 'ts', ARGV[7], 'data', data)
redis.call('EXPIRE', events, ARGV[5])
return {received, event, data}
"""
RECORD = _ARGS + _PROBE + _RECORD_ENTRY
"""Runs in the same MULTI/EXEC right after the XADD of the sealed chunk, so nothing comes between
them: it records that entry in the meta hash, or deletes it again when its index is a repeat (-1)
or the session is gone (-2, leaving no stream behind). The ciphertext itself is XADDed directly,
never passed into Lua (Redis copies every script argument, and a chunk is large), so the script
learns the entry id from a throwaway consumer group created at ``$`` (O(1)), not by reading it back.
Asked to (a timestamp in ARGV[7]), it also appends the ``chunk_received`` event to the session's
event stream, which shares the slot: one round trip per chunk instead of two. Its data is the
event's model as JSON (ARGV[9]) with one field (ARGV[10]) filled in: the count only Lua knows.
"""
PROBE_GROUP = "dodolens:append-probe"
PROMOTE = _ARGS + """
local sealed = redis.call('HGET', KEYS[4], 'c' .. ARGV[11])
if not sealed then return {-3} end
local id = redis.call('XADD', stream, 'MAXLEN', ARGV[12], '*', 'i', ARGV[11], 'n', length, 'ep', ARGV[13], 'ct', sealed)
redis.call('HDEL', KEYS[4], 'c' .. ARGV[11])
""" + _RECORD_ENTRY
"""Moves chunk ARGV[11], sealed earlier into the staging hash KEYS[4] (``c<index>``), into the chunk
stream and records it as :data:`RECORD` does, without the ciphertext leaving Redis: -3 when it is gone."""


class SealedBuffers:
    """Buffers reused for sealed chunks on their way to Redis (ciphertext only, never plaintext).

    A fresh 1 MiB ``bytearray`` per request costs more than encrypting into it: allocation, zeroing
    and page faults. Each is sized for a full chunk; a shorter last chunk uses its start.
    """

    def __init__(self, keep: int = 8) -> None:
        self.keep = keep
        self._free: list[bytearray] = []

    def take(self, size: int) -> bytearray:
        while self._free:
            buffer = self._free.pop()
            if len(buffer) == size:
                return buffer
        return bytearray(size)

    def give(self, buffer: bytearray) -> None:
        """Back for reuse, once whatever read it (the Redis connection) is done with it."""
        if len(self._free) < self.keep:
            self._free.append(buffer)


async def append_chunk(r, cfg: StreamConfig, sid: str, index: int, data: bytes | bytearray | memoryview,
                       *, mark_uploading: bool = False) -> int | None:
    """Seal and append one chunk; returns how many chunks the session now holds, or None when that
    index was already stored (a harmless repeat). Raises :class:`SessionGone` if the session is gone.

    With ``mark_uploading`` a session still in ``created`` moves to ``uploading`` in the same step.
    """
    epoch, blob = cfg.keyring.seal(data, sid, KIND, index)
    received, _event = await append_sealed(r, cfg, sid, index, len(data), epoch, blob, mark_uploading=mark_uploading)
    return received


async def append_sealed(r, cfg: StreamConfig, sid: str, index: int, length: int, epoch: int,
                        blob: bytes | bytearray | memoryview, *, mark_uploading: bool = False,
                        announce: int | None = None) -> tuple[int | None, Event | None]:
    """Append chunk ``index`` (``length`` bytes, already sealed as ``blob``) in one round trip: all
    the session's keys share its hash slot. Returns the chunk count, None for a repeat (see
    :func:`append_chunk`), and with ``announce`` (the upload's chunk count) the ``chunk_received``
    event appended to the session's stream in the same step, for the caller to fan out."""
    meta, stream, events = keys.meta(sid), keys.chunks(sid), keys.session_events(sid)
    now = time.time()
    announced = ("", "", "", "")
    if announce is not None:
        data = ChunkReceivedData(index=index, received=0, chunks=announce)
        announced = (repr(now), cfg.session_events_maxlen, data.model_dump_json(), "received")
    async with r.pipeline(transaction=True) as pipe:
        pipe.xadd(stream, {"i": index, "n": length, "ep": epoch, "ct": blob}, maxlen=cfg.max_chunks + 8)
        pipe.eval(RECORD, 3, meta, stream, events, f"{CHUNK_FIELD}{index}", length, PROBE_GROUP, cfg.chunk_ttl_s,
                  cfg.session_ttl_s, repr(now) if mark_uploading else "", *announced)
        _entry, reply = await pipe.execute()
    received = int(reply[0])
    if received == -2:
        raise SessionGone("the session is gone (expired or erased)")
    if received < 0:
        return None, None
    if len(reply) < 3:
        return received, None
    return received, recorded_event(reply[1], sid, EventType.CHUNK_RECEIVED, now, reply[2])


async def promote_staged(r, cfg: StreamConfig, sid: str, staged: str, index: int, length: int,
                         epoch: int) -> int | None:
    """Append chunk ``index``, sealed into the hash ``staged`` beforehand, as :func:`append_sealed`
    would; returns the chunk count, None for a repeat. Raises :class:`SessionGone` if the session is
    gone, :class:`ChunkMissing` if the staged chunk is."""
    received = (await r.eval(PROMOTE, 4, keys.meta(sid), keys.chunks(sid), keys.session_events(sid), staged,
                             f"{CHUNK_FIELD}{index}", length, PROBE_GROUP, cfg.chunk_ttl_s, cfg.session_ttl_s, "", "",
                             "", "", "", index, cfg.max_chunks + 8, epoch))[0]
    if received == -2:
        raise SessionGone("the session is gone (expired or erased)")
    if received == -3:
        raise ChunkMissing(f"the staged chunk {index} is gone (expired or erased)")
    return None if received < 0 else int(received)


async def read_chunk(r, cfg: StreamConfig, sid: str, index: int, entry_id: str) -> bytes:
    rows = await r.xrange(keys.chunks(sid), min=entry_id, max=entry_id, count=1)
    if not rows:
        raise ChunkMissing(f"chunk {index} of the session is gone (expired or erased)")
    fields = rows[0][1]
    return cfg.keyring.open(int(fields[b"ep"]), fields[b"ct"], sid, KIND, index)


async def iter_chunks(r, cfg: StreamConfig, sid: str) -> AsyncIterator[bytes]:
    """Plaintext chunks in index order, one at a time (for hashing without assembling)."""
    meta = await get_meta(r, sid)
    if meta is None:
        raise SessionGone("the session is gone (expired or erased)")
    index = chunk_map(meta)
    for i in sorted(index):
        yield await read_chunk(r, cfg, sid, i, index[i][0])
