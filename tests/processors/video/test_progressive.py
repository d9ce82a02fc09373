"""Decoding front to back while an upload arrives: which files can, and what comes out."""

from __future__ import annotations

import io

import pytest

from processors.video import DecodeError, DecodeLimits, decode_media
from processors.video.media_reader import ArrivingReader
from processors.video.progressive import CandidatePool, TooFewKeyframes, decode_arriving
from processors.video.sniff import streamable
from tests.support.videos import make_video

CHUNK = 64 * 1024


def forward(video: bytes, limits: DecodeLimits | None = None) -> object:
    reader = ArrivingReader(len(video), CHUNK, lambda i: video[i * CHUNK : (i + 1) * CHUNK])
    return decode_arriving(reader, video[:512], limits)


STREAMABLE = {
    "webm_vp9_opus": dict(container="webm", codec="vp9", audio="opus"),
    "fragmented_mp4": dict(container="mp4", fragmented=True),
    "mpegts": dict(container="mpegts"),
    "matroska_h264": dict(container="mkv"),
}


@pytest.mark.parametrize("kind", STREAMABLE)
def test_streamable_containers_decode_front_to_back_like_the_seeking_decode(kind: str) -> None:
    video = make_video(duration=12.0, width=640, height=360, noise=3, gop=24, **STREAMABLE[kind])
    assert streamable(video[:CHUNK])
    media = forward(video)
    seeking = decode_media(io.BytesIO(video))
    assert abs(media.duration - seeking.duration) < 0.2
    assert len(media.frames) == 8
    stamps = [f.timestamp for f in media.frames]
    assert stamps == sorted(stamps) and stamps[0] < 2.0 and stamps[-1] > 9.0, stamps
    assert media.audio_wav is not None and seeking.audio_wav is not None
    assert abs(len(media.audio_wav) - len(seeking.audio_wav)) < 16_000 * 2 * 0.1
    assert (media.width, media.height, media.container) == (seeking.width, seeking.height, seeking.container)


def test_a_video_with_too_few_keyframes_is_left_to_the_seeking_decode() -> None:
    video = make_video(duration=6.0, container="mpegts", gop=1000)
    with pytest.raises(TooFewKeyframes):
        forward(video)


def test_a_streamable_file_cut_short_is_not_mistaken_for_a_short_video() -> None:
    video = make_video(duration=6.0, container="webm", codec="vp9", audio="opus", gop=12)
    with pytest.raises((DecodeError, TooFewKeyframes, OSError)):
        forward(video[: len(video) // 3] + bytes(len(video) - len(video) // 3))


def test_the_pool_stays_evenly_spread_and_bounded_whatever_the_length() -> None:
    pool = CandidatePool()
    for second in range(600):
        if pool.wants(float(second)):
            pool.add(_shot(float(second)), capacity=48)
    stamps = [s.timestamp for s in pool.shots]
    assert 24 <= len(stamps) <= 48
    assert {b - a for a, b in zip(stamps, stamps[1:], strict=False)} == {pool.spacing}
    assert stamps[0] == 0.0 and stamps[-1] > 600 - 2 * pool.spacing


def _shot(seconds: float) -> object:
    from processors.video.frames import Shot

    return Shot(timestamp=seconds, pts=int(seconds * 1000), planes=None, colorspace=0, color_range=0, grey=None, rotation=0)
