"""The decoded soundtrack made fit for a transcription API: compact, and in timed pieces it accepts.

The decoder keeps 16 kHz mono PCM WAV, 32 KB a second: the API's 25 MiB request limit falls at
about 13.6 minutes, and the newer transcription models also refuse more than about 1400 s of
audio in one request. Opus in Ogg (a format the API takes) at 24 kbit/s is a ninth of that and
still clear speech. The soundtrack is sent in pieces of bounded duration (``piece_seconds``, well
under both limits) so that each piece's text has a start and an end on the video's timeline and
the vision model can be given what was said while its frames were filmed. Each cut is moved back
to the quietest moment of the seconds before it, so a word is not split between two pieces.
Pure: bytes in, bytes out, all in memory.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass

import av
import numpy as np

MAX_REQUEST_BYTES = 25 * 1024 * 1024
"""The transcription API refuses larger requests (HTTP 413)."""
MAX_PIECE_S = 1380.0
"""Under the 1400 s the gpt-4o/gpt transcription models take in one request."""
PIECE_S = 90.0
"""Default piece duration: fine enough to give each batch of frames the speech of its time span."""
QUIET_SEARCH_S = 10.0
"""How far before a piece's longest end its cut may move to find a pause (at most a quarter piece)."""
QUIET_WINDOW_S = 0.05
"""The stretch whose energy is compared when looking for a pause: shorter than a syllable."""
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


def wav_seconds(wav: bytes) -> float:
    """The WAV's duration from its header alone (0 for what is not a WAV): sizing work before decoding it."""
    try:
        with wave.open(io.BytesIO(wav)) as reader:
            return reader.getnframes() / reader.getframerate()
    except (wave.Error, EOFError, ZeroDivisionError):
        return 0.0


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


def speech_pieces(wav: bytes, *, piece_seconds: float = PIECE_S,
                  max_bytes: int = MAX_REQUEST_BYTES - REQUEST_OVERHEAD_BYTES,
                  max_seconds: float = MAX_PIECE_S, bitrate: int = OPUS_BITRATE) -> list[SpeechPiece]:
    """The soundtrack as consecutive pieces, in order, each at most ``piece_seconds`` (and
    ``max_seconds``) long and under ``max_bytes``, each cut at a pause (see ``cut_points``).

    An empty soundtrack has no piece. A piece still too large once encoded shortens them all.
    """
    samples, rate = read_wav(wav)
    if len(samples) == 0:
        return []
    length = min(piece_seconds, max_seconds)
    while True:
        bounds = [0, *cut_points(samples, rate, length)]
        pieces = [SpeechPiece(start / rate, (end - start) / rate, encode_opus(samples[start:end], rate, bitrate))
                  for start, end in zip(bounds, bounds[1:])]
        largest = max(len(piece.data) for piece in pieces)
        if largest <= max_bytes:
            return pieces
        if length <= 1.0:
            raise ValueError(f"one second of audio encodes to more than {max_bytes} bytes")
        length = max(1.0, length * 0.9 * max_bytes / largest)


def cut_points(samples: np.ndarray, rate: int, piece_seconds: float) -> list[int]:
    """Where each piece ends (sample indexes, the last is the end): no piece longer than
    ``piece_seconds``, each cut at the quietest moment of the ``QUIET_SEARCH_S`` before that limit
    (the latest, when several are as quiet), so pieces stay long and words whole."""
    total = len(samples)
    limit = max(1, round(piece_seconds * rate))
    search = min(round(QUIET_SEARCH_S * rate), limit // 4)
    window = max(1, round(QUIET_WINDOW_S * rate))
    cuts: list[int] = []
    start = 0
    while total - start > limit:
        low = start + limit - search
        cuts.append(low + _quietest(samples[low:start + limit], window) if search >= window else start + limit)
        start = cuts[-1]
    cuts.append(total)
    return cuts


def _quietest(samples: np.ndarray, window: int) -> int:
    """The middle of the quietest ``window``-long stretch of ``samples`` (the latest of equals)."""
    count = len(samples) // window
    energy = np.square(samples[:count * window].astype(np.float32)).reshape(count, window).sum(axis=1)
    last = count - 1 - int(np.argmin(energy[::-1]))
    return last * window + window // 2


def clock_time(seconds: float) -> str:
    """``mm:ss`` (``h:mm:ss`` past an hour): how a transcript marks where a piece begins."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"
