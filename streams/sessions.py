"""Session metadata: one hash per session, its state machine, and the active-session set."""

from __future__ import annotations

import time

from schemas.lifecycle import FINISHED, LUA, UPLOADABLE, State
from streams import keys
from streams.admission import release, settle
from streams.audit import pseudonym
from streams.config import StreamConfig
from streams.connection import Redis, str_fields


CHUNK_FIELD = "c:"
"""Meta fields ``c:<index>`` map a chunk index to ``<stream entry id>:<length>``."""


async def create_session(r: Redis, cfg: StreamConfig, sid: str, size: int, content_type: str) -> float:
    now = time.time()
    async with r.pipeline(transaction=True) as pipe:
        pipe.hset(
            keys.meta(sid),
            mapping={
                "state": State.CREATED,
                "size": size,
                "chunk_size": cfg.chunk_size,
                "content_type": content_type,
                "received": 0,
                "bytes": 0,
                "created_at": now,
                "updated_at": now,
            },
        )
        pipe.expire(keys.meta(sid), cfg.session_ttl_s)
        await pipe.execute()
    await r.zadd(keys.ACTIVE, {sid: now})
    return now


async def get_meta(r: Redis, sid: str) -> dict[str, str] | None:
    raw = await r.hgetall(keys.meta(sid))
    return str_fields(raw) if raw else None


async def get_fields(r: Redis, sid: str, *names: str) -> dict[str, str] | None:
    """A few meta fields in one read: the meta hash grows with the chunk count, so hot paths skip HGETALL."""
    values = await r.hmget(keys.meta(sid), ["state", *names])
    if values[0] is None:
        return None
    return {n: v.decode() for n, v in zip(["state", *names], values) if v is not None}


UPDATE_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""


async def update_meta(r: Redis, cfg: StreamConfig, sid: str, **fields: str | int | float) -> bool:
    """Set meta fields only if the session still exists, atomically: a worker finishing a step
    just after an erasure must not bring back a half-empty meta hash."""
    return await _set_fields(r, UPDATE_IF_EXISTS, cfg, sid, fields)


async def _set_fields(r: Redis, script: str, cfg: StreamConfig, sid: str, fields: dict[str, str | int | float]) -> bool:
    flat = [str(part) for pair in fields.items() for part in pair]
    return bool(await r.eval(script, 1, keys.meta(sid), cfg.session_ttl_s, *flat))


CLAIM_DECODE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local owner = redis.call('HGET', KEYS[1], 'decoder')
if owner == false then
  redis.call('HSET', KEYS[1], 'decoder', ARGV[1])
  return 1
end
if owner == ARGV[1] then return 1 end
return 0
"""

RELEASE_DECODE = LUA + """
local state = redis.call('HGET', KEYS[1], 'state')
if accepts_chunks(state) and redis.call('HGET', KEYS[1], 'decoder') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'decoder')
  return 1
end
return 0
"""


async def claim_decode(r: Redis, sid: str, owner: str) -> bool:
    """Make ``owner`` (a job's entry id) the one job that decodes this session; True if it is.

    A session can be decoded by the job that follows its upload or by the one queued at completion;
    whichever claims first does it, and a redelivery of the same job keeps its claim.
    """
    return bool(await r.eval(CLAIM_DECODE, 1, keys.meta(sid), owner))


async def release_decode(r: Redis, sid: str, owner: str) -> bool:
    """Give the decode back, only while the upload is still open: once complete has queued the
    session, its own decode job may already have stood down for this owner."""
    return bool(await r.eval(RELEASE_DECODE, 1, keys.meta(sid), owner))


SET_STATE = LUA + """
if is_finished(redis.call('HGET', KEYS[1], 'state')) then return 0 end
""" + UPDATE_IF_EXISTS


async def set_state(r: Redis, cfg: StreamConfig, sid: str, state: State, **fields: str | int | float) -> bool:
    """Move a session on; True if it moved. An erased or expired session (no meta) stays gone, and a
    finished one stays finished: a worker that took a job just before another failed the session must
    not bring it back to life."""
    updated = await _set_fields(r, SET_STATE, cfg, sid, dict(fields, state=state.value, updated_at=time.time()))
    if updated and state in FINISHED:
        await release(r, sid)
    elif updated and state not in UPLOADABLE:
        await settle(r, sid)
    return updated


async def active_sessions(r: Redis, cfg: StreamConfig) -> int:
    """Sessions created within the session TTL and not finished."""
    return int(await r.zcount(keys.ACTIVE, time.time() - cfg.session_ttl_s, "+inf"))


async def is_erased(r: Redis, cfg: StreamConfig, sid: str) -> bool:
    """The tombstone holds a keyed pseudonym of the id, never the id itself."""
    return await r.zscore(keys.ERASED, pseudonym(cfg, sid)) is not None


def chunk_map(meta: dict[str, str]) -> dict[int, tuple[str, int]]:
    """Chunk index -> (stream entry id, length), from the session's meta hash."""
    out: dict[int, tuple[str, int]] = {}
    for name, value in meta.items():
        if name.startswith(CHUNK_FIELD):
            entry, _, length = value.rpartition(":")
            out[int(name[len(CHUNK_FIELD) :])] = (entry, int(length))
    return out


def expected_chunks(size: int, chunk_size: int) -> int:
    return max(1, -(-size // chunk_size))


def expected_length(size: int, chunk_size: int, index: int) -> int:
    """Every chunk is ``chunk_size`` bytes but the last, which holds the rest."""
    count = expected_chunks(size, chunk_size)
    if index < count - 1:
        return chunk_size
    return size - chunk_size * (count - 1)


def missing_chunks(meta: dict[str, str]) -> list[int]:
    count = expected_chunks(int(meta["size"]), int(meta["chunk_size"]))
    have = chunk_map(meta)
    return [i for i in range(count) if i not in have]
