"""Decoding front to back while an upload arrives: which files can, and what comes out."""

from __future__ import annotations

import io
from fractions import Fraction

import pytest

from processors.video import DecodeError, DecodeLimits, decode_media
from processors.video.media_reader import ArrivingReader
from processors.video.progressive import TooFewKeyframes, decode_arriving
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
    stamps = [f.timestamp for f in media.frames]
    assert stamps == pytest.approx([f.timestamp for f in seeking.frames], abs=0.15), "both decodes select alike"
    assert stamps == sorted(stamps) and stamps[0] < 1.0 and stamps[-1] > 9.0, stamps
    assert media.audio_wav is not None and seeking.audio_wav is not None
    assert abs(len(media.audio_wav) - len(seeking.audio_wav)) < 16_000 * 2 * 0.1
    assert (media.width, media.height, media.container) == (seeking.width, seeking.height, seeking.container)


def test_keyframes_far_apart_are_followed_frame_by_frame_to_candidates_a_second_apart() -> None:
    video = make_video(duration=6.0, container="mpegts", gop=1000, noise=2)
    stamps = [f.timestamp for f in forward(video).frames]
    assert stamps[0] < 0.5 and stamps[-1] > 4.5
    assert len(stamps) >= 2


def test_a_mediarecorder_webm_with_keyframes_3_s_apart_gets_frames_between_its_keyframes() -> None:
    """As Chrome records on the upload page: VP8 WebM, no duration, no cues, a keyframe every 3 s."""
    scenes = ((0.0, "navy"), (1.5, "gold"), (4.0, "teal"), (7.5, "lightgrey"))
    video = make_video(duration=9.0, container="webm", codec="vp8", audio="opus", live=True, gop=90, fps=30,
                       scenes=scenes)
    assert streamable(video[:CHUNK])
    media = forward(video)
    stamps = [f.timestamp for f in media.frames]
    assert any(t % 3 > 0.5 for t in stamps), "a frame between keyframes"
    shown = {max(i for i, (start, _) in enumerate(scenes) if start <= t) for t in stamps}
    assert shown == {0, 1, 2, 3}
    assert stamps == pytest.approx([f.timestamp for f in decode_media(io.BytesIO(video)).frames], abs=0.05)


def test_a_streamable_file_cut_short_is_not_mistaken_for_a_short_video() -> None:
    video = make_video(duration=6.0, container="webm", codec="vp9", audio="opus", gop=12)
    with pytest.raises((DecodeError, TooFewKeyframes, OSError)):
        forward(video[: len(video) // 3] + bytes(len(video) - len(video) // 3))


def test_front_to_back_frames_keep_the_pixel_aspect_ratio_and_the_audio_s_timeline() -> None:
    video = make_video(container="mkv", width=640, height=360, sample_aspect=Fraction(4, 3), duration=3.0,
                       video_delay=0.6, fps=10)
    media = forward(video)
    assert (media.width, media.height) == (853, 360)
    assert media.frames[0].timestamp == pytest.approx(0.6, abs=0.01)
    assert [(f.width, f.height) for f in media.frames] == [(854, 360)] * len(media.frames)
