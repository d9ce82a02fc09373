"""Decoded media in Redis between decode and analysis: encrypted frames and audio, with TTLs."""

from __future__ import annotations


from streams import keys
from streams.config import StreamConfig
from streams.connection import Redis
from streams.threads import in_thread

FRAME, AUDIO = "frame", "audio"
AUDIO_PIECE = 1024 * 1024
"""Audio is sealed and stored in pieces of this many bytes (16 kHz mono PCM: about 33 s each)."""


async def store_media(r: Redis, cfg: StreamConfig, sid: str, frames: list[tuple[float, bytes]], audio: bytes | None) -> None:
    """Frames in one transaction, then the audio sealed and sent piece by piece.

    A sealed copy of a whole track (and the concatenations around it) would cost a worker several
    times the track's size at once; piece by piece it costs one piece, however long the video.
    """
    sealed = await in_thread(
        lambda: [(ts, *cfg.keyring.seal(jpeg, sid, FRAME, i)) for i, (ts, jpeg) in enumerate(frames)]
    )
    async with r.pipeline(transaction=True) as pipe:
        pipe.delete(keys.frames(sid), keys.audio(sid))
        for i, (ts, epoch, blob) in enumerate(sealed):
            pipe.xadd(keys.frames(sid), {"i": i, "ts": ts, "ep": epoch, "ct": blob})
        pipe.expire(keys.frames(sid), cfg.chunk_ttl_s)
        await pipe.execute()
    if audio is None:
        return
    view = memoryview(audio)
    count = -(-len(view) // AUDIO_PIECE)
    for i in range(count):
        epoch, blob = await in_thread(cfg.keyring.seal, view[i * AUDIO_PIECE : (i + 1) * AUDIO_PIECE], sid, AUDIO, i)
        async with r.pipeline(transaction=True) as pipe:
            pipe.xadd(keys.audio(sid), {"i": i, "n": count, "ep": epoch, "ct": blob})
            pipe.expire(keys.audio(sid), cfg.chunk_ttl_s)
            await pipe.execute()


async def load_frames(r: Redis, cfg: StreamConfig, sid: str) -> list[tuple[float, bytes]]:
    rows = await r.xrange(keys.frames(sid))

    def open_all() -> list[tuple[float, bytes]]:
        out = []
        for _entry, f in rows:
            i = int(f[b"i"])
            out.append((float(f[b"ts"]), cfg.keyring.open(int(f[b"ep"]), f[b"ct"], sid, FRAME, i)))
        return out

    return await in_thread(open_all)


async def load_audio(r: Redis, cfg: StreamConfig, sid: str) -> bytes | None:
    """The whole track again, or None; a piece missing (expired mid-way) reads as no audio at all."""
    rows = await r.xrange(keys.audio(sid))
    if not rows or [int(f[b"i"]) for _e, f in rows] != list(range(int(rows[0][1][b"n"]))):
        return None

    def open_all() -> bytes:
        return b"".join(cfg.keyring.open(int(f[b"ep"]), f[b"ct"], sid, AUDIO, int(f[b"i"])) for _e, f in rows)

    return await in_thread(open_all)


async def delete_media(r: Redis, sid: str) -> int:
    """Delete every media key of the session; returns how many existed."""
    return int(await r.delete(*keys.media_keys(sid)))
