"""What the fake transcription endpoint refuses, as the OpenAI API documents and answers it.

A request over 25 MiB is a 413; a file whose name does not carry a supported format, or whose
bytes do not decode as audio, is a 400; the gpt-4o/gpt transcription models refuse more than
1400 s of audio in one request (400 ``invalid_value``), whisper-1 takes any length under the
size limit. The audio is really decoded (PyAV), so its duration is what the fake "heard".
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping

import av
import numpy as np

MAX_TRANSCRIPTION_BYTES = 25 * 1024 * 1024
FORMATS = ("flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm")
MAX_SECONDS = {"whisper-1": None}
DEFAULT_MAX_SECONDS = 1400.0


class Refused(ValueError):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def too_large(body: bytes) -> Refused | None:
    if len(body) > MAX_TRANSCRIPTION_BYTES:
        return Refused(413, f"Maximum content size limit ({MAX_TRANSCRIPTION_BYTES}) exceeded ({len(body)} bytes read)")
    return None


def heard_seconds(filename: str | None, data: bytes, model: str) -> float:
    """Seconds of audio in the upload; ``Refused`` for what the API would refuse."""
    extension = (filename or "").rpartition(".")[2].lower()
    if extension not in FORMATS:
        raise Refused(400, f"Invalid file format. Supported formats: {list(FORMATS)}")
    try:
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.audio[0]
            last = 0.0
            for frame in container.decode(stream):
                last = float(frame.time or 0.0) + frame.samples / (frame.sample_rate or 1)
    except (av.FFmpegError, IndexError) as exc:
        raise Refused(400, f"Audio file might be corrupted or unsupported ({exc})") from None
    limit = MAX_SECONDS.get(model, DEFAULT_MAX_SECONDS)
    if limit is not None and last > limit:
        raise Refused(400, f"audio duration {last} seconds is longer than {limit:g} seconds which is the maximum "
                      "for this model", code="invalid_value")
    return last



def tone_words(words: Mapping[int, str], *, window_s: float = 0.25) -> Callable[[bytes], str]:
    """A fake ear for ``FakeOpenAI(hears=...)``: each stretch of a pure tone in the upload is heard
    as the word of its frequency (Hz), so a test can say which words are in which piece of audio."""

    def hear(data: bytes) -> str:
        samples, rate = _mono(data)
        size = max(1, round(window_s * rate))
        heard: list[str] = []
        previous: str | None = None
        for start in range(0, len(samples) - size + 1, size):
            window = samples[start:start + size]
            word = None
            if np.sqrt(np.mean(np.square(window))) > 0.02:
                spectrum = np.abs(np.fft.rfft(window * np.hanning(size)))
                peak = float(np.fft.rfftfreq(size, 1 / rate)[int(np.argmax(spectrum))])
                word = next((w for f, w in words.items() if abs(peak - f) <= 0.03 * f), None)
            if word is not None and word != previous:
                heard.append(word)
            previous = word
        return " ".join(heard)

    return hear


def _mono(data: bytes) -> tuple[np.ndarray, int]:
    rate = 16_000
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    parts: list[np.ndarray] = []
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(audio=0):
            parts.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
    parts.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), rate
