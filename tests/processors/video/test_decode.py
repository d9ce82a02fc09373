"""decode_media: any phone-style video in memory becomes upright JPEG frames over its whole length plus
16 kHz mono audio; anything else becomes a DecodeError with a stable code, never a hang."""

from __future__ import annotations

import functools
import io
import struct
import threading
import wave
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import Any

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from processors.video import DecodedMedia, DecodeError, DecodeLimits, decode_media
from processors.video.frames import Shot, Timeline, finish, observe
from processors.video.select import CANDIDATE_SPACING_S
from schemas.errors import ErrorCode
from tests.support.videos import corrupt, make_audio_only, make_phone_clip, make_video, truncate

LIMITS = DecodeLimits()

DECODE_CODES = {
    ErrorCode.NOT_A_VIDEO,
    ErrorCode.NO_VIDEO_STREAM,
    ErrorCode.TRUNCATED_VIDEO,
    ErrorCode.TOO_MANY_PIXELS,
    ErrorCode.TOO_LONG,
    ErrorCode.DECODE_FAILED,
}


@functools.cache
def clip(**options: Any) -> bytes:
    """Each distinct clip is encoded once per test session."""
    return make_video(**options)


def decode(data: bytes, limits: DecodeLimits = DecodeLimits()) -> DecodedMedia:
    return decode_media(io.BytesIO(data), limits)


def error_code(data: bytes, limits: DecodeLimits = DecodeLimits()) -> str:
    with pytest.raises(DecodeError) as caught:
        decode(data, limits)
    assert caught.value.message
    return caught.value.code


def jpeg(frame_bytes: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(frame_bytes))
    assert image.format == "JPEG"
    return image.convert("L")


def top_level_boxes(data: bytes) -> list[bytes]:
    boxes, position = [], 0
    while position + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[position : position + 8])
        boxes.append(kind)
        position += size if size >= 8 else len(data)
    return boxes


def box_span(data: bytes, wanted: bytes) -> tuple[int, int]:
    """Byte range of the first top-level ISO box of type ``wanted``."""
    position = 0
    while position + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[position : position + 8])
        if kind == wanted:
            return position, position + size
        position += size if size >= 8 else len(data)
    raise LookupError(wanted)


def run_bounded(function: Callable[[], object], seconds: float) -> object:
    """Run ``function`` on a thread and fail the test if it has not returned within ``seconds``."""
    outcome: list[object] = []

    def target() -> None:
        try:
            outcome.append(function())
        except BaseException as exc:  # noqa: BLE001 - the outcome is what the test inspects
            outcome.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"decode_media still running after {seconds} s"
    return outcome[0]


FORMATS = {
    "mp4 h264+aac": (dict(container="mp4", codec="h264"), "h264", "mp4"),
    "fragmented mp4": (dict(container="mp4", fragmented=True), "h264", "mp4"),
    "mov hevc+aac": (dict(container="mov", codec="hevc"), "hevc", "mov"),
    "webm vp9+opus": (dict(container="webm", codec="vp9"), "vp9", "webm"),
    "webm without duration or cues": (dict(container="webm", codec="vp9", live=True), "vp9", "webm"),
    "mkv h264+aac": (dict(container="mkv"), "h264", "matroska"),
    "mpeg-ts h264+aac": (dict(container="mpegts"), "h264", "mpegts"),
    "mp4 av1": (dict(container="mp4", codec="av1", width=160, height=120, duration=3.0), "av1", "mp4"),
    "mkv av1": (dict(container="mkv", codec="av1", width=160, height=120, duration=3.0, audio=None), "av1", "matroska"),
    "mp4 with 40 s gop": (dict(gop=1000, duration=6.0), "h264", "mp4"),
    "mp4 without audio": (dict(audio=None), "h264", "mp4"),
}


@pytest.mark.parametrize("name", FORMATS)
def test_every_container_and_codec_gives_frames_from_its_start_to_its_end(name: str) -> None:
    options, codec, container = FORMATS[name]
    media = decode(clip(**options))
    duration = options.get("duration", 4.0)
    assert media.video_codec == codec and media.container == container
    assert media.duration == pytest.approx(duration, abs=0.1)
    stamps = [f.timestamp for f in media.frames]
    assert stamps == sorted(set(stamps)) and 0 <= stamps[0] < 0.5 and stamps[-1] < duration
    if duration >= 4.0:
        assert len(stamps) >= 2 and stamps[-1] >= duration - 1.5, "the pan's last stretch has a frame"
    size = (options.get("width", 320), options.get("height", 240))
    assert (media.width, media.height) == size
    for frame in media.frames:
        assert jpeg(frame.jpeg).size == (frame.width, frame.height) == size
        assert frame.sharpness > 0


def test_phone_mp4_with_its_index_at_the_end_decodes_from_a_plain_bytesio() -> None:
    data = clip()
    boxes = top_level_boxes(data)
    assert boxes.index(b"moov") > boxes.index(b"mdat")
    assert len(decode(data).frames) >= 2


@pytest.mark.parametrize(
    ("container", "codec", "rotation"), [("mov", "hevc", 90), ("mp4", "h264", 270), ("mp4", "h264", 180)]
)
def test_rotation_metadata_makes_frames_upright(container: str, codec: str, rotation: int) -> None:
    media = decode(clip(container=container, codec=codec, rotation=rotation, duration=2.0))
    upright = (240, 320) if rotation in (90, 270) else (320, 240)
    assert media.rotation == rotation
    assert (media.width, media.height) == upright
    for frame in media.frames:
        picture = np.asarray(jpeg(frame.jpeg), dtype=np.float32)
        assert picture.shape[::-1] == upright
        band = max(2, picture.shape[0] // 24)
        assert picture[:band].mean() > picture[-band:].mean() + 50, "the white band marking the top is not on top"


@pytest.mark.parametrize(("rotation", "size"), [(0, (1024, 576)), (90, (576, 1024))])
def test_full_hd_frames_are_scaled_to_a_long_side_of_1024(rotation: int, size: tuple[int, int]) -> None:
    media = decode(clip(width=1920, height=1080, fps=8, duration=2.0, audio=None, rotation=rotation))
    assert {(f.width, f.height) for f in media.frames} == {size}
    assert {jpeg(f.jpeg).size for f in media.frames} == {size}


def shot_of(frame: av.VideoFrame) -> Shot:
    return observe(frame, Timeline(0, Fraction(1, 8)), LIMITS)[1]()


def first_frame(data: bytes) -> av.VideoFrame:
    with av.open(io.BytesIO(data)) as container:
        return next(container.decode(video=0))


def test_a_candidate_s_grey_picture_is_its_luma_area_averaged_to_128_px_wide() -> None:
    frame = first_frame(clip(width=1920, height=1080, fps=8, duration=1.0, audio=None))
    candidate, _ = observe(frame, Timeline(0, Fraction(1, 8)), LIMITS)
    luma = frame.to_ndarray()[:1080].astype(np.float64)
    blocks = luma.reshape(72, 15, 128, 15).mean(axis=(1, 3))
    assert candidate.grey.shape == (72, 128) and candidate.grey.dtype == np.uint8
    assert np.abs(candidate.grey - blocks).max() <= 2.0


@pytest.mark.parametrize("rotation", [0, 90])
def test_a_chosen_candidate_becomes_the_jpeg_of_its_rgb_in_its_own_colour_matrix(rotation: int) -> None:
    frame = first_frame(clip(width=1920, height=1080, fps=8, duration=1.0, audio=None, rotation=rotation))
    shot = shot_of(frame)
    picture = av.VideoFrame.from_ndarray(shot.planes, format="yuv420p").to_image(
        src_colorspace=shot.colorspace, src_color_range=shot.color_range
    )
    turns = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}
    if shot.rotation:
        picture = picture.transpose(turns[shot.rotation])
    expected = io.BytesIO()
    picture.save(expected, format="JPEG", quality=LIMITS.jpeg_quality)
    assert finish(shot, LIMITS).jpeg == expected.getvalue()


def test_frames_are_never_scaled_up_and_obey_a_custom_long_side() -> None:
    assert {(f.width, f.height) for f in decode(clip(width=160, height=120, audio=None)).frames} == {(160, 120)}
    small = decode(clip(), DecodeLimits(max_long_side=200))
    assert {(f.width, f.height) for f in small.frames} == {(200, 150)}


@pytest.mark.parametrize("container", ["mp4", "webm", "mpegts"])
def test_audio_becomes_16_khz_mono_wav_of_the_same_length(container: str) -> None:
    media = decode(clip(container=container, codec="vp9" if container == "webm" else "h264"))
    assert media.audio_wav is not None
    with wave.open(io.BytesIO(media.audio_wav)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16_000)
        assert wav.getnframes() / 16_000 == pytest.approx(4.0, abs=0.1)
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float64)
    assert np.sqrt(np.mean(samples**2)) > 1000, "the tone is silent"


def test_no_audio_track_means_no_wav() -> None:
    assert decode(clip(audio=None)).audio_wav is None


@pytest.mark.parametrize("container", ["mp4", "webm"])
def test_audio_has_exactly_the_samples_of_pyav_s_resampler(container: str) -> None:
    data = clip(container=container, codec="vp9" if container == "webm" else "h264")
    resampler = av.AudioResampler(format="s16", layout="mono", rate=16_000)
    expected = bytearray()
    with av.open(io.BytesIO(data)) as source:
        for frame in [*source.decode(audio=0), None]:
            for mono in resampler.resample(frame):
                expected += bytes(mono.planes[0])[: mono.samples * 2]
    with wave.open(io.BytesIO(decode(data).audio_wav or b"")) as wav:
        assert wav.readframes(wav.getnframes()) == expected


class WatchedSource(io.BytesIO):
    """A BytesIO that notes any call made while another is still running, from whichever thread."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.busy = threading.Lock()
        self.overlaps = 0
        self.threads: set[str] = set()

    def _watch(self, call: Callable[[], Any]) -> Any:
        if not self.busy.acquire(blocking=False):
            self.overlaps += 1
            return call()
        try:
            self.threads.add(threading.current_thread().name)
            return call()
        finally:
            self.busy.release()

    def read(self, size: int | None = -1) -> bytes:
        return self._watch(lambda: super(WatchedSource, self).read(size))

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._watch(lambda: super(WatchedSource, self).seek(offset, whence))


def decode_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("dodolens-")}


def test_audio_and_video_are_read_on_two_threads_but_never_at_the_same_time() -> None:
    data = clip()
    source = WatchedSource(data)
    media = decode_media(source)
    assert source.overlaps == 0
    assert len(source.threads) == 2
    assert media.audio_wav == decode(data).audio_wav
    assert [f.jpeg for f in media.frames] == [f.jpeg for f in decode(data).frames]


def test_one_thread_decodes_everything_on_the_calling_thread_with_the_same_result() -> None:
    data = clip()
    source = WatchedSource(data)
    media = decode_media(source, DecodeLimits(threads=1))
    assert source.threads == {threading.current_thread().name}
    both = decode(data)
    assert media.audio_wav == both.audio_wav
    assert [f.jpeg for f in media.frames] == [f.jpeg for f in both.frames]


@pytest.mark.parametrize(
    ("make", "limits"),
    [
        (lambda: clip(), DecodeLimits()),
        (lambda: clip(), DecodeLimits(max_duration_s=3.0)),
        (lambda: clip(container="webm", codec="vp9", live=True), DecodeLimits(max_duration_s=3.0)),
        (lambda: clip(), DecodeLimits(max_pixels=320 * 240 - 1)),
        (lambda: truncate(clip(), 0.5), DecodeLimits()),
        (lambda: b"this is a shopping list, not a video\n" * 20, DecodeLimits()),
    ],
)
def test_no_decode_thread_outlives_the_call_whether_it_succeeds_or_fails(
    make: Callable[[], bytes], limits: DecodeLimits
) -> None:
    try:
        decode(make(), limits)
    except DecodeError:
        pass
    assert not decode_threads()


def test_a_phone_recording_covers_every_room_with_sharp_upright_frames() -> None:
    data = make_phone_clip(duration=20.0, rotation=90)
    media = decode(data)
    assert (media.width, media.height, media.rotation) == (1080, 1920, 90)
    assert {(f.width, f.height) for f in media.frames} == {(576, 1024)}
    stamps = [f.timestamp for f in media.frames]
    assert any(t < 10 for t in stamps) and any(t >= 10 for t in stamps)
    assert stamps[-1] - stamps[0] >= 16
    with wave.open(io.BytesIO(media.audio_wav or b"")) as wav:
        assert wav.getnframes() / 16_000 == pytest.approx(20.0, abs=0.1)


def test_every_scene_longer_than_two_seconds_gets_a_frame() -> None:
    scenes = [(0.0, "navy"), (3.0, "gold"), (7.5, "teal"), (8.5, "lightgrey")]
    media = decode(clip(duration=12.0, scenes=tuple(scenes), blur=((1.0, 2.5), (9.0, 11.0)), audio=None))
    shown = {max(i for i, (start, _) in enumerate(scenes) if start <= f.timestamp) for f in media.frames}
    assert {0, 1, 3} <= shown


def test_the_ceiling_keeps_the_frames_that_show_most_new_view() -> None:
    scenes = ((0.0, "navy"), (4.0, "gold"), (8.0, "teal"))
    unlimited = decode(clip(duration=12.0, scenes=scenes, audio=None))
    capped = decode(clip(duration=12.0, scenes=scenes, audio=None), DecodeLimits(max_frames=3))
    assert len(unlimited.frames) > 3 and len(capped.frames) == 3
    assert {max(i for i, (start, _) in enumerate(scenes) if start <= f.timestamp) for f in capped.frames} == {0, 1, 2}


def test_a_clip_shorter_than_a_second_gives_its_first_frame() -> None:
    tiny = decode(clip(fps=5, duration=1.0, audio=None))
    assert [round(f.timestamp, 2) for f in tiny.frames] == [0.0]


HLS = b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/hostname\n#EXT-X-ENDLIST\n"
BAD_INPUTS: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty": (lambda: b"", ErrorCode.NOT_A_VIDEO),
    "text": (lambda: b"this is a shopping list, not a video\n" * 20, ErrorCode.NOT_A_VIDEO),
    "png": (lambda: b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, ErrorCode.NOT_A_VIDEO),
    "random bytes": (lambda: np.random.default_rng(5).bytes(40_000), ErrorCode.NOT_A_VIDEO),
    "hls playlist naming a local file": (lambda: HLS, ErrorCode.NOT_A_VIDEO),
    "concat list naming a local file": (lambda: b"ffconcat version 1.0\nfile /etc/hostname\n", ErrorCode.NOT_A_VIDEO),
    "m4a audio only": (lambda: make_audio_only(container="m4a"), ErrorCode.NO_VIDEO_STREAM),
    "ogg audio only": (lambda: make_audio_only(container="ogg"), ErrorCode.NO_VIDEO_STREAM),
    "mp4 cut in half": (lambda: truncate(clip(), 0.5), ErrorCode.TRUNCATED_VIDEO),
    "mov missing its last tenth": (
        lambda: truncate(clip(container="mov", codec="hevc"), 0.9),
        ErrorCode.TRUNCATED_VIDEO,
    ),
    "mp4 cut to its first bytes": (lambda: truncate(clip(), 0.001), ErrorCode.TRUNCATED_VIDEO),
    "webm cut in half": (lambda: truncate(clip(container="webm", codec="vp9"), 0.5), ErrorCode.TRUNCATED_VIDEO),
    "mkv cut at a third": (lambda: truncate(clip(container="mkv"), 0.3), ErrorCode.TRUNCATED_VIDEO),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_gets_its_error_code(name: str) -> None:
    make, code = BAD_INPUTS[name]
    assert error_code(make()) == code


@pytest.mark.parametrize("options", [dict(), dict(container="webm", codec="vp9"), dict(container="mpegts")])
def test_pixel_limit_is_checked_on_the_declared_size(options: dict[str, Any]) -> None:
    assert error_code(clip(**options), DecodeLimits(max_pixels=320 * 240 - 1)) == ErrorCode.TOO_MANY_PIXELS
    assert len(decode(clip(**options), DecodeLimits(max_pixels=320 * 240)).frames) >= 1


def test_a_real_clip_above_the_default_pixel_limit_is_refused() -> None:
    data = clip(width=8192, height=4352, fps=1, duration=1.0, audio=None)
    assert len(data) < 200_000, "a decompression bomb is small on the wire"
    assert 8192 * 4352 > DecodeLimits().max_pixels
    assert error_code(data) == ErrorCode.TOO_MANY_PIXELS


def test_duration_limit_applies_to_declared_and_measured_durations() -> None:
    limits = DecodeLimits(max_duration_s=3.0)
    assert error_code(clip(), limits) == ErrorCode.TOO_LONG
    assert error_code(clip(container="webm", codec="vp9", live=True), limits) == ErrorCode.TOO_LONG
    assert len(decode(clip(), DecodeLimits(max_duration_s=4.5)).frames) >= 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_damaged_picture_data_still_decodes_what_it_can(seed: int) -> None:
    data = clip()
    start, end = box_span(data, b"mdat")
    media = decode(corrupt(data, seed, start=start + 1024, end=end))
    assert len(media.frames) >= 1
    assert all(0 <= f.timestamp <= media.duration for f in media.frames)


def test_concurrent_decodes_from_a_thread_pool_match_sequential_ones() -> None:
    inputs = [
        clip(),
        clip(container="webm", codec="vp9"),
        clip(container="mov", codec="hevc", rotation=90),
        clip(container="mpegts"),
    ]
    sequential = [decode(data) for data in inputs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(decode, inputs * 2))
    for expected, got in zip(sequential * 2, concurrent):
        assert [f.jpeg for f in got.frames] == [f.jpeg for f in expected.frames]
        assert got.audio_wav == expected.audio_wav


TINY = {"width": 160, "height": 120, "fps": 12, "duration": 1.5}
POOL = [
    dict(TINY),
    dict(TINY, fragmented=True),
    dict(TINY, container="mov", codec="hevc", rotation=90),
    dict(TINY, container="webm", codec="vp9"),
    dict(TINY, container="webm", codec="vp9", live=True),
    dict(TINY, container="mkv"),
    dict(TINY, container="mpegts"),
    dict(TINY, container="mkv", codec="av1"),
]


def pool(index: int) -> bytes:
    return clip(**POOL[index]) if index < len(POOL) else make_audio_only(duration=1.0)


@st.composite
def damaged_files(draw: st.DrawFn) -> bytes:
    """A pooled clip after up to four flips, truncations, cuts, insertions or splices with another clip."""
    data = bytearray(pool(draw(st.integers(0, len(POOL)))))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "cut", "insert", "splice"]))
        position = draw(st.integers(0, len(data)))
        if kind == "flip" and data:
            for offset in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=32)):
                data[offset] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[position:]
        elif kind == "cut":
            del data[position : position + draw(st.integers(1, 4096))]
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=256))
        elif kind == "splice":
            other = pool(draw(st.integers(0, len(POOL))))
            data[position:] = other[draw(st.integers(0, len(other))) :]
    return bytes(data)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=damaged_files())
def test_damaged_files_give_media_or_a_decode_error_in_bounded_time(data: bytes) -> None:
    outcome = run_bounded(lambda: decode(data), seconds=20)
    if isinstance(outcome, DecodeError):
        assert outcome.code in DECODE_CODES and outcome.message
    else:
        assert isinstance(outcome, DecodedMedia), repr(outcome)
        assert len(outcome.frames) <= DecodeLimits().max_frames
        stamps = [f.timestamp for f in outcome.frames]
        assert stamps == sorted(set(stamps))


CODECS = [("mp4", "h264"), ("mov", "hevc"), ("webm", "vp9"), ("mkv", "h264"), ("mpegts", "h264"), ("mkv", "av1")]


@settings(max_examples=12, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(CODECS),
    size=st.sampled_from([(160, 120), (128, 96), (96, 64)]),
    fps=st.integers(4, 30),
    duration=st.sampled_from([0.5, 1.0, 2.0, 3.0]),
    audio=st.booleans(),
    rotation=st.sampled_from([0, 90, 180, 270]),
    gop=st.one_of(st.none(), st.integers(1, 90)),
)
def test_any_valid_clip_decodes_into_ordered_upright_frames(
    kind: tuple[str, str], size: tuple[int, int], fps: int, duration: float, audio: bool, rotation: int, gop: int | None
) -> None:
    container, codec = kind
    if container == "mpegts" and rotation:
        rotation = 0
    data = make_video(
        container=container, codec=codec, width=size[0], height=size[1], fps=fps, duration=duration,
        audio="aac" if audio else None, rotation=rotation, gop=gop,
    )
    media = decode(data)
    assert 1 <= len(media.frames) <= max(1, round(duration / CANDIDATE_SPACING_S) + 1)
    stamps = [f.timestamp for f in media.frames]
    assert stamps == sorted(set(stamps)) and stamps[0] >= 0 and stamps[-1] < duration
    upright = size[::-1] if rotation in (90, 270) else size
    assert {(f.width, f.height) for f in media.frames} == {upright}
    assert (media.audio_wav is not None) == audio


def test_an_anamorphic_video_is_shown_as_wide_as_its_pixel_aspect_ratio_says() -> None:
    media = decode(clip(width=1918, height=1078, sample_aspect=Fraction(4, 3), duration=2.0, fps=8, audio=None))
    assert (media.width, media.height) == (2557, 1078)
    assert media.frames
    for frame in media.frames:
        assert jpeg(frame.jpeg).size == (frame.width, frame.height) == (1024, 432)


def test_frame_times_are_on_the_audio_s_timeline_when_the_video_starts_late() -> None:
    media = decode(clip(duration=3.0, video_delay=0.6, fps=10))
    assert media.frames[0].timestamp == pytest.approx(0.6, abs=0.01)


def test_an_8k_hevc_video_as_samsung_phones_record_it_is_decoded_and_shrunk() -> None:
    media = decode(clip(container="mp4", codec="hevc", width=7680, height=4320, fps=1, duration=2.0, audio=None, gop=1))
    assert (media.width, media.height, media.video_codec) == (7680, 4320, "hevc")
    assert media.frames and {(f.width, f.height) for f in media.frames} == {(1024, 576)}
