"""Frames and audio in, transcript and moving inventory out, through the OpenAI API.

Retrying is the ``openai`` client's job: it retries timeouts, connection errors, 408, 409, 429
and 5xx with exponential backoff (0.5 s doubling, capped at 8 s, minus up to 25 % jitter) and,
when the server sends ``Retry-After`` or ``Retry-After-Ms`` of at most 120 s, waits exactly that.
This module only turns what is left into stable error codes that say whether the job may be
retried later, and refuses any answer that is not the inventory the schema asks for.

The frames go to the vision model in overlapping batches asked at once (:func:`describe`), so a
whole home fits the model's context and output cap; ``processors.batches`` plans and merges them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from processors import batches
from processors.prompt import (
    IMAGE_DETAILS,
    build_messages,
    parse_inventory,
    response_format,
)
from processors.speech import MAX_PIECE_S, QUIET_SEARCH_S
from processors.transcription import TimedText, joined, transcribe
from processors.usage import DEFAULT_PRICES, Price, Usage, parse_prices
from schemas.errors import ErrorCode
from schemas.inventory import Inventory
from streams.config import setting

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)

SKIPPED_REASON = "no OpenAI API key or base URL configured (OPENAI_API_KEY / OPENAI_BASE_URL)"
NO_KEY = "no-key"
MAX_MESSAGE_CHARS = 300
REASONING_MODELS = re.compile(r"^(o\d|gpt-[5-9])")
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
SPEECH_MARGIN_S = 5.0
"""Speech this long before a batch's first frame or after its last still goes with it: people name a
thing as they turn to it or just after."""

Progress = Callable[[str, float], Awaitable[None]]
T = TypeVar("T")


@dataclass(frozen=True)
class AnalyzerConfig:
    base_url: str | None = setting("OPENAI_BASE_URL", None, "any OpenAI-compatible server",
                                   shown="unset → analysis skipped")
    api_key: str | None = setting("OPENAI_API_KEY", None, "key of the OpenAI API", shown="unset → analysis skipped",
                                  secret=True)
    vision_model: str = setting("DODOLENS_VISION_MODEL", "gpt-5.4-mini", "model that reads the frames (checked at "
                                "start-up of `up` and `worker`, and by `dodolens doctor`)")
    transcription_model: str = setting("DODOLENS_TRANSCRIPTION_MODEL", "gpt-transcribe", "model that transcribes the "
                                       "audio (checked like the vision model)")
    transcription_language: str | None = setting("DODOLENS_TRANSCRIPTION_LANGUAGE", None, "ISO-639-1 code of the "
                                                 "narration (`fr`, `en`): better transcripts of short or mixed speech",
                                                 shown="unset → detected")
    transcript_piece_s: float = setting("DODOLENS_TRANSCRIPT_PIECE", 90.0, "longest piece of audio per transcription "
                                        "request, in seconds (10 to 1380), cut at a pause; each batch of frames is "
                                        "given the pieces said while it was filmed")
    timeout_s: float = setting("DODOLENS_OPENAI_TIMEOUT", 180.0, "seconds per model call")
    max_retries: int = setting("DODOLENS_OPENAI_MAX_RETRIES", 3, "the client's retries of one model call")
    image_detail: str = setting("DODOLENS_IMAGE_DETAIL", "low", "detail of the frames sent: low, high or auto")
    max_output_tokens: int = setting("DODOLENS_MAX_OUTPUT_TOKENS", 16_384, "`max_completion_tokens` of a vision call "
                                     "(reasoning included); a batch whose answer is cut is split in two and asked again")
    reasoning_effort: str | None = setting("DODOLENS_REASONING_EFFORT", "low", "sent to reasoning models only (gpt-5 "
                                           "family, o-series); empty: not sent", blank=None)
    batch_frames: int = setting("DODOLENS_BATCH_FRAMES", 12, "frames per vision request (consecutive requests share "
                                "one frame)")
    batch_concurrency: int = setting("DODOLENS_BATCH_CONCURRENCY", 4, "requests of one analysis at once (vision "
                                     "batches; transcript pieces)")
    batch_retries: int = setting("DODOLENS_BATCH_RETRIES", 1, "times a failed batch is asked again alone, after the "
                                 "client's own retries")
    prices: Mapping[str, Price] = setting("DODOLENS_PRICES", None, 'JSON `{"model": [input, cached input, output]}` in '
                                          "USD per million tokens, over the defaults; gives the result's estimated cost",
                                          shown="built-in table", parse=parse_prices,
                                          factory=lambda: dict(DEFAULT_PRICES))

    def __post_init__(self) -> None:
        if self.image_detail not in IMAGE_DETAILS:
            raise ValueError(f"image_detail must be one of {IMAGE_DETAILS}, got {self.image_detail!r}")
        if self.transcription_language is not None and not (
                len(self.transcription_language) == 2 and self.transcription_language.isalpha()):
            raise ValueError(f"transcription_language is an ISO-639-1 code such as 'fr', "
                             f"got {self.transcription_language!r}")
        if self.timeout_s <= 0 or self.max_retries < 0 or self.max_output_tokens < 1:
            raise ValueError("timeout_s and max_output_tokens must be positive, max_retries not negative")
        if not 10.0 <= self.transcript_piece_s <= MAX_PIECE_S:
            raise ValueError(f"transcript_piece_s must be from 10 to {MAX_PIECE_S:g} s, got {self.transcript_piece_s}")
        if self.reasoning_effort is not None and self.reasoning_effort not in REASONING_EFFORTS:
            raise ValueError(f"reasoning_effort must be one of {REASONING_EFFORTS}, got {self.reasoning_effort!r}")
        if self.batch_frames < 2 or self.batch_concurrency < 1 or self.batch_retries < 0:
            raise ValueError("batch_frames must be at least 2, batch_concurrency positive, batch_retries not negative")

    @property
    def enabled(self) -> bool:
        """A base URL alone is enough: a local OpenAI-compatible server may need no key."""
        return bool(self.api_key or self.base_url)


class AnalysisError(Exception):
    """The analysis failed; ``retryable`` tells the worker whether running the job again may succeed."""

    def __init__(self, code: str, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


@dataclass
class Analysis:
    inventory: Inventory | None
    model: str | None
    transcript: str | None
    tokens: int
    skipped_reason: str | None
    warnings: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = None
    """Of the vision requests, estimated from ``AnalyzerConfig.prices``; None for an unpriced model."""


def model_client(config: AnalyzerConfig) -> openai.AsyncOpenAI:
    """One client per worker: making one costs tens of milliseconds (TLS context, connection pool),
    as much as a fast model's answer, and a kept one reuses its connections."""
    import openai  # here, not at the top: an import as long as a minute of decoding, for runs that never call it

    return openai.AsyncOpenAI(base_url=config.base_url, api_key=config.api_key or NO_KEY,
                              timeout=config.timeout_s, max_retries=config.max_retries)


async def _no_progress(stage: str, fraction: float) -> None:
    return None


async def analyze(
    frames: list[tuple[float, bytes]],
    audio_wav: bytes | None,
    config: AnalyzerConfig,
    progress: Progress | None = None,
    client: openai.AsyncOpenAI | None = None,
) -> Analysis:
    """Transcribe the audio (when there is some), then ask the vision model for the inventory.

    ``client`` is the worker's long-lived one (see ``model_client``); without it a client is made
    for this call and closed after it.
    """
    if not config.enabled:
        return Analysis(inventory=None, model=None, transcript=None, tokens=0, skipped_reason=SKIPPED_REASON)
    if not frames:
        raise AnalysisError(ErrorCode.ANALYSIS_FAILED, "no frames to analyse", retryable=False)
    if client is None:
        async with model_client(config) as own:
            return await analyze(frames, audio_wav, config, progress, own)
    report = progress or _no_progress
    warnings: list[str] = []
    transcript: str | None = None
    timed: list[TimedText] = []
    tokens = 0
    if audio_wav:
        await report("transcription", 0.05)
        heard = await _call("transcription", transcribe(
            client, audio_wav, model=config.transcription_model, language=config.transcription_language,
            progress=report, piece_seconds=config.transcript_piece_s, concurrency=config.batch_concurrency))
        transcript, tokens, warnings, timed = heard.text, heard.tokens, heard.warnings, heard.timed
        await report("transcription", 0.3)
    vision = await describe(frames, transcript, config, client, report, timed=timed)
    await report("inventory", 1.0)
    model = vision.model or config.vision_model
    return Analysis(
        inventory=vision.inventory,
        model=model,
        transcript=transcript,
        tokens=tokens + vision.usage.total_tokens,
        skipped_reason=None,
        warnings=warnings,
        usage=vision.usage,
        cost_usd=vision.usage.cost_usd(model, config.prices),
    )


def time_needed(frame_count: int, audio_s: float, config: AnalyzerConfig) -> float:
    """Seconds an analysis may take when every request answers within ``timeout_s``: the transcript
    pieces, then the batches (and one round per batch retry), each in rounds of ``batch_concurrency``
    requests at once. What the client's own retries add is not counted: that is not a healthy run."""
    shortest_piece = config.transcript_piece_s - min(QUIET_SEARCH_S, config.transcript_piece_s / 4)
    pieces = math.ceil(audio_s / shortest_piece) if audio_s > 0 else 0
    batch_count = len(batches.plan(frame_count, config.batch_frames)) if frame_count else 0
    rounds = (math.ceil(pieces / config.batch_concurrency) + math.ceil(batch_count / config.batch_concurrency)
              + config.batch_retries)
    return rounds * config.timeout_s


async def _call(stage: str, request: Awaitable[T]) -> T:
    """Await one API call; map what the client's retries could not fix to an AnalysisError."""
    import openai  # loaded already: a client made the request

    try:
        return await request
    except openai.APITimeoutError as exc:
        raise AnalysisError(
            ErrorCode.ANALYSIS_TIMEOUT, f"{stage}: the model API did not answer in time", retryable=True
        ) from exc
    except openai.APIConnectionError as exc:
        raise AnalysisError(
            ErrorCode.ANALYSIS_FAILED, f"{stage}: could not reach the model API ({exc})", retryable=True
        ) from exc
    except openai.APIStatusError as exc:
        message = f"{stage}: {_short(exc.message)}"
        raise AnalysisError(ErrorCode.ANALYSIS_FAILED, message, retryable=_retryable(exc)) from exc
    except (openai.OpenAIError, ValueError) as exc:
        raise AnalysisError(
            ErrorCode.ANALYSIS_FAILED, f"{stage}: unreadable answer from the model API ({_short(str(exc))})",
            retryable=True,
        ) from exc


def _retryable(exc: openai.APIStatusError) -> bool:
    """Rate limits and server errors pass; an exhausted quota, a bad key or a bad request do not."""
    if exc.status_code == 429:
        return getattr(exc, "code", None) != "insufficient_quota"
    return exc.status_code in (408, 409) or exc.status_code >= 500


def _short(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "..."


def _inventory(completion: Any, frame_count: int, max_output_tokens: int) -> Inventory:
    """The inventory in the model's answer, or analysis_failed saying why there is none."""

    def failed(message: str) -> AnalysisError:
        return AnalysisError(ErrorCode.ANALYSIS_FAILED, f"vision: {message}", retryable=False)

    def unreadable(message: str) -> AnalysisError:
        return _Unreadable(ErrorCode.ANALYSIS_FAILED, f"vision: {message}", retryable=False)

    try:
        choice = completion.choices[0]
        message = choice.message
    except (AttributeError, IndexError, TypeError):
        raise failed("the answer has no choices") from None
    if getattr(message, "refusal", None):
        raise failed(f"the model refused: {_short(message.refusal)}")
    if choice.finish_reason == "length":
        raise _Truncated(f"the answer was cut at max_output_tokens={max_output_tokens}")
    if choice.finish_reason == "content_filter":
        raise failed("the answer was withheld by the content filter")
    if not isinstance(message.content, str) or not message.content:
        raise unreadable("the answer is empty")
    try:
        payload = json.loads(message.content)
    except ValueError as exc:
        raise unreadable(f"the answer is not JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise unreadable("the answer is not a JSON object")
    try:
        return parse_inventory(payload, frame_count=frame_count)
    except ValueError as exc:
        raise unreadable(f"the answer does not match the inventory schema ({_short(str(exc))})") from None


class _Unreadable(AnalysisError):
    """An answer that is not the inventory: a batch may be asked again, the job as a whole is not."""


@dataclass
class Vision:
    inventory: Inventory
    model: str | None
    usage: Usage


class _Truncated(Exception):
    """The answer hit ``max_completion_tokens``: the batch holds more than one answer can list."""


def accepts_reasoning_effort(model: str) -> bool:
    """Reasoning models take ``reasoning_effort``; the others answer 400 to it."""
    return REASONING_MODELS.match(model) is not None and "-chat" not in model


async def describe(
    frames: list[tuple[float, bytes]],
    transcript: str | None,
    config: AnalyzerConfig,
    client: openai.AsyncOpenAI,
    progress: Progress | None = None,
    *,
    timed: list[TimedText] | None = None,
) -> Vision:
    """The inventory of the frames, asked in overlapping batches at once and merged (see ``processors.batches``).

    With ``timed`` transcript pieces, each batch is given the pieces said while its frames were filmed
    (see ``said_during``); without, the whole ``transcript``.

    A batch that fails in a way worth retrying, or whose answer is not the inventory, is asked again
    alone (``batch_retries`` times, after the client's own retries) while the others' answers are kept; a batch whose answer was cut at the
    output cap is split in two halves sharing a frame, which are asked again.
    """
    report = progress or _no_progress
    spans = batches.plan(len(frames), config.batch_frames)
    usage = Usage()
    models: list[str] = []
    limit = asyncio.Semaphore(config.batch_concurrency)
    covered = 0

    async def ask(span: range, number: int) -> list[batches.BatchAnswer]:
        nonlocal covered
        for attempt in range(config.batch_retries + 1):
            heard, said_between = (said_during(timed, frames, span) if timed and transcript is not None and len(spans) > 1
                                   else (transcript, None))
            try:
                async with limit:
                    completion = await _call("vision", client.chat.completions.create(**_vision_request(
                        config, frames[span.start:span.stop], heard, (number, len(spans)), said_between)))
                usage.add(completion, frames=len(span))
                inventory = _inventory(completion, len(span), config.max_output_tokens)
            except _Truncated:
                if len(span) < 2:
                    raise AnalysisError(
                        ErrorCode.ANALYSIS_FAILED,
                        f"vision: the answer for one frame was cut at max_output_tokens={config.max_output_tokens}",
                        retryable=False,
                    ) from None
                log.info("vision: the answer for frames %d-%d was cut; asking for each half", span.start, span.stop - 1)
                left, right = await asyncio.gather(*(ask(half, number) for half in batches.halves(span)))
                return left + right
            except AnalysisError as exc:
                if not (exc.retryable or isinstance(exc, _Unreadable)) or attempt == config.batch_retries:
                    raise
                log.warning("vision: retrying frames %d-%d alone: %s", span.start, span.stop - 1, exc.message)
                continue
            model = getattr(completion, "model", None)
            if isinstance(model, str):
                models.append(model)
            covered += len(span)
            await report("vision", 0.35 + 0.55 * min(1.0, covered / (len(frames) + len(spans) - 1)))
            return [batches.BatchAnswer(span, inventory)]
        raise AssertionError("unreachable: the last attempt returns or raises")

    await report("vision", 0.35)
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(ask(span, number)) for number, span in enumerate(spans, 1)]
    except* AnalysisError as failed:
        raise failed.exceptions[0] from None
    answers = [answer for task in tasks for answer in task.result()]
    return Vision(inventory=batches.merge(answers), model=models[0] if models else None, usage=usage)


def said_during(timed: list[TimedText], frames: list[tuple[float, bytes]], span: range,
                margin_s: float = SPEECH_MARGIN_S) -> tuple[str, tuple[float, float]]:
    """What was said while ``frames[span]`` were filmed: the transcript pieces that overlap their
    time span widened by ``margin_s``, joined, and the time those pieces cover. The first batch
    also hears what was said before its frames, and the last what was said after, so every piece
    reaches some batch."""
    first = -math.inf if span.start == 0 else frames[span.start][0] - margin_s
    last = math.inf if span.stop >= len(frames) else frames[span.stop - 1][0] + margin_s
    during = [piece for piece in timed if piece.end_s > first and piece.start_s < last]
    if not during:
        return "", (max(0.0, frames[span.start][0] - margin_s), frames[span.stop - 1][0] + margin_s)
    return joined(during), (during[0].start_s, during[-1].end_s)


def _vision_request(config: AnalyzerConfig, frames: list[tuple[float, bytes]], transcript: str | None,
                    part: tuple[int, int], said_between: tuple[float, float] | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {
        "model": config.vision_model,
        "messages": build_messages(frames, transcript, config.image_detail, part, said_between),
        "response_format": response_format(),
        "max_completion_tokens": config.max_output_tokens,
    }
    if config.reasoning_effort and accepts_reasoning_effort(config.vision_model):
        request["reasoning_effort"] = config.reasoning_effort
    return request
