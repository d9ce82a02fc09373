"""Admission of new sessions: one atomic step counts and admits, overall and per client.

Counting and creating in two round trips let 40 racing requests through a cap of 10; the script
below does both at once, on keys that share one cluster slot (``keys.ADMISSION``). A session
admitted here holds a slot until it finishes, is erased, or is reaped for sending nothing
(``streams.lifecycle.reap_idle``).
"""

from __future__ import annotations

import time
from enum import IntEnum

from streams import keys
from streams.config import StreamConfig
from streams.connection import Redis, as_str


class Admission(IntEnum):
    ADMITTED = 0
    FULL = 1
    """The service holds ``max_sessions`` live sessions."""
    OVER_QUOTA = 2
    """This client holds its quota of live sessions."""


ADMIT = """
local now, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local since = now - ttl
if ARGV[8] ~= '1' then
  if redis.call('ZCOUNT', KEYS[1], since, '+inf') >= tonumber(ARGV[3]) then return 1 end
  if ARGV[7] ~= '' and tonumber(ARGV[4]) > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', since)
    if redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[4]) then return 2 end
  end
end
redis.call('ZADD', KEYS[1], now, ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[5])
if ARGV[7] ~= '' then
  redis.call('ZADD', KEYS[4], now, ARGV[5])
  redis.call('EXPIRE', KEYS[4], ttl)
  redis.call('HSET', KEYS[3], ARGV[5], ARGV[7])
end
return 0
"""

RELEASE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if KEYS[4] then redis.call('ZREM', KEYS[4], ARGV[1]) end
"""


async def admit(r: Redis, cfg: StreamConfig, sid: str, *, client: str, max_sessions: int, quota: int,
                force: bool = False) -> Admission:
    """Count and admit ``sid`` in one step. ``client`` is a pseudonym ("" for a caller exempt from quotas);
    ``force`` admits past both limits (a tus final upload, whose parts' slots are freed right after)."""
    now = time.time()
    reply = await r.eval(ADMIT, 4, keys.ACTIVE, keys.IDLE, keys.OWNERS, keys.client_sessions(client or "-"),
                         repr(now), cfg.session_ttl_s, max_sessions, quota, sid, repr(now + cfg.upload_idle_s), client,
                         "1" if force else "0")
    return Admission(int(reply))


async def release(r: Redis, sid: str) -> None:
    """Free the session's slot, its client's quota slot and its idle deadline."""
    client = await r.hget(keys.OWNERS, sid)
    names = [keys.ACTIVE, keys.IDLE, keys.OWNERS]
    if client is not None:
        names.append(keys.client_sessions(as_str(client)))
    await r.eval(RELEASE, len(names), *names, sid)


async def touch(r: Redis, cfg: StreamConfig, sid: str, *, force: bool = False) -> None:
    """Bytes arrived: push the idle deadline back (only while the session is still waiting for an upload,
    unless ``force``: the reaper putting back a session it claimed but must not reap)."""
    await r.zadd(keys.IDLE, {sid: time.time() + cfg.upload_idle_s}, xx=not force)


class Heartbeat:
    """Pushes an upload's idle deadline back while its bytes keep arriving: on a slow uplink one chunk can
    take minutes, and the idle time is about silence, not speed. At most one write per third of it."""

    def __init__(self, r: Redis, cfg: StreamConfig, sid: str) -> None:
        self.r, self.cfg, self.sid = r, cfg, sid
        self.due = time.monotonic() + cfg.upload_idle_s / 3

    async def beat(self) -> None:
        if time.monotonic() >= self.due:
            self.due = time.monotonic() + self.cfg.upload_idle_s / 3
            await touch(self.r, self.cfg, self.sid)


async def settle(r: Redis, sid: str) -> None:
    """The upload is over (complete, or waiting for its concatenation): no idle deadline any more."""
    await r.zrem(keys.IDLE, sid)


async def idle_due(r: Redis, now: float | None = None, count: int = 100) -> list[str]:
    """Sessions past their idle deadline, oldest first."""
    rows = await r.zrangebyscore(keys.IDLE, "-inf", now if now is not None else time.time(), start=0, num=count)
    return [as_str(row) for row in rows]


async def claim_idle(r: Redis, sid: str) -> bool:
    """Take the reaping of ``sid``; with several gateways reaping, exactly one gets True."""
    return bool(await r.zrem(keys.IDLE, sid))


async def retry_after(r: Redis, cfg: StreamConfig, client: str | None = None) -> int:
    """Seconds until a slot is likely free: the nearest idle deadline (of the client's own sessions when
    its quota is what is full), bounded to [1, upload_idle_s]."""
    if client:
        owned = [as_str(m) for m in await r.zrange(keys.client_sessions(client), 0, -1)]
        scores = [s for s in (await r.zmscore(keys.IDLE, owned) if owned else []) if s is not None]
    else:
        rows = await r.zrange(keys.IDLE, 0, 0, withscores=True)
        scores = [rows[0][1]] if rows else []
    wait = min(scores) - time.time() if scores else cfg.upload_idle_s
    return int(max(1, min(cfg.upload_idle_s, wait + 1)))
