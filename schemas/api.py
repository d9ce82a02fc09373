"""HTTP request and response bodies (ARCHITECTURE.md, "HTTP and WebSocket API")."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CreateSession(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int = Field(gt=0, strict=True, description="Total size of the video in bytes")
    filename: str | None = Field(None, max_length=255, description="Accepted, never stored")
    content_type: str | None = Field(None, max_length=100)


class SessionCreated(BaseModel):
    session_id: str
    token: str
    chunk_size: int
    max_chunks: int
    expires_at: float


class ChunkStored(BaseModel):
    session_id: str
    index: int
    stored: bool = Field(description="False when this index was already stored (a harmless repeat)")


class Complete(BaseModel):
    model_config = ConfigDict(extra="forbid")

    chunks: int = Field(ge=1, strict=True)
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")


class Accepted(BaseModel):
    session_id: str
    state: str


class SessionStatus(BaseModel):
    session_id: str
    state: str
    size: int
    chunk_size: int
    expected_chunks: int
    received_chunks: int
    received_bytes: int
    missing_chunks: list[int]
    created_at: float
    updated_at: float
    error: dict[str, str] | None = None


class ErasureReceipt(BaseModel):
    session_id: str
    erased_at: float
    redis_keys_deleted: list[str]
    result_deleted: bool


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
