"""The movers' catalogue: household items with the standard volume a mover counts for each.

Why a catalogue: the model names what it sees, movers quote cubic metres. The model picks an id
from this list (an enum in the JSON schema) and the volume comes from here, never from the model's
arithmetic, so two analyses of the same video agree on the total. The data lives in
``data/catalogue.json`` so it can be reviewed and extended without touching code; ids are stable
(stored results refer to them by a code derived from the id, see ``schemas.inventory``), so
entries are added or relabelled, never renamed or removed; changing a volume means a new version.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from schemas.inventory import catalogue_code

CATALOGUE_PATH = Path(__file__).with_name("data") / "catalogue.json"
ID_PATTERN = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
LANGUAGES = ("fr", "en")


class CatalogueError(ValueError):
    """The catalogue data breaks one of its rules (ids, rooms, volumes)."""


@dataclass(frozen=True, slots=True)
class CatalogueItem:
    id: str
    fr: str
    en: str
    rooms: tuple[str, ...]
    volume_m3: float
    fragile: bool
    needs_disassembly: bool
    heavy: bool

    def label(self, lang: str = "fr") -> str:
        """The display name in ``lang`` (``fr`` or ``en``); French is the movers' language here."""
        if lang not in LANGUAGES:
            raise ValueError(f"unknown language {lang!r}; expected one of {LANGUAGES}")
        return self.fr if lang == "fr" else self.en


@dataclass(frozen=True, slots=True)
class Catalogue:
    version: str
    rooms: tuple[str, ...]
    items: Mapping[str, CatalogueItem]


def parse_catalogue(data: Mapping[str, Any]) -> Catalogue:
    """Validate raw catalogue data and build the immutable catalogue (pure: tested on bad data too)."""
    version = data.get("version")
    if not isinstance(version, str) or not version:
        raise CatalogueError("the catalogue needs a non-empty string version")
    rooms = tuple(data.get("rooms") or ())
    if not rooms or len(set(rooms)) != len(rooms) or not all(isinstance(r, str) and ID_PATTERN.match(r) for r in rooms):
        raise CatalogueError("rooms must be a non-empty list of unique snake_case ids")
    items: dict[str, CatalogueItem] = {}
    codes: dict[int, str] = {}
    for raw in data.get("items") or ():
        item = _parse_item(raw, frozenset(rooms))
        if item.id in items:
            raise CatalogueError(f"duplicate id {item.id!r}")
        code = catalogue_code(item.id)
        if code in codes:
            raise CatalogueError(f"{item.id!r} and {codes[code]!r} share storage code {code}: choose another id")
        items[item.id] = item
        codes[code] = item.id
    if not items:
        raise CatalogueError("the catalogue has no items")
    return Catalogue(version=version, rooms=rooms, items=MappingProxyType(items))


def _parse_item(raw: Mapping[str, Any], rooms: frozenset[str]) -> CatalogueItem:
    item_id = raw.get("id")
    if not isinstance(item_id, str) or not ID_PATTERN.match(item_id):
        raise CatalogueError(f"id {item_id!r} is not snake_case")
    for lang in LANGUAGES:
        if not isinstance(raw.get(lang), str) or not raw[lang].strip():
            raise CatalogueError(f"{item_id}: missing {lang} label")
    hints = tuple(raw.get("rooms") or ())
    if not hints or not set(hints) <= rooms:
        raise CatalogueError(f"{item_id}: room hints {hints!r} must be known rooms")
    volume = raw.get("volume_m3")
    if isinstance(volume, bool) or not isinstance(volume, (int, float)) or not 0 < volume <= 10:
        raise CatalogueError(f"{item_id}: volume_m3 must be in (0, 10], got {volume!r}")
    flags = {name: raw.get(name) for name in ("fragile", "needs_disassembly", "heavy")}
    if not all(isinstance(value, bool) for value in flags.values()):
        raise CatalogueError(f"{item_id}: fragile, needs_disassembly and heavy must be booleans")
    return CatalogueItem(id=item_id, fr=raw["fr"], en=raw["en"], rooms=hints, volume_m3=float(volume), **flags)


@lru_cache(maxsize=1)
def load() -> Catalogue:
    """The packaged catalogue, read and validated once per process."""
    return parse_catalogue(json.loads(CATALOGUE_PATH.read_text(encoding="utf-8")))


def lookup(item_id: str) -> CatalogueItem:
    """The entry for ``item_id``; ``KeyError`` when the id is not in the catalogue."""
    try:
        return load().items[item_id]
    except KeyError:
        raise KeyError(f"{item_id!r} is not a catalogue id") from None


def ids() -> tuple[str, ...]:
    """Every id, in catalogue order (the order of the enum the model sees)."""
    return tuple(load().items)


def version() -> str:
    return load().version
