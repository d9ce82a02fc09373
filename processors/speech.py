"""The decoded soundtrack made fit for a transcription API: compact, and in pieces it accepts.

The decoder keeps 16 kHz mono PCM WAV, 32 KB a second: the API's 25 MiB request limit falls at
about 13.6 minutes, and the newer transcription models also refuse more than about 1400 s of
audio in one request. Opus in Ogg (a format the API takes) at 24 kbit/s is a ninth of that and
still clear speech; what is longer than ``max_seconds`` or still larger than ``max_bytes`` is
cut into consecutive pieces, each with its start time so their transcripts can be joined in place.
Pure: bytes in, bytes out, all in memory.
"""

from __future__ import annotations

import io
import math
import wave
from dataclasses import dataclass

import av
import numpy as np

MAX_REQUEST_BYTES = 25 * 1024 * 1024
"""The transcription API refuses larger requests (HTTP 413)."""
MAX_PIECE_S = 1380.0
"""Under the 1400 s the gpt-4o/gpt transcription models take in one request."""
REQUEST_OVERHEAD_BYTES = 64 * 1024
"""Room left in a request for the multipart envelope and the other form fields."""
OPUS_BITRATE = 24_000
OPUS_RATES = (48_000, 24_000, 16_000, 12_000, 8_000)
FILENAME, CONTENT_TYPE = "audio.ogg", "audio/ogg"


@dataclass(frozen=True)
class SpeechPiece:
    """One request's worth of audio: Ogg/Opus bytes starting ``start_s`` into the soundtrack."""

    start_s: float
    duration_s: float
    data: bytes
    filename: str = FILENAME
    content_type: str = CONTENT_TYPE


def read_wav(wav: bytes) -> tuple[np.ndarray, int]:
    """Mono s16 samples and their rate from a PCM WAV (the decoder's format); ValueError otherwise."""
    try:
        with wave.open(io.BytesIO(wav)) as reader:
            if reader.getsampwidth() != 2:
                raise ValueError(f"expected 16-bit PCM, got {8 * reader.getsampwidth()}-bit")
            channels, rate = reader.getnchannels(), reader.getframerate()
            samples = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"not a PCM WAV ({exc})") from None
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1).astype("<i2")
    return samples, rate


def encode_opus(samples: np.ndarray, rate: int, bitrate: int = OPUS_BITRATE) -> bytes:
    """Mono s16 samples as Ogg/Opus; a rate Opus does not take is resampled by the encoder.

    Constrained VBR: free VBR spends up to twice the bitrate on tonal sound, and a piece's size
    must be predictable from its duration."""
    out = io.BytesIO()
    with av.open(out, "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=min(r for r in OPUS_RATES if r >= min(rate, 48_000)),
                                      layout="mono", options={"vbr": "constrained"})
        stream.bit_rate = bitrate
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, dtype="<i2").reshape(1, -1), format="s16",
                                           layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def speech_pieces(wav: bytes, *, max_bytes: int = MAX_REQUEST_BYTES - REQUEST_OVERHEAD_BYTES,
                  max_seconds: float = MAX_PIECE_S, bitrate: int = OPUS_BITRATE) -> list[SpeechPiece]:
    """The soundtrack as the fewest equal pieces, in order, each under ``max_seconds`` and ``max_bytes``.

    An empty soundtrack has no piece. Pieces are cut on sample boundaries; a word on a cut may be
    split between two transcripts, which the joined text tolerates better than a refused request.
    """
    samples, rate = read_wav(wav)
    total = len(samples)
    if total == 0:
        return []
    count = max(1, math.ceil(total / rate / max_seconds))
    while True:
        bounds = [round(total * i / count) for i in range(count + 1)]
        pieces = [SpeechPiece(start / rate, (end - start) / rate, encode_opus(samples[start:end], rate, bitrate))
                  for start, end in zip(bounds, bounds[1:])]
        largest = max(len(piece.data) for piece in pieces)
        if largest <= max_bytes:
            return pieces
        if total // count < rate:
            raise ValueError(f"one second of audio encodes to more than {max_bytes} bytes")
        count = max(count + 1, math.ceil(count * largest / max_bytes))


def clock_time(seconds: float) -> str:
    """``mm:ss`` (``h:mm:ss`` past an hour): how a transcript marks where a piece begins."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"
