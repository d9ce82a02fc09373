"""What a decode promises and what it may cost: the limits, the error, the frames and media it returns."""

from __future__ import annotations

from dataclasses import dataclass


class DecodeError(Exception):
    """A video that cannot be turned into frames, with a code clients can act on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class DecodeLimits:
    """What a decode may cost; the defaults suit phone recordings of a home."""

    max_frames: int = 150
    """Ceiling on the frames sent to the model (their cost): a ten-minute tour needs about that many.
    Below it, the camera's motion decides how many (``processors.video.select``)."""
    max_long_side: int = 1024
    jpeg_quality: int = 85
    max_pixels: int = 7680 * 4320
    """8K UHD, as Samsung phones record it."""
    max_duration_s: float = 3600.0
    audio_rate: int = 16_000
    threads: int = 2
    """Threads one decode may use. 1 holds it to one core (the audio after the video, frames shrunk and
    encoded one at a time, libav single-threaded): a worker that decodes many sessions side by side
    gets more from one core per decode than from two decodes fighting over both."""


@dataclass(frozen=True)
class Frame:
    """One selected frame, upright, as JPEG; ``timestamp`` is seconds on the container's timeline
    (the audio's), from its start."""

    timestamp: float
    jpeg: bytes
    width: int
    height: int
    sharpness: float


@dataclass
class DecodedMedia:
    """What the analyzer needs from a video.

    ``width``/``height`` are the upright (displayed) size; ``rotation`` is the clockwise turn, in
    degrees, that was applied to make frames upright. ``audio_wav`` is mono s16le WAV at
    ``DecodeLimits.audio_rate``, or None when the file has no (decodable) audio.
    """

    duration: float
    width: int
    height: int
    rotation: int
    video_codec: str
    container: str
    frames: list[Frame]
    audio_wav: bytes | None
