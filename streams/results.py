"""Results on their way to the sink: kept sealed in Redis, and queued until the sink confirms them.

Once the model has answered, the result is paid for: it must survive a sink that refuses writes
for minutes (Airtable locks a base for 30 s after a 429) and a worker that restarts meanwhile.
So it is sealed (AES-256-GCM, like media, bound to its session) under ``dodo:{sid}:result`` with a
TTL, and the session id waits in ``dodo:sink``, scored by when to try next. Any worker takes due
entries; taking one pushes its score past a lease, so a worker that dies mid-write leaves it due
again once the lease runs out. An erased session goes through the same queue: its stored record
is deleted, even when the erase came while a write was still on its way.
"""

from __future__ import annotations

import time

from streams import keys
from streams.config import StreamConfig
from streams.connection import Redis
from streams.crypto import SealError

KIND = "result"

TAKE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, sid in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], sid) end
return due
"""


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def keep_result(r: Redis, cfg: StreamConfig, sid: str, blob: bytes, *, ttl_s: int, lease_until: float) -> None:
    """Seal and keep the result, and queue it for the sink, leased until ``lease_until`` to the caller
    (who tries the first write itself)."""
    epoch, sealed = cfg.keyring.seal(blob, sid, KIND)
    async with r.pipeline(transaction=False) as pipe:
        pipe.hset(keys.result(sid), mapping={"ep": epoch, "ct": bytes(sealed), "tries": 0})
        pipe.expire(keys.result(sid), ttl_s)
        pipe.zadd(keys.SINK_QUEUE, {sid: lease_until})
        await pipe.execute()


async def kept_result(r: Redis, cfg: StreamConfig, sid: str) -> bytes | None:
    """The kept result, or None when there is none (stored, erased, expired) or it no longer opens."""
    epoch, sealed = await r.hmget(keys.result(sid), ["ep", "ct"])
    if epoch is None or sealed is None:
        return None
    try:
        return cfg.keyring.open(int(epoch), sealed, sid, KIND)
    except SealError:
        return None


async def count_try(r: Redis, sid: str) -> int:
    """One more failed write of this result; returns how many there were (0 once the result is gone)."""
    if not await r.exists(keys.result(sid)):
        return 0
    return int(await r.hincrby(keys.result(sid), "tries", 1))


async def queue_for_sink(r: Redis, sid: str, due: float | None = None) -> None:
    """Have a worker settle this session with the sink at ``due`` (now by default): write or erase."""
    await r.zadd(keys.SINK_QUEUE, {sid: time.time() if due is None else due})


async def take_due(r: Redis, now: float, lease_until: float, count: int) -> list[str]:
    """Up to ``count`` sessions due by ``now``, leased to the caller until ``lease_until``."""
    return [_str(sid) for sid in await r.eval(TAKE_DUE, 1, keys.SINK_QUEUE, now, lease_until, count)]


async def settled(r: Redis, sid: str) -> None:
    """The sink has the result (or has erased it): forget the kept copy and the queue entry."""
    async with r.pipeline(transaction=False) as pipe:
        pipe.delete(keys.result(sid))
        pipe.zrem(keys.SINK_QUEUE, sid)
        await pipe.execute()


async def next_due(r: Redis) -> float | None:
    """When the earliest queued session is due, or None when none is queued."""
    first = await r.zrange(keys.SINK_QUEUE, 0, 0, withscores=True)
    return float(first[0][1]) if first else None
