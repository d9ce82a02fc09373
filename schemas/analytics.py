"""Anonymized events for analysts (``dodo:analytics``): what happened, never who or what was filmed.

A session is known only by a keyed pseudonym. Tokens, IPs, filenames, transcripts, error messages
and the model's free text (item labels, room names it invented) never appear; inventory aggregates
(catalogue ids, counts, volumes) do. Every data model forbids extra fields, so nothing can slip in.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.events import EventType

ANALYTICS_VERSION = 1
SLUG = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
"""Catalogue ids and room kinds: short identifiers, never sentences."""
PSEUDONYM = r"^[0-9a-f]{20}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SizeStats(_Strict):
    size: int = Field(ge=0)
    chunks: int = Field(ge=0)


class ChunkStats(_Strict):
    index: int = Field(ge=0)
    received: int = Field(ge=0)
    chunks: int = Field(ge=0)


class StageStats(_Strict):
    stage: str = Field(pattern=SLUG)


class FramesStats(_Strict):
    frames: int = Field(ge=0)
    duration: float = Field(ge=0)
    audio: bool


class ProgressStats(_Strict):
    stage: str = Field(pattern=SLUG)
    progress: float = Field(ge=0, le=1)


class VideoStats(_Strict):
    duration_s: float = Field(ge=0)
    size_bytes: int = Field(ge=0)
    width: int = Field(ge=0)
    height: int = Field(ge=0)
    codec: str = Field(max_length=32)
    container: str = Field(max_length=64)
    has_audio: bool


class TimingStats(_Strict):
    upload_s: float = 0.0
    queue_s: float = 0.0
    decode_s: float = 0.0
    analysis_s: float = 0.0
    total_s: float = 0.0


class ItemStats(_Strict):
    catalogue_id: str | None = Field(None, pattern=SLUG, description="None for an item outside the catalogue")
    quantity: int = Field(ge=0)
    volume_m3: float = Field(ge=0, description="Volume of one unit")
    fragile: bool = False
    needs_disassembly: bool = False
    excluded: bool = False


class RoomStats(_Strict):
    kind: str = Field(pattern=SLUG, description="Room kind when it is an identifier, else 'other'")
    items: list[ItemStats] = Field(default_factory=list)
    subtotal_m3: float = Field(0.0, ge=0)


class InventoryStats(_Strict):
    rooms: list[RoomStats] = Field(default_factory=list)
    total_items: int = Field(0, ge=0)
    total_volume_m3: float = Field(0.0, ge=0)
    excluded_volume_m3: float = Field(0.0, ge=0)


class AnalysisStats(_Strict):
    status: str = Field(pattern=SLUG)
    model: str | None = Field(None, max_length=100)
    tokens: int = Field(0, ge=0)
    transcript_chars: int = Field(0, ge=0, description="Length only; the transcript itself is never kept")
    frames: int = Field(0, ge=0)
    frames_sent: int = Field(0, ge=0)
    input_tokens: int = Field(0, ge=0)
    image_tokens: int = Field(0, ge=0)
    text_tokens: int = Field(0, ge=0)
    output_tokens: int = Field(0, ge=0)
    cost_usd: float | None = Field(None, ge=0)
    video: VideoStats | None = None
    timings: TimingStats = Field(default_factory=TimingStats)
    inventory: InventoryStats | None = None


class ErrorStats(_Strict):
    code: str = Field(pattern=SLUG)
    retryable: bool = False
    final: bool = Field(True, description="The session ended with this error")
    missing: int | None = Field(None, ge=0, description="How many chunks were missing, for missing_chunks")


class ErasedStats(_Strict):
    keys_deleted: int = Field(ge=0)


DATA_MODELS: dict[EventType, type[BaseModel]] = {
    EventType.SESSION_CREATED: SizeStats,
    EventType.CHUNK_RECEIVED: ChunkStats,
    EventType.UPLOAD_COMPLETE: SizeStats,
    EventType.PROCESSING_STARTED: StageStats,
    EventType.FRAMES_EXTRACTED: FramesStats,
    EventType.AI_ANALYSIS_PROGRESS: ProgressStats,
    EventType.ANALYSIS_COMPLETE: AnalysisStats,
    EventType.ERROR: ErrorStats,
    EventType.SESSION_ERASED: ErasedStats,
}


class AnalyticsEvent(_Strict):
    """One anonymized event; ``data`` is checked against the model of its ``type``."""

    v: int = ANALYTICS_VERSION
    type: EventType
    session: str = Field(pattern=PSEUDONYM, description="Keyed pseudonym of the session, stable within a deployment")
    timestamp: datetime
    data: dict[str, Any] = Field(description="Per-type statistics: see the analytics-data schemas")

    @model_validator(mode="after")
    def _data_matches_type(self) -> "AnalyticsEvent":
        self.data = DATA_MODELS[self.type].model_validate(self.data).model_dump(mode="json")
        return self
