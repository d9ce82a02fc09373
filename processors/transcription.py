"""The soundtrack to text through the OpenAI transcription API, however long the video.

The audio goes as compact Ogg/Opus, in as many requests as the API's size and duration limits
need (``processors.speech``), transcribed in order and joined with each piece's start time.
The inventory can still be made from the frames alone, so audio the API refuses (400, 413, 415,
422) or a transcription model it does not have (404, a configuration error that
``dodolens doctor`` reports at start-up) costs the transcript, never the session: it becomes a
warning that reaches the result and the events. Every other failure (timeouts, 429, 5xx) is
left to the caller, which decides whether the job is retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import openai

from processors.speech import MAX_PIECE_S, MAX_REQUEST_BYTES, REQUEST_OVERHEAD_BYTES, clock_time, speech_pieces

log = logging.getLogger(__name__)

UNUSABLE_AUDIO_STATUSES = frozenset({400, 413, 415, 422})
MAX_DETAIL_CHARS = 200

Progress = Callable[[str, float], Awaitable[None]]


@dataclass
class Transcript:
    text: str | None
    tokens: int = 0
    warnings: list[str] = field(default_factory=list)


class TranscriptionRefused(Exception):
    """The API will not transcribe this audio with this model; trying again would not help."""


async def transcribe(
    client: openai.AsyncOpenAI,
    audio_wav: bytes,
    *,
    model: str,
    language: str | None = None,
    progress: Progress | None = None,
    max_seconds: float = MAX_PIECE_S,
    max_bytes: int = MAX_REQUEST_BYTES - REQUEST_OVERHEAD_BYTES,
) -> Transcript:
    """The transcript of the soundtrack, with a warning for every part of it that is missing."""
    try:
        pieces = await asyncio.to_thread(speech_pieces, audio_wav, max_seconds=max_seconds, max_bytes=max_bytes)
    except ValueError as exc:
        return Transcript(None, warnings=[f"transcription skipped: the audio could not be encoded ({exc})"])
    if not pieces:
        return Transcript(None)
    out = Transcript(None)
    if len(pieces) > 1:
        length = clock_time(pieces[-1].start_s + pieces[-1].duration_s)
        out.warnings.append(f"transcription: the {length} soundtrack was sent in {len(pieces)} pieces")
    texts: list[str] = []
    answered = 0
    for done, piece in enumerate(pieces):
        try:
            answer = await _create(client, model, language, (piece.filename, piece.data, piece.content_type))
        except TranscriptionRefused as exc:
            if answered:
                out.warnings.append(f"transcript cut at {clock_time(piece.start_s)}: {exc}")
            else:
                out.warnings.append(f"transcription skipped: {exc}")
            log.warning("transcript incomplete: %s", exc)
            break
        text, tokens = _text_and_tokens(answer)
        answered += 1
        out.tokens += tokens
        if text:
            texts.append(f"[{clock_time(piece.start_s)}] {text}" if len(pieces) > 1 else text)
        if progress is not None and done + 1 < len(pieces):
            await progress("transcription", 0.05 + 0.25 * (done + 1) / len(pieces))
    out.text = " ".join(texts) if answered else None
    return out


async def _create(client: openai.AsyncOpenAI, model: str, language: str | None, file: tuple[str, bytes, str]) -> Any:
    options = {"language": language} if language else {}
    try:
        return await client.audio.transcriptions.create(model=model, file=file, **options)
    except openai.NotFoundError as exc:
        log.error("transcription model %r not found: %s", model, exc.message)
        raise TranscriptionRefused(
            f"the transcription model {model!r} does not exist for this API (404); set DODOLENS_TRANSCRIPTION_MODEL "
            "to one it has (`dodolens doctor` checks)") from exc
    except openai.APIStatusError as exc:
        if exc.status_code in UNUSABLE_AUDIO_STATUSES:
            raise TranscriptionRefused(_short(exc.message)) from exc
        raise


def _text_and_tokens(answer: Any) -> tuple[str, int]:
    text = getattr(answer, "text", answer)
    if not isinstance(text, str):
        raise ValueError("transcription: answer without text")
    usage = getattr(answer, "usage", None)
    return text.strip(), int(getattr(usage, "total_tokens", 0) or 0)


def _short(text: str) -> str:
    return text if len(text) <= MAX_DETAIL_CHARS else text[:MAX_DETAIL_CHARS] + "..."
