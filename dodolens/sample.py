"""A sample "home tour" video, made in memory on first use so the main command needs no file."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np

ROOMS = [(200, 160, 120), (90, 140, 200), (120, 190, 110), (210, 200, 170)]


def _picture(t: float, width: int, height: int, texture: np.ndarray) -> np.ndarray:
    """A room (colour per 4-second scene) with furniture-like boxes panning across a textured wall."""
    base = np.array(ROOMS[int(t // 4) % len(ROOMS)], dtype=np.int16)
    shift = int(t * width / 8) % width
    img = np.clip(np.roll(texture, shift, axis=1) + base, 0, 255).astype(np.uint8)
    for k, (w, h) in enumerate([(width // 4, height // 3), (width // 6, height // 2), (width // 5, height // 5)]):
        x0 = (shift + k * width // 3) % max(1, width - w)
        y0 = height - h - 10 - 20 * k
        img[y0 : y0 + h, x0 : x0 + w] = (40 + 60 * k, 30 * k, 200 - 50 * k)
    return img


def sample_video(duration: float = 12.0, width: int = 960, height: int = 540, fps: int = 24) -> bytes:
    """H.264 + AAC in MP4 with the index at the end, as a phone writes it (a few MB: several chunks)."""
    texture = np.random.default_rng(7).integers(-40, 40, (height, width, 1), dtype=np.int16)
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "16", "g": str(fps)})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=44_100)
        audio.layout = "mono"
        for i in range(int(duration * fps)):
            frame = av.VideoFrame.from_ndarray(_picture(i / fps, width, height, texture), format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            container.mux(video.encode(frame))
        samples_per_frame = 1024
        t = np.arange(int(duration * 44_100)) / 44_100
        tone = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        for start in range(0, len(tone), samples_per_frame):
            chunk = tone[start : start + samples_per_frame].reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
            frame.sample_rate, frame.pts = 44_100, start
            container.mux(audio.encode(frame))
        container.mux(video.encode())
        container.mux(audio.encode())
    return out.getvalue()
