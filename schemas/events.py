"""The event envelope and its types (ARCHITECTURE.md, "Event envelope")."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import StrEnum
from typing import Any, ClassVar

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


class EventData(BaseModel):
    """The ``data`` of one type of event; ``event_type`` says which, so publishing it needs no other."""

    event_type: ClassVar[EventType]

    def payload(self) -> dict[str, Any]:
        """As JSON, with only the fields the publisher set: an optional field left out stays out."""
        return self.model_dump(mode="json", include=self.model_fields_set)


class SessionCreatedData(EventData):
    event_type = EventType.SESSION_CREATED

    size: int = Field(ge=0, description="Declared size of the video in bytes")
    chunks: int = Field(ge=0, description="Number of chunks expected")
    protocol: str | None = Field(None, description="How the upload arrives when not by the chunk API (tus, tus-partial)")


class ChunkReceivedData(EventData):
    event_type = EventType.CHUNK_RECEIVED

    index: int = Field(ge=0)
    received: int = Field(ge=0, description="Distinct chunks stored so far")
    chunks: int = Field(ge=0)


class UploadCompleteData(EventData):
    event_type = EventType.UPLOAD_COMPLETE

    size: int = Field(ge=0)
    chunks: int = Field(ge=0)


class ProcessingStartedData(EventData):
    event_type = EventType.PROCESSING_STARTED

    stage: str


class FramesExtractedData(EventData):
    event_type = EventType.FRAMES_EXTRACTED

    frames: int = Field(ge=0)
    timestamps: list[float] = Field(default_factory=list)
    duration: float = Field(ge=0)
    audio: bool


class AnalysisProgressData(EventData):
    event_type = EventType.AI_ANALYSIS_PROGRESS

    stage: str
    progress: float = Field(ge=0, le=1)
    warnings: list[str] | None = Field(None, description="What the model's answer lacked or got wrong, when the "
                                       "inventory is done (at most a few, each short)")


class AnalysisCompleteData(EventData):
    event_type = EventType.ANALYSIS_COMPLETE

    result: Result


class ErrorData(EventData):
    """``data`` of an ``error`` event: a stable code, a human message, and whether to retry."""

    event_type = EventType.ERROR

    code: str
    message: str
    retryable: bool = False
    final: bool = Field(True, description="The session ended with this error; false only while an upload can still be completed")
    missing: list[int] | None = Field(None, description="Chunk indexes still missing (code missing_chunks)")


class SessionErasedData(EventData):
    event_type = EventType.SESSION_ERASED

    keys_deleted: int = Field(ge=0)


DATA_MODELS: dict[EventType, type[EventData]] = {model.event_type: model for model in (
    SessionCreatedData, ChunkReceivedData, UploadCompleteData, ProcessingStartedData,
    FramesExtractedData, AnalysisProgressData, AnalysisCompleteData, ErrorData, SessionErasedData,
)}
"""The ``data`` of each event type. Extra fields are allowed, so adding one never breaks a reader."""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
