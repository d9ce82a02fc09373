"""In-memory test media made with PyAV: real encoders, real containers, nothing written to disk.

Frames have content a frame selector can judge: each scene has its own brightness, gradient
direction and block texture, a rectangle moves across it, the texture pans, and a white band marks
the top of the upright picture (so a test can tell whether rotation was applied). Blurred segments
are the same picture heavily smoothed.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageColor

ENCODERS = {"h264": "libx264", "hevc": "libx265", "vp9": "libvpx-vp9", "av1": "libsvtav1", "vp8": "libvpx"}
FORMATS = {"mp4": "mp4", "mov": "mov", "webm": "webm", "mkv": "matroska", "mpegts": "mpegts", "ts": "mpegts"}
AUDIO_ENCODERS = {"aac": "aac", "opus": "libopus", "mp3": "libmp3lame"}
AUDIO_RATE = 48_000
AUDIO_FRAME = 960
DEFAULT_SCENE = "slategray"

os.environ.setdefault("SVT_LOG", "1")


@dataclass(frozen=True)
class _Scene:
    """What one scene looks like: planes pre-rendered at display size, before panning and drawing."""

    luma: np.ndarray
    u: int
    v: int
    rect_luma: int


def make_video(
    *,
    container: str = "mp4",
    codec: str = "h264",
    width: int = 320,
    height: int = 240,
    fps: int = 24,
    duration: float = 4.0,
    audio: str | None = "aac",
    rotation: int = 0,
    bitrate: int | None = None,
    gop: int | None = None,
    fragmented: bool = False,
    faststart: bool = False,
    scenes: Sequence[tuple[float, str]] | None = None,
    blur: Sequence[tuple[float, float]] | None = None,
    pattern: bytes | None = None,
    preset: str | None = None,
    live: bool = False,
    noise: int = 0,
    sample_aspect: Fraction | None = None,
    video_delay: float = 0.0,
) -> bytes:
    """Encode a clip in memory and return the file's bytes.

    ``width``/``height`` are the stored size; ``rotation`` (0/90/180/270) is how far clockwise a
    player must turn the stored picture, as phones record portrait video. ``scenes`` are
    ``(start_s, colour)`` pairs, ``blur`` are ``(start_s, end_s)`` smoothed spans, ``pattern`` seeds
    the texture. ``gop`` is the keyframe interval in frames (default: one second). MP4/MOV keep the
    moov atom at the end unless ``fragmented`` or ``faststart`` (moov moved to the front); ``live`` makes Matroska/WebM without duration or
    cues, like a browser's MediaRecorder. ``noise`` (0-7) is per-frame sensor noise, which is what makes
    real recordings expensive to encode and decode; ``preset`` overrides the encoder speed preset
    (x264 defaults to ``veryfast``, which keeps B-frames). AV1 (SVT) needs sizes that are multiples
    of 8. WebM only carries Opus, so ``audio="aac"`` becomes Opus there. ``sample_aspect`` is the
    pixel aspect ratio an anamorphic recording declares; ``video_delay`` starts the video that many
    seconds after the audio, on the same timeline.
    """
    if rotation % 90:
        raise ValueError("rotation must be a multiple of 90")
    if width % 2 or height % 2:
        raise ValueError("width and height must be even (yuv420p)")
    fmt = FORMATS[container]
    if fmt == "webm" and audio is not None:
        audio = "opus"
    turns = (rotation // 90) % 4
    display = (height, width) if turns % 2 else (width, height)
    scene_list = scenes or [(0.0, DEFAULT_SCENE)]
    rendered = [_render_scene(display, colour, index, pattern) for index, (_, colour) in enumerate(scene_list)]
    grain = _grain(display, noise, pattern)
    options: dict[str, str] = {}
    if fragmented:
        options["movflags"] = "frag_keyframe+empty_moov"
    if live:
        options["live"] = "1"
    out = io.BytesIO()
    with av.open(out, mode="w", format=fmt, options=options) as muxer:
        video = muxer.add_stream(ENCODERS[codec], rate=fps, options=_video_options(codec, preset))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.gop_size = gop or fps
        if bitrate:
            video.bit_rate = bitrate
        if rotation:
            video.set_display_rotation(-rotation)
        if sample_aspect is not None:
            video.codec_context.sample_aspect_ratio = sample_aspect
        sound = _add_audio(muxer, audio) if audio else None
        tone = _Tone()
        frames = max(1, round(duration * fps))
        for index in range(frames):
            t = index / fps
            scene = rendered[_scene_at(scene_list, t)]
            smoothed = any(start <= t < end for start, end in blur or [])
            planes = _frame_planes(scene, t, turns, smoothed, grain[index % len(grain)] if grain else None)
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            frame.pts = index + round(video_delay * fps)
            muxer.mux(video.encode(frame))
            if sound is not None:
                while tone.position < (index + 1) / fps * AUDIO_RATE:
                    muxer.mux(sound.encode(tone.next_frame()))
        muxer.mux(video.encode())
        if sound is not None:
            muxer.mux(sound.encode())
    return _faststart(out.getvalue(), fmt) if faststart else out.getvalue()


def _faststart(data: bytes, fmt: str) -> bytes:
    """The same packets with the moov moved to the front: FFmpeg does that as a second pass over a
    real file, so this one goes through a temporary file, deleted before returning."""
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / f"faststart.{fmt}")
        with av.open(io.BytesIO(data)) as source, av.open(path, mode="w", format=fmt,
                                                         options={"movflags": "faststart"}) as muxer:
            streams = list(source.streams)
            targets = {s.index: muxer.add_stream_from_template(s) for s in streams}
            for packet in source.demux(streams):
                if packet.dts is None:
                    continue
                packet.stream = targets[packet.stream.index]
                muxer.mux(packet)
        return Path(path).read_bytes()


def make_phone_clip(
    duration: float = 60.0, width: int = 1920, height: int = 1080, bitrate: int = 12_000_000, *, rotation: int = 0
) -> bytes:
    """A phone-like recording: H.264 + AAC, 30 fps, 1 s GOP, moov at the end, a new room every 10 s."""
    rooms = ["slategray", "goldenrod", "navy", "lightgrey", "darkgreen", "sienna"]
    scenes = [(float(start), rooms[(start // 10) % len(rooms)]) for start in range(0, max(1, int(duration)), 10)]
    return make_video(
        container="mp4", codec="h264", width=width, height=height, fps=30, duration=duration, audio="aac",
        rotation=rotation, bitrate=bitrate, gop=30, scenes=scenes, preset="ultrafast", noise=7,
    )


def make_long_video(seconds: int, *, width: int = 64, height: int = 48) -> bytes:
    """An MP4 (index at the end) of ``seconds`` one-second frames, each the same keyframe: a video as
    long as an hour-long recording, made in a moment, a few megabytes an hour."""
    source = make_video(width=width, height=height, fps=1, duration=1.0, audio=None, gop=1)
    out = io.BytesIO()
    with av.open(io.BytesIO(source)) as container, av.open(out, mode="w", format="mp4") as muxer:
        stream = container.streams.video[0]
        target = muxer.add_stream_from_template(stream)
        packet = next(p for p in container.demux(stream) if p.size)
        payload, duration = bytes(packet), packet.duration or int(1 / stream.time_base)
        for second in range(seconds):
            copy = av.Packet(payload)
            copy.stream, copy.time_base = target, stream.time_base
            copy.pts = copy.dts = second * duration
            copy.duration, copy.is_keyframe = duration, True
            muxer.mux(copy)
    return out.getvalue()


def make_audio_only(*, container: str = "m4a", duration: float = 2.0) -> bytes:
    """Audio without any video stream: ``m4a`` (AAC in MP4) or ``ogg`` (Opus)."""
    fmt, codec = {"m4a": ("ipod", "aac"), "ogg": ("ogg", "opus")}[container]
    out = io.BytesIO()
    with av.open(out, mode="w", format=fmt) as muxer:
        sound = _add_audio(muxer, codec)
        tone = _Tone()
        while tone.position < duration * AUDIO_RATE:
            muxer.mux(sound.encode(tone.next_frame()))
        muxer.mux(sound.encode())
    return out.getvalue()


def make_sine_wav(*, duration: float = 1.0, rate: int = 16_000, frequency: float = 440.0) -> bytes:
    """A mono s16le WAV tone, the shape decode_media promises for audio."""
    return make_tones_wav([(0.0, duration, frequency)], duration=duration, rate=rate)


def make_tones_wav(tones: list[tuple[float, float, float]], *, duration: float, rate: int = 16_000) -> bytes:
    """A mono s16le WAV, silent but for each (start s, end s, frequency Hz) tone: narration whose
    words a fake ear (``fake_speech.tone_words``) can tell apart, placed on the timeline."""
    samples = np.zeros(round(duration * rate), dtype=np.float64)
    for start, end, frequency in tones:
        first, last = round(start * rate), round(end * rate)
        samples[first:last] = np.sin(2 * np.pi * frequency * np.arange(last - first) / rate) * 12_000
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())
    return out.getvalue()


def truncate(data: bytes, fraction: float) -> bytes:
    """The first ``fraction`` of the file, as an interrupted upload leaves it."""
    return data[: int(len(data) * fraction)]


def corrupt(data: bytes, seed: int, *, flips: int = 64, start: int = 64, end: int | None = None) -> bytes:
    """``flips`` random bytes overwritten within ``data[start:end]``, reproducibly from ``seed``."""
    rng = random.Random(seed)
    damaged = bytearray(data)
    stop = len(damaged) if end is None else min(end, len(damaged))
    for _ in range(flips):
        if stop > start:
            damaged[rng.randrange(start, stop)] = rng.randrange(256)
    return bytes(damaged)


def _video_options(codec: str, preset: str | None) -> dict[str, str]:
    """Fast, quiet encoder settings; small test clips use x264 ``veryfast`` so B-frames are present."""
    if codec == "h264":
        return {"preset": preset or "veryfast"}
    if codec == "hevc":
        return {"preset": preset or "ultrafast", "x265-params": "log-level=error"}
    if codec in ("vp9", "vp8"):
        return {"deadline": "realtime", "cpu-used": "8"}
    if codec == "av1":
        return {"preset": preset or "12", "svtav1-params": "lp=2"}
    return {}


def _add_audio(muxer: av.container.OutputContainer, codec: str) -> av.audio.stream.AudioStream:
    sound = muxer.add_stream(AUDIO_ENCODERS[codec], rate=AUDIO_RATE, layout="stereo")
    sound.time_base = Fraction(1, AUDIO_RATE)
    return sound


class _Tone:
    """A 440 Hz tone on the left and 660 Hz on the right, served in fixed-size frames."""

    def __init__(self) -> None:
        self.position = 0

    def next_frame(self) -> av.AudioFrame:
        t = (self.position + np.arange(AUDIO_FRAME)) / AUDIO_RATE
        planes = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)]).astype(np.float32) * 0.3
        frame = av.AudioFrame.from_ndarray(planes, format="fltp", layout="stereo")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self.position
        self.position += AUDIO_FRAME
        return frame


def _scene_at(scenes: Sequence[tuple[float, str]], t: float) -> int:
    current = 0
    for index, (start, _) in enumerate(scenes):
        if start <= t:
            current = index
    return current


def _render_scene(display: tuple[int, int], colour: str, index: int, pattern: bytes | None) -> _Scene:
    """Brightness from the colour, a gradient whose direction alternates per scene, block texture."""
    width, height = display
    r, g, b = ImageColor.getrgb(colour)[:3]
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    seed = int.from_bytes(hashlib.sha256((pattern or b"") + index.to_bytes(4, "big")).digest()[:8], "big")
    rng = np.random.default_rng(seed)
    block = max(4, width // 40)
    texture = rng.integers(-45, 46, size=(height // block + 1, width // block + 1), dtype=np.int16)
    texture = np.repeat(np.repeat(texture, block, axis=0), block, axis=1)[:height, :width]
    ramp = np.linspace(-35, 35, width if index % 2 == 0 else height, dtype=np.float32)
    gradient = ramp[None, :] if index % 2 == 0 else ramp[:, None]
    luma = np.clip(y + gradient + texture, 16, 235).astype(np.uint8)
    return _Scene(luma=luma, u=int(round(u)), v=int(round(v)), rect_luma=int(y - 60 if y > 128 else y + 60))


def _grain(display: tuple[int, int], noise: int, pattern: bytes | None) -> list[np.ndarray]:
    """A few noise fields cycled over the frames: XOR on the low bits is cheap and never overflows."""
    if noise <= 0:
        return []
    if noise > 7:
        raise ValueError("noise must be between 0 and 7")
    width, height = display
    rng = np.random.default_rng(len(pattern or b""))
    return [rng.integers(0, noise + 1, size=(height, width), dtype=np.uint8) for _ in range(7)]


def _frame_planes(scene: _Scene, t: float, turns: int, smoothed: bool, grain: np.ndarray | None) -> np.ndarray:
    """One yuv420p picture: the panned scene, the moving rectangle, the top band, then stored rotated."""
    height, width = scene.luma.shape
    luma = np.roll(scene.luma, int(t * width / 8), axis=1)
    rect_w, rect_h = width // 4, height // 4
    x = int((t * width / 3) % (width - rect_w))
    y = height // 3 + int((t * height / 7) % (height // 3))
    luma[y : y + rect_h, x : x + rect_w] = scene.rect_luma
    luma[: max(2, height // 12)] = 235
    if smoothed:
        luma = _smooth(luma)
    if grain is not None:
        luma ^= grain
    luma = np.ascontiguousarray(np.rot90(luma, turns))
    stored_h, stored_w = luma.shape
    planes = np.empty(stored_h * stored_w * 3 // 2, dtype=np.uint8)
    quarter = stored_h * stored_w // 4
    planes[: stored_h * stored_w] = luma.ravel()
    planes[stored_h * stored_w : stored_h * stored_w + quarter] = scene.u
    planes[stored_h * stored_w + quarter :] = scene.v
    return planes.reshape(stored_h * 3 // 2, stored_w)


def _smooth(luma: np.ndarray) -> np.ndarray:
    """Heavy blur: shrink 24x then enlarge bilinearly, which erases every edge the texture had."""
    height, width = luma.shape
    image = Image.fromarray(luma)
    small = image.resize((max(2, width // 24), max(2, height // 24)), Image.Resampling.BOX)
    return np.asarray(small.resize((width, height), Image.Resampling.BILINEAR))
