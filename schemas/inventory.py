"""The moving inventory the model returns and the customer sees.

Totals are derived, never trusted: a ``Room`` recomputes its subtotal and an ``Inventory`` its
totals from quantity × unit volume every time it is validated, in whole litres so that the sum is
exact and does not depend on item order. Unit volumes come from the movers' catalogue (the
processors set them when they parse the model's answer) or, for an item outside the catalogue,
from the model's estimated dimensions (l × w × h).

Values are quantized on validation (volumes to the litre, dimensions to the centimetre, confidence
to the hundredth, frames sorted and unique) so that the compact form below is lossless.

Compact form (:func:`encode_inventory`), for storage and events. Measured: catalogue ids as
strings cost ~13 bytes each and 200 items with their ids did not fit in 5 KB, so an item names its
catalogue entry by a 16-bit code derived from the stable id (:func:`catalogue_code`; the catalogue
refuses two ids with one code). Volumes and handling flags of catalogue items are not stored:
they are recomputed from the catalogue on read, which a reader needs anyway for the labels::

    {"c": "2025.1",                                 catalogue version (absent when unknown)
     "f": 2,                                        frames form 2 (absent: form 1)
     "r": [["Salon", item, item, ...], ...],        room name, then its items
     "total_volume_m3": 12.3, "total_items": 40, "excluded_volume_m3": 2.0}   as computed when written

    catalogue item:         [code, quantity, confidence %, frames]
    out-of-catalogue item:  [label, quantity, confidence %, frames, flags, length m, width m, height m]
    quantity is negative when the customer keeps the item (excluded);
    frames, form 1 (when every index is below 53): bit i set when the item is seen in frame i;
    frames, form 2 (otherwise): the frame index when the item is in one frame, else the list of indexes;
    flags: 1 fragile | 2 needs disassembly | 4 heavy

About 17 bytes an item when a video gives 16 frames (the mask grows by ~3 digits per 10 frames):
a whole result with 200 items over 190 distinct ids measured 4.7 KB. Past 53 frames (a video
sends up to some 150) the mask would outgrow an exact JSON number, so indexes are written as they are.
``encode_result`` refuses anything past 5 KB; :func:`schemas.result.fitted` first keeps only the
first frame of each item when the whole lists do not fit.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

LITRES_PER_M3 = 1000
FRAGILE, NEEDS_DISASSEMBLY, HEAVY = 1, 2, 4
MAX_LABEL_CHARS = 60
MAX_ROOM_NAME_CHARS = 40
MAX_FRAME_INDEX = 999
MASK_FRAME_INDEX = 52
FRAMES_FORM = 2


def litres(volume_m3: float) -> int:
    return round(volume_m3 * LITRES_PER_M3)


def _m3(litre_count: int) -> float:
    return litre_count / LITRES_PER_M3


class Dimensions(BaseModel):
    """The model's estimate of an out-of-catalogue item's bounding box, in metres."""

    model_config = ConfigDict(extra="forbid")

    length_m: float = Field(gt=0, le=20)
    width_m: float = Field(gt=0, le=20)
    height_m: float = Field(gt=0, le=20)

    @field_validator("length_m", "width_m", "height_m")
    @classmethod
    def _to_centimetre(cls, value: float) -> float:
        return max(round(value, 2), 0.01)

    @property
    def volume_m3(self) -> float:
        return _m3(litres(self.length_m * self.width_m * self.height_m))


class Item(BaseModel):
    """One inventory line: a catalogue id (or, outside the catalogue, a label and dimensions) × quantity."""

    model_config = ConfigDict(extra="forbid")

    catalogue_id: str | None = Field(None, description="Catalogue id; None for an item outside the catalogue")
    label: str | None = Field(
        None, max_length=MAX_LABEL_CHARS,
        description="The model's name for an out-of-catalogue item; catalogue items are named by their id",
    )
    quantity: int = Field(ge=1, le=9999)
    volume_m3: float = Field(ge=0, description="Volume of one unit in m³ (catalogue volume, or l × w × h)")
    fragile: bool = False
    needs_disassembly: bool = False
    heavy: bool = False
    confidence: float = Field(1.0, ge=0, le=1)
    frames: list[int] = Field(default_factory=list, description="Indexes of the frames the item was seen in")
    excluded: bool = Field(False, description="The customer said it stays")
    out_of_catalogue: bool = Field(False, description="Not in the catalogue: volume estimated from dimensions")
    dimensions: Dimensions | None = Field(None, description="Estimated size, for out-of-catalogue items only")

    @model_validator(mode="before")
    @classmethod
    def _derive(cls, data: Any) -> Any:
        """Fill what follows from the rest: the flag from the missing id, the volume from the dimensions."""
        if isinstance(data, Mapping):
            data = dict(data)
            data.setdefault("out_of_catalogue", data.get("catalogue_id") is None)
            dims = data.get("dimensions")
            if data.get("volume_m3") is None and dims is not None:
                try:
                    data["volume_m3"] = Dimensions.model_validate(dims).volume_m3
                except ValueError:
                    pass  # field validation reports the bad dimensions
        return data

    @field_validator("volume_m3")
    @classmethod
    def _to_litre(cls, value: float) -> float:
        return _m3(litres(value))

    @field_validator("confidence")
    @classmethod
    def _to_hundredth(cls, value: float) -> float:
        return round(value, 2)

    @field_validator("frames")
    @classmethod
    def _sorted_unique(cls, value: list[int]) -> list[int]:
        if any(not 0 <= index <= MAX_FRAME_INDEX for index in value):
            raise ValueError(f"frame indexes are between 0 and {MAX_FRAME_INDEX}")
        return sorted(set(value))

    @model_validator(mode="after")
    def _consistent(self) -> Item:
        if self.out_of_catalogue != (self.catalogue_id is None):
            raise ValueError("out_of_catalogue is true exactly when there is no catalogue_id")
        if self.out_of_catalogue:
            if not self.label or self.dimensions is None:
                raise ValueError("an out-of-catalogue item needs a label and dimensions")
            if litres(self.volume_m3) != litres(self.dimensions.volume_m3):
                raise ValueError("an out-of-catalogue item's volume is length × width × height")
        elif self.label is not None or self.dimensions is not None:
            raise ValueError("a catalogue item is named and sized by its catalogue id")
        return self

    @property
    def total_m3(self) -> float:
        return _m3(self.quantity * litres(self.volume_m3))


class Room(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=MAX_ROOM_NAME_CHARS)
    items: list[Item] = Field(default_factory=list)
    subtotal_m3: float = Field(0.0, description="Derived: volume of the items that move (not excluded)")

    @model_validator(mode="after")
    def _subtotal(self) -> Room:
        self.subtotal_m3 = _m3(sum(i.quantity * litres(i.volume_m3) for i in self.items if not i.excluded))
        return self


class Inventory(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rooms: list[Room] = Field(default_factory=list)
    catalogue_version: str | None = None
    total_items: int = Field(0, description="Derived: units that move")
    total_volume_m3: float = Field(0.0, description="Derived: m³ that move")
    excluded_volume_m3: float = Field(0.0, description="Derived: m³ the customer keeps")

    @model_validator(mode="after")
    def _totals(self) -> Inventory:
        items = [item for room in self.rooms for item in room.items]
        self.total_items = sum(i.quantity for i in items if not i.excluded)
        self.total_volume_m3 = _m3(sum(i.quantity * litres(i.volume_m3) for i in items if not i.excluded))
        self.excluded_volume_m3 = _m3(sum(i.quantity * litres(i.volume_m3) for i in items if i.excluded))
        return self


def with_totals(inventory: Inventory) -> Inventory:
    """A revalidated copy, for inventories changed with ``model_copy(update=...)`` (which skips validation)."""
    return Inventory.model_validate(inventory.model_dump())


class CatalogueEntry(Protocol):
    """What decoding needs of a catalogue entry (``schemas.catalogue.CatalogueItem`` has it)."""

    @property
    def volume_m3(self) -> float: ...
    @property
    def fragile(self) -> bool: ...
    @property
    def needs_disassembly(self) -> bool: ...
    @property
    def heavy(self) -> bool: ...


class CatalogueView(Protocol):
    """The catalogue as decoding sees it; injected because ``schemas`` imports nothing of ours."""

    @property
    def version(self) -> str: ...
    @property
    def items(self) -> Mapping[str, CatalogueEntry]: ...


def catalogue_code(catalogue_id: str) -> int:
    """The 16-bit storage code of a catalogue id: stable because ids are, short because ids are not."""
    return zlib.crc32(catalogue_id.encode("utf-8")) & 0xFFFF


def encode_inventory(inventory: Inventory) -> dict[str, Any]:
    """The compact, JSON-ready form described in the module docstring (no catalogue needed)."""
    out: dict[str, Any] = {} if inventory.catalogue_version is None else {"c": inventory.catalogue_version}
    masked = all(index <= MASK_FRAME_INDEX for room in inventory.rooms for item in room.items for index in item.frames)
    if not masked:
        out["f"] = FRAMES_FORM
    out["r"] = [[room.name, *(_encode_item(item, masked) for item in room.items)] for room in inventory.rooms]
    out |= {
        "total_volume_m3": inventory.total_volume_m3,
        "total_items": inventory.total_items,
        "excluded_volume_m3": inventory.excluded_volume_m3,
    }
    return out


def _encode_item(item: Item, masked: bool) -> list[Any]:
    common = [
        -item.quantity if item.excluded else item.quantity,
        round(item.confidence * 100),
        sum(1 << index for index in item.frames) if masked
        else item.frames[0] if len(item.frames) == 1 else item.frames,
    ]
    if item.catalogue_id is not None:
        return [catalogue_code(item.catalogue_id), *common]
    dims = item.dimensions
    assert dims is not None, "validated: an out-of-catalogue item has dimensions"
    flags = FRAGILE * item.fragile | NEEDS_DISASSEMBLY * item.needs_disassembly | HEAVY * item.heavy
    return [item.label, *common, flags, dims.length_m, dims.width_m, dims.height_m]


def decode_inventory(data: Mapping[str, Any], catalogue: CatalogueView) -> Inventory:
    """Rebuild the inventory from its compact form, volumes and flags from ``catalogue``.

    ``ValueError`` when the form is malformed, names a code the catalogue lacks, or (same catalogue
    version) its written totals disagree with its items.
    """
    rows = data.get("r")
    if not isinstance(rows, list) or not all(
        isinstance(row, list) and row and all(isinstance(cell, list) for cell in row[1:]) for row in rows
    ):
        raise ValueError("malformed compact inventory: 'r' must be a list of [room name, *items]")
    by_code = {catalogue_code(cid): (cid, entry) for cid, entry in catalogue.items.items()}
    frames = _frames if data.get("f") == FRAMES_FORM else _masked_frames
    try:
        rooms = [Room(name=row[0], items=[_decode_item(cell, by_code, frames) for cell in row[1:]]) for row in rows]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed compact inventory: {exc}") from exc
    inventory = Inventory(rooms=rooms, catalogue_version=data.get("c"))
    written = (data.get("total_volume_m3"), data.get("total_items"), data.get("excluded_volume_m3"))
    derived = (inventory.total_volume_m3, inventory.total_items, inventory.excluded_volume_m3)
    if inventory.catalogue_version == catalogue.version and written != derived:
        raise ValueError(f"compact inventory totals {written} disagree with its items {derived}")
    return inventory


def _frames(stored: Any) -> list[int]:
    if isinstance(stored, bool) or not isinstance(stored, (int, list)):
        raise ValueError(f"frames {stored!r} are neither an index nor a list of indexes")
    return [stored] if isinstance(stored, int) else stored


def _masked_frames(mask: Any) -> list[int]:
    if isinstance(mask, bool) or not isinstance(mask, int) or mask >> (MASK_FRAME_INDEX + 1):
        raise ValueError(f"frame mask {mask!r} is not a mask of frames 0 to {MASK_FRAME_INDEX}")
    return [index for index in range(MASK_FRAME_INDEX + 1) if mask >> index & 1]


def _decode_item(cell: list[Any], by_code: Mapping[int, tuple[str, CatalogueEntry]],
                 frames: Callable[[Any], list[int]]) -> Item:
    key, quantity, confidence, stored = cell[:4]
    common = {
        "quantity": abs(quantity),
        "excluded": quantity < 0,
        "confidence": confidence / 100,
        "frames": frames(stored),
    }
    if isinstance(key, str):
        flags, length, width, height = cell[4:8]
        return Item(
            label=key,
            dimensions=Dimensions(length_m=length, width_m=width, height_m=height),
            fragile=bool(flags & FRAGILE),
            needs_disassembly=bool(flags & NEEDS_DISASSEMBLY),
            heavy=bool(flags & HEAVY),
            **common,
        )
    if isinstance(key, bool) or key not in by_code:
        raise ValueError(f"catalogue code {key!r} is not in this catalogue")
    catalogue_id, entry = by_code[key]
    return Item(
        catalogue_id=catalogue_id,
        volume_m3=entry.volume_m3,
        fragile=entry.fragile,
        needs_disassembly=entry.needs_disassembly,
        heavy=entry.heavy,
        **common,
    )
