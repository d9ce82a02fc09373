"""The structured result: the only thing of a session that persists, under 5 KB."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from itertools import accumulate

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

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
    frames_sent: int = Field(0, description="Images sent to the vision model, shared and re-asked frames counted")
    input_tokens: int = Field(0, description="Input tokens of the vision requests, as reported")
    image_tokens: int = Field(0, description="The images' part of the input tokens, as reported (0: not reported)")
    text_tokens: int = Field(0, description="The text's part of the input tokens, as reported (0: not reported)")
    output_tokens: int = Field(0, description="Output tokens (reasoning included) of the vision requests, as reported")
    cost_usd: float | None = Field(None, description="Estimated from the price table; None for an unpriced model")
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

    @field_validator("frames")
    @classmethod
    def _to_centisecond(cls, value: list[float]) -> list[float]:
        return [round(t, 2) for t in value]


def encode_result(result: Result) -> bytes:
    """Compact JSON, refused past 5 KB: the size bound is part of the contract.

    The inventory is written in its compact form (see :mod:`schemas.inventory`): catalogue codes
    instead of labels, items as short arrays, volumes left to the catalogue, so that 200 items fit.
    Frame times are written as ``fd``: the centisecond steps from one frame to the next, in base 36,
    comma-separated (a step of some seconds takes 2 characters, where a time takes 6).
    """
    blob = _compact(result)
    if len(blob) > MAX_RESULT_BYTES:
        raise ResultTooLarge(f"result is {len(blob)} bytes, limit {MAX_RESULT_BYTES}")
    return blob


def fitted(result: Result) -> Result:
    """The result as it can be stored: when the items' whole frame lists pass 5 KB, each item keeps
    its first frame (where to look for it), which is what a customer checking the list needs."""
    if result.inventory is None or len(_compact(result)) <= MAX_RESULT_BYTES:
        return result
    rooms = [room.model_copy(update={"items": [item.model_copy(update={"frames": item.frames[:1]})
                                                for item in room.items]})
             for room in result.inventory.rooms]
    return result.model_copy(update={"inventory": result.inventory.model_copy(update={"rooms": rooms})})


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    rest = abs(number)
    while True:
        rest, digit = divmod(rest, 36)
        text = digits[digit] + text
        if not rest:
            return "-" + text if number < 0 else text


def _compact(result: Result) -> bytes:
    data = result.model_dump(mode="json", exclude={"inventory", "frames"})
    centiseconds = [round(t * 100) for t in result.frames]
    data["fd"] = ",".join(_base36(after - before) for before, after in zip([0, *centiseconds], centiseconds))
    data["inventory"] = None if result.inventory is None else encode_inventory(result.inventory)
    return orjson.dumps(data)


def decode_result(blob: bytes | str, catalogue: CatalogueView | None = None) -> Result:
    """Read a stored result. Its inventory, if any, is rebuilt with ``catalogue`` (volumes, flags).

    The catalogue defaults to the shipped one (``schemas.catalogue.load()``).
    An inventory already in full form (as ``model_dump`` writes it) is read as is.
    """
    data = orjson.loads(blob)
    if isinstance(data, dict) and isinstance(data.get("fd"), str):
        steps = data.pop("fd")
        try:
            data["frames"] = [cs / 100 for cs in accumulate(int(step, 36) for step in steps.split(",") if step)]
        except ValueError as exc:
            raise ValueError(f"malformed frame steps: {exc}") from None
    inventory = data.get("inventory") if isinstance(data, dict) else None
    if isinstance(inventory, dict) and "r" in inventory:
        from schemas.catalogue import load

        data["inventory"] = decode_inventory(inventory, catalogue or load())
    return Result.model_validate(data)
