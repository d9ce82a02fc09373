"""The event envelope and its types (ARCHITECTURE.md, "Event envelope")."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

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


class ErrorData(BaseModel):
    """``data`` of an ``error`` event: a stable code, a human message, and whether to retry."""

    code: str
    message: str
    retryable: bool = False


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
