"""The event envelope and its types (ARCHITECTURE.md, "Event envelope")."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.result import Result

EVENT_VERSION = 1


class EventType(StrEnum):
    SESSION_CREATED = "session_created"
    CHUNK_RECEIVED = "chunk_received"
    UPLOAD_COMPLETE = "upload_complete"
    PROCESSING_STARTED = "processing_started"
    FRAMES_EXTRACTED = "frames_extracted"
    AI_ANALYSIS_PROGRESS = "ai_analysis_progress"
    ANALYSIS_COMPLETE = "analysis_complete"
    ERROR = "error"
    SESSION_ERASED = "session_erased"


TERMINAL_TYPES = frozenset({EventType.ANALYSIS_COMPLETE, EventType.ERROR, EventType.SESSION_ERASED})


class Event(BaseModel):
    """One event as clients, the gateway and analysts see it."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Redis stream id of the event in the session's event stream")
    type: EventType
    session_id: str
    timestamp: datetime
    data: dict[str, Any] = Field(default_factory=dict)
    v: int = EVENT_VERSION


class SessionCreatedData(BaseModel):
    size: int = Field(ge=0, description="Declared size of the video in bytes")
    chunks: int = Field(ge=0, description="Number of chunks expected")


class ChunkReceivedData(BaseModel):
    index: int = Field(ge=0)
    received: int = Field(ge=0, description="Distinct chunks stored so far")
    chunks: int = Field(ge=0)


class UploadCompleteData(BaseModel):
    size: int = Field(ge=0)
    chunks: int = Field(ge=0)


class ProcessingStartedData(BaseModel):
    stage: str


class FramesExtractedData(BaseModel):
    frames: int = Field(ge=0)
    timestamps: list[float] = Field(default_factory=list)
    duration: float = Field(ge=0)
    audio: bool


class AnalysisProgressData(BaseModel):
    stage: str
    progress: float = Field(ge=0, le=1)


class AnalysisCompleteData(BaseModel):
    result: Result


class ErrorData(BaseModel):
    """``data`` of an ``error`` event: a stable code, a human message, and whether to retry."""

    code: str
    message: str
    retryable: bool = False
    final: bool = Field(True, description="The session ended with this error; false only while an upload can still be completed")
    missing: list[int] | None = Field(None, description="Chunk indexes still missing (code missing_chunks)")


class SessionErasedData(BaseModel):
    keys_deleted: int = Field(ge=0)


DATA_MODELS: dict[EventType, type[BaseModel]] = {
    EventType.SESSION_CREATED: SessionCreatedData,
    EventType.CHUNK_RECEIVED: ChunkReceivedData,
    EventType.UPLOAD_COMPLETE: UploadCompleteData,
    EventType.PROCESSING_STARTED: ProcessingStartedData,
    EventType.FRAMES_EXTRACTED: FramesExtractedData,
    EventType.AI_ANALYSIS_PROGRESS: AnalysisProgressData,
    EventType.ANALYSIS_COMPLETE: AnalysisCompleteData,
    EventType.ERROR: ErrorData,
    EventType.SESSION_ERASED: SessionErasedData,
}
"""The ``data`` of each event type. Extra fields are allowed, so adding one never breaks a reader."""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
