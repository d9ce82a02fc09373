"""Frames and audio between decode and analysis: sealed, with TTLs, audio in pieces."""

from __future__ import annotations

import os

from streams import keys
from streams.config import StreamConfig
from streams.connection import Redis
from streams.media import AUDIO_PIECE, load_audio, load_frames, store_media


async def test_a_long_track_is_stored_in_sealed_pieces_and_read_back_whole(redis: Redis, stream_cfg: StreamConfig) -> None:
    sid = "m" * 32
    audio = os.urandom(AUDIO_PIECE * 2 + 1234)
    frames = [(0.5, b"\xff\xd8frame-one"), (1.5, b"\xff\xd8frame-two")]
    await store_media(redis, stream_cfg, sid, frames, audio)
    assert await redis.xlen(keys.audio(sid)) == 3
    assert 0 < await redis.ttl(keys.audio(sid)) <= stream_cfg.chunk_ttl_s
    rows = await redis.xrange(keys.audio(sid))
    assert all(audio[:64] not in f[b"ct"] for _e, f in rows)
    assert await load_audio(redis, stream_cfg, sid) == audio
    assert await load_frames(redis, stream_cfg, sid) == frames


async def test_a_track_missing_a_piece_reads_as_no_audio(redis: Redis, stream_cfg: StreamConfig) -> None:
    sid = "n" * 32
    await store_media(redis, stream_cfg, sid, [], os.urandom(AUDIO_PIECE + 1))
    first = (await redis.xrange(keys.audio(sid), count=1))[0][0]
    await redis.xdel(keys.audio(sid), first)
    assert await load_audio(redis, stream_cfg, sid) is None


async def test_storing_again_replaces_what_a_crashed_attempt_left(redis: Redis, stream_cfg: StreamConfig) -> None:
    sid = "o" * 32
    await store_media(redis, stream_cfg, sid, [], os.urandom(AUDIO_PIECE * 3))
    await store_media(redis, stream_cfg, sid, [], b"short track")
    assert await load_audio(redis, stream_cfg, sid) == b"short track"
    assert await store_media(redis, stream_cfg, sid, [], None) is None
    assert await load_audio(redis, stream_cfg, sid) is None
