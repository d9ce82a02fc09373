"""Frames and audio in, transcript and moving inventory out, through the OpenAI API.

Retrying is the ``openai`` client's job: it retries timeouts, connection errors, 408, 409, 429
and 5xx with exponential backoff (0.5 s doubling, capped at 8 s, minus up to 25 % jitter) and,
when the server sends ``Retry-After`` or ``Retry-After-Ms`` of at most 120 s, waits exactly that.
This module only turns what is left into stable error codes that say whether the job may be
retried later, and refuses any answer that is not the inventory the schema asks for.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from processors.prompt import (
    IMAGE_DETAILS,
    build_messages,
    parse_inventory,
    response_format,
)
from processors.transcription import transcribe
from schemas.errors import ErrorCode
from schemas.inventory import Inventory
from streams.config import setting

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)

SKIPPED_REASON = "no OpenAI API key or base URL configured (OPENAI_API_KEY / OPENAI_BASE_URL)"
NO_KEY = "no-key"
MAX_MESSAGE_CHARS = 300

Progress = Callable[[str, float], Awaitable[None]]
T = TypeVar("T")


@dataclass(frozen=True)
class AnalyzerConfig:
    base_url: str | None = setting("OPENAI_BASE_URL", None, "any OpenAI-compatible server",
                                   shown="unset → analysis skipped")
    api_key: str | None = setting("OPENAI_API_KEY", None, "key of the OpenAI API", shown="unset → analysis skipped",
                                  secret=True)
    vision_model: str = setting("DODOLENS_VISION_MODEL", "gpt-4o-mini", "model that reads the frames (checked at "
                                "start-up of `up` and `worker`, and by `dodolens doctor`)")
    transcription_model: str = setting("DODOLENS_TRANSCRIPTION_MODEL", "gpt-transcribe", "model that transcribes the "
                                       "audio (checked like the vision model)")
    transcription_language: str | None = setting("DODOLENS_TRANSCRIPTION_LANGUAGE", None, "ISO-639-1 code of the "
                                                 "narration (`fr`, `en`): better transcripts of short or mixed speech",
                                                 shown="unset → detected")
    timeout_s: float = setting("DODOLENS_OPENAI_TIMEOUT", 60.0, "seconds per model call")
    max_retries: int = setting("DODOLENS_OPENAI_MAX_RETRIES", 3, "retries per model call")
    image_detail: str = setting("DODOLENS_IMAGE_DETAIL", "low", "detail of the frames sent: low, high or auto")
    max_output_tokens: int = 4096

    def __post_init__(self) -> None:
        if self.image_detail not in IMAGE_DETAILS:
            raise ValueError(f"image_detail must be one of {IMAGE_DETAILS}, got {self.image_detail!r}")
        if self.transcription_language is not None and not (
                len(self.transcription_language) == 2 and self.transcription_language.isalpha()):
            raise ValueError(f"transcription_language is an ISO-639-1 code such as 'fr', "
                             f"got {self.transcription_language!r}")
        if self.timeout_s <= 0 or self.max_retries < 0 or self.max_output_tokens < 1:
            raise ValueError("timeout_s and max_output_tokens must be positive, max_retries not negative")

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
    tokens = 0
    if audio_wav:
        await report("transcription", 0.05)
        heard = await _call("transcription", transcribe(client, audio_wav, model=config.transcription_model,
                                                        language=config.transcription_language, progress=report))
        transcript, tokens, warnings = heard.text, heard.tokens, heard.warnings
        await report("transcription", 0.3)
    await report("vision", 0.35)
    completion = await _call(
        "vision",
        client.chat.completions.create(
            model=config.vision_model,
            messages=build_messages(frames, transcript, config.image_detail),
            response_format=response_format(),
            max_completion_tokens=config.max_output_tokens,
        ),
    )
    await report("vision", 0.9)
    inventory = _inventory(completion, len(frames), config.max_output_tokens)
    tokens += _chat_tokens(completion)
    await report("inventory", 1.0)
    model = getattr(completion, "model", None)
    return Analysis(
        inventory=inventory,
        model=model if isinstance(model, str) else config.vision_model,
        transcript=transcript,
        tokens=tokens,
        skipped_reason=None,
        warnings=warnings,
    )


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


def _chat_tokens(completion: Any) -> int:
    return int(getattr(getattr(completion, "usage", None), "total_tokens", 0) or 0)


def _inventory(completion: Any, frame_count: int, max_output_tokens: int) -> Inventory:
    """The inventory in the model's answer, or analysis_failed saying why there is none."""

    def failed(message: str) -> AnalysisError:
        return AnalysisError(ErrorCode.ANALYSIS_FAILED, f"vision: {message}", retryable=False)

    try:
        choice = completion.choices[0]
        message = choice.message
    except (AttributeError, IndexError, TypeError):
        raise failed("the answer has no choices") from None
    if getattr(message, "refusal", None):
        raise failed(f"the model refused: {_short(message.refusal)}")
    if choice.finish_reason == "length":
        raise failed(f"the answer was cut at max_output_tokens={max_output_tokens}")
    if choice.finish_reason == "content_filter":
        raise failed("the answer was withheld by the content filter")
    if not isinstance(message.content, str) or not message.content:
        raise failed("the answer is empty")
    try:
        payload = json.loads(message.content)
    except ValueError as exc:
        raise failed(f"the answer is not JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise failed("the answer is not a JSON object")
    try:
        return parse_inventory(payload, frame_count=frame_count)
    except ValueError as exc:
        raise failed(f"the answer does not match the inventory schema ({_short(str(exc))})") from None
