"""Work queues on Redis Streams with consumer groups: at-least-once, claim, dead letters."""

from __future__ import annotations

from dataclasses import dataclass

from redis.exceptions import ResponseError

from streams import keys
from streams.config import StreamConfig
from streams.connection import Redis, as_str, str_fields


@dataclass(frozen=True)
class Job:
    stream: str
    entry_id: str
    session_id: str
    fields: dict[str, str]


def _job(stream: str, entry_id: bytes | str, raw: dict) -> Job:
    fields = str_fields(raw)
    return Job(stream=stream, entry_id=as_str(entry_id), session_id=fields.get("sid", ""), fields=fields)


async def ensure_group(r: Redis, stream: str, group: str) -> None:
    try:
        await r.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def enqueue(r: Redis, cfg: StreamConfig, stream: str, sid: str, **fields: str | int | float) -> str:
    entry = await r.xadd(stream, {"sid": sid, **fields}, maxlen=cfg.global_maxlen, approximate=True)
    return as_str(entry)


async def read_new(r: Redis, stream: str, group: str, consumer: str, count: int, block_ms: int) -> list[Job]:
    reply = await r.xreadgroup(group, consumer, {stream: ">"}, count=count, block=block_ms)
    return [_job(stream, entry_id, fields) for _s, rows in reply or [] for entry_id, fields in rows if fields]


async def claim_stale(r: Redis, stream: str, group: str, consumer: str, min_idle_ms: int, count: int) -> list[Job]:
    """Take over entries another consumer left pending for too long (it died or hung)."""
    reply = await r.xautoclaim(stream, group, consumer, min_idle_time=min_idle_ms, start_id="0-0", count=count)
    rows = reply[1] if reply else []
    return [_job(stream, entry_id, fields) for entry_id, fields in rows if fields]


async def touch(r: Redis, stream: str, group: str, consumer: str, entry_id: str) -> None:
    """Reset a pending entry's idle time: a long job still running is not stale."""
    await r.xclaim(stream, group, consumer, min_idle_time=0, message_ids=[entry_id], justid=True)



async def deliveries(r: Redis, stream: str, group: str, entry_id: str) -> int:
    rows = await r.xpending_range(stream, group, min=entry_id, max=entry_id, count=1)
    return int(rows[0]["times_delivered"]) if rows else 0


async def ack(r: Redis, stream: str, group: str, entry_id: str) -> None:
    """Acknowledge and delete: a done job's entry names its session and must not outlive it.

    Redis 7 has no XACKDEL (8.2 has); both commands go in one MULTI on the one stream key."""
    async with r.pipeline(transaction=True) as pipe:
        pipe.xack(stream, group, entry_id)
        pipe.xdel(stream, entry_id)
        await pipe.execute()


async def dead_letter(r: Redis, cfg: StreamConfig, job: Job, reason: str) -> None:
    await r.xadd(keys.DEAD, {**job.fields, "stream": job.stream, "entry": job.entry_id, "reason": reason},
                 maxlen=cfg.global_maxlen, approximate=True)
    await ack(r, job.stream, keys.GROUPS[job.stream], job.entry_id)
