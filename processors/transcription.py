"""The soundtrack to text through the OpenAI transcription API, however long the video.

The audio goes as compact Ogg/Opus in pieces of bounded duration cut at pauses
(``processors.speech``), transcribed a few at once and kept with each piece's start and end, so
each batch of frames can be given what was said while it was filmed; the whole text joins them in
order, each marked with its start time.
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
from typing import TYPE_CHECKING, Any

from processors.speech import (MAX_PIECE_S, MAX_REQUEST_BYTES, PIECE_S, REQUEST_OVERHEAD_BYTES, SpeechPiece, clock_time,
                               speech_pieces)
from streams.threads import in_thread

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)

UNUSABLE_AUDIO_STATUSES = frozenset({400, 413, 415, 422})
MAX_DETAIL_CHARS = 200

Progress = Callable[[str, float], Awaitable[None]]


@dataclass(frozen=True)
class TimedText:
    """What was said from ``start_s`` to ``end_s`` on the video's timeline (one piece's transcript)."""

    start_s: float
    end_s: float
    text: str


@dataclass
class Transcript:
    text: str | None
    tokens: int = 0
    warnings: list[str] = field(default_factory=list)
    timed: list[TimedText] = field(default_factory=list)
    """The pieces transcribed, in order, with their times; empty when nothing was heard."""


class TranscriptionRefused(Exception):
    """The API will not transcribe this audio with this model; trying again would not help."""


async def transcribe(
    client: openai.AsyncOpenAI,
    audio_wav: bytes,
    *,
    model: str,
    language: str | None = None,
    progress: Progress | None = None,
    piece_seconds: float = PIECE_S,
    concurrency: int = 4,
    max_seconds: float = MAX_PIECE_S,
    max_bytes: int = MAX_REQUEST_BYTES - REQUEST_OVERHEAD_BYTES,
) -> Transcript:
    """The transcript of the soundtrack, timed piece by piece, with a warning for every part of it that is missing.

    Pieces are asked ``concurrency`` at once; a piece the API refuses ends the transcript there.
    """
    try:
        pieces = await in_thread(speech_pieces, audio_wav, piece_seconds=piece_seconds,
                                 max_seconds=max_seconds, max_bytes=max_bytes)
    except ValueError as exc:
        return Transcript(None, warnings=[f"transcription skipped: the audio could not be encoded ({exc})"])
    if not pieces:
        return Transcript(None)
    limit = asyncio.Semaphore(max(1, concurrency))
    refusals: list[TranscriptionRefused] = []
    done = 0

    async def hear(piece: SpeechPiece) -> Any:
        """The piece's answer; None once the API has refused a piece (the others would be refused too)."""
        nonlocal done
        async with limit:
            if refusals:
                return None
            try:
                answer = await _create(client, model, language, (piece.filename, piece.data, piece.content_type))
            except TranscriptionRefused as exc:
                refusals.append(exc)
                return None
        done += 1
        if progress is not None and done < len(pieces):
            await progress("transcription", 0.05 + 0.25 * done / len(pieces))
        return answer

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(hear(piece)) for piece in pieces]
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    out = Transcript(None)
    for piece, task in zip(pieces, tasks):
        if (answer := task.result()) is None:
            out.warnings.append(f"transcript cut at {clock_time(piece.start_s)}: {refusals[0]}" if out.timed
                                else f"transcription skipped: {refusals[0]}")
            log.warning("transcript incomplete: %s", refusals[0])
            break
        text, tokens = _text_and_tokens(answer)
        out.tokens += tokens
        out.timed.append(TimedText(piece.start_s, piece.start_s + piece.duration_s, text))
    if out.timed:
        out.text = joined(out.timed)
    return out


def joined(timed: list[TimedText]) -> str:
    """The pieces' texts in order, each marked ``[mm:ss]`` with its start when there are several."""
    if len(timed) == 1:
        return timed[0].text
    return " ".join(f"[{clock_time(piece.start_s)}] {piece.text}" for piece in timed if piece.text)


async def _create(client: openai.AsyncOpenAI, model: str, language: str | None, file: tuple[str, bytes, str]) -> Any:
    import openai  # loaded already: the caller made the client

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
