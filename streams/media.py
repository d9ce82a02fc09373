"""Decoded media in Redis between decode and analysis: encrypted frames and audio, with TTLs."""

from __future__ import annotations

import asyncio

from streams import keys
from streams.config import StreamConfig
from streams.connection import Redis

FRAME, AUDIO = "frame", "audio"


async def store_media(r: Redis, cfg: StreamConfig, sid: str, frames: list[tuple[float, bytes]], audio: bytes | None) -> None:
    sealed = await asyncio.to_thread(
        lambda: [(ts, *cfg.keyring.seal(jpeg, sid, FRAME, i)) for i, (ts, jpeg) in enumerate(frames)]
    )
    async with r.pipeline(transaction=True) as pipe:
        pipe.delete(keys.frames(sid), keys.audio(sid))
        for i, (ts, epoch, blob) in enumerate(sealed):
            pipe.xadd(keys.frames(sid), {"i": i, "ts": ts, "ep": epoch, "ct": blob})
        pipe.expire(keys.frames(sid), cfg.chunk_ttl_s)
        if audio is not None:
            epoch, blob = await asyncio.to_thread(cfg.keyring.seal, audio, sid, AUDIO, 0)
            pipe.set(keys.audio(sid), epoch.to_bytes(8, "big") + blob, ex=cfg.chunk_ttl_s)
        await pipe.execute()


async def load_frames(r: Redis, cfg: StreamConfig, sid: str) -> list[tuple[float, bytes]]:
    rows = await r.xrange(keys.frames(sid))

    def open_all() -> list[tuple[float, bytes]]:
        out = []
        for _entry, f in rows:
            i = int(f[b"i"])
            out.append((float(f[b"ts"]), cfg.keyring.open(int(f[b"ep"]), f[b"ct"], sid, FRAME, i)))
        return out

    return await asyncio.to_thread(open_all)


async def load_audio(r: Redis, cfg: StreamConfig, sid: str) -> bytes | None:
    raw = await r.get(keys.audio(sid))
    if raw is None:
        return None
    return await asyncio.to_thread(cfg.keyring.open, int.from_bytes(raw[:8], "big"), raw[8:], sid, AUDIO, 0)


async def delete_media(r: Redis, sid: str) -> int:
    """Delete every media key of the session; returns how many existed."""
    return int(await r.delete(*keys.media_keys(sid)))
