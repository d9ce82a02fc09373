"""The structured result: the only thing of a session that persists, under 5 KB."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import orjson
from pydantic import BaseModel, ConfigDict, Field

from schemas.inventory import CatalogueView, Inventory, decode_inventory, encode_inventory

RESULT_VERSION = 1
MAX_RESULT_BYTES = 5 * 1024


class ResultTooLarge(ValueError):
    """The encoded result exceeds :data:`MAX_RESULT_BYTES`."""


class AnalysisStatus(StrEnum):
    COMPLETE = "complete"
    SKIPPED = "skipped"


class VideoInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    duration_s: float
    size_bytes: int
    width: int
    height: int
    codec: str
    container: str
    rotation: int = 0
    has_audio: bool = False


class AnalysisInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: AnalysisStatus
    reason: str | None = Field(None, description="Why the analysis was skipped, when it was")
    model: str | None = None
    transcript_chars: int = 0
    tokens: int = 0
    warnings: list[str] = Field(default_factory=list,
                                description="What the analysis did without: a transcript skipped, cut or split")


class Timings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    upload_s: float = 0.0
    queue_s: float = 0.0
    decode_s: float = 0.0
    analysis_s: float = 0.0
    total_s: float = 0.0


class Result(BaseModel):
    model_config = ConfigDict(extra="forbid")

    v: int = RESULT_VERSION
    session_id: str
    created_at: datetime
    video: VideoInfo
    frames: list[float] = Field(description="Timestamp in seconds of each analysed frame")
    analysis: AnalysisInfo
    inventory: Inventory | None = None
    timings: Timings


def encode_result(result: Result) -> bytes:
    """Compact JSON, refused past 5 KB: the size bound is part of the contract.

    The inventory is written in its compact form (see :mod:`schemas.inventory`): catalogue codes
    instead of labels, items as short arrays, volumes left to the catalogue, so that 200 items fit.
    """
    data = result.model_dump(mode="json", exclude={"inventory"})
    data["inventory"] = None if result.inventory is None else encode_inventory(result.inventory)
    blob = orjson.dumps(data)
    if len(blob) > MAX_RESULT_BYTES:
        raise ResultTooLarge(f"result is {len(blob)} bytes, limit {MAX_RESULT_BYTES}")
    return blob


def decode_result(blob: bytes | str, catalogue: CatalogueView | None = None) -> Result:
    """Read a stored result. Its inventory, if any, is rebuilt with ``catalogue`` (volumes, flags).

    The catalogue defaults to the shipped one (``schemas.catalogue.load()``).
    An inventory already in full form (as ``model_dump`` writes it) is read as is.
    """
    data = orjson.loads(blob)
    inventory = data.get("inventory") if isinstance(data, dict) else None
    if isinstance(inventory, dict) and "r" in inventory:
        from schemas.catalogue import load

        data["inventory"] = decode_inventory(inventory, catalogue or load())
    return Result.model_validate(data)
