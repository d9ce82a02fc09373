"""The movers' catalogue: the data is well-formed, plausible for movers, and guarded against bad edits."""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

import pytest

from schemas import catalogue
from schemas.catalogue import CATALOGUE_PATH, CatalogueError, parse_catalogue
from schemas.inventory import catalogue_code


def raw() -> dict[str, Any]:
    return json.loads(CATALOGUE_PATH.read_text(encoding="utf-8"))


def test_the_packaged_catalogue_has_about_150_items_in_file_order():
    data = raw()
    assert 140 <= len(catalogue.ids()) <= 200
    assert catalogue.ids() == tuple(item["id"] for item in data["items"])
    assert catalogue.version() == data["version"]


def test_it_is_read_once_per_process():
    assert catalogue.load() is catalogue.load()


def test_every_entry_has_labels_room_hints_and_a_volume():
    rooms = set(catalogue.load().rooms)
    for item_id in catalogue.ids():
        entry = catalogue.lookup(item_id)
        assert entry.id == item_id
        assert entry.fr.strip() and entry.en.strip()
        assert entry.rooms and set(entry.rooms) <= rooms
        assert 0 < entry.volume_m3 <= 10


@pytest.mark.parametrize(
    ("item_id", "volume_m3"),
    [("sofa_3_seats", 2.0), ("bed_double", 2.0), ("fridge", 1.0), ("box_standard", 0.1), ("wardrobe_2_doors", 2.0)],
)
def test_standard_volumes_are_those_of_movers_tables(item_id, volume_m3):
    assert catalogue.lookup(item_id).volume_m3 == volume_m3


@pytest.mark.parametrize(
    "smaller_to_larger",
    [
        ("bed_single", "bed_double", "bed_king"),
        ("wardrobe_1_door", "wardrobe_2_doors", "wardrobe_3_doors"),
        ("sofa_2_seats", "sofa_3_seats", "sofa_corner"),
        ("box_books", "box_standard", "box_large", "box_wardrobe"),
        ("piano_digital", "piano_upright", "piano_grand"),
        ("fridge_small", "fridge", "fridge_american"),
    ],
)
def test_volumes_grow_with_size(smaller_to_larger):
    volumes = [catalogue.lookup(i).volume_m3 for i in smaller_to_larger]
    assert volumes == sorted(volumes) and len(set(volumes)) == len(volumes)


def test_handling_flags_match_what_movers_expect():
    assert all(catalogue.lookup(i).fragile for i in ("tv_large", "mirror_large", "piano_upright", "aquarium"))
    assert all(catalogue.lookup(i).heavy for i in ("piano_upright", "fridge", "washing_machine", "safe"))
    assert all(catalogue.lookup(i).needs_disassembly for i in ("bed_double", "wardrobe_2_doors", "desk"))
    box = catalogue.lookup("box_standard")
    assert not (box.fragile or box.needs_disassembly or box.heavy)


def test_labels_in_both_languages():
    sofa = catalogue.lookup("sofa_3_seats")
    assert (sofa.label("fr"), sofa.label("en"), sofa.label()) == ("Canapé 3 places", "3-seat sofa", "Canapé 3 places")
    with pytest.raises(ValueError):
        sofa.label("de")


def test_an_unknown_id_is_a_key_error():
    with pytest.raises(KeyError, match="flux_capacitor"):
        catalogue.lookup("flux_capacitor")


def test_every_id_has_its_own_storage_code():
    codes = [catalogue_code(i) for i in catalogue.ids()]
    assert len(set(codes)) == len(codes)


def broken(change) -> dict[str, Any]:
    data = copy.deepcopy(raw())
    change(data)
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["items"].append(dict(d["items"][0])), "duplicate id"),
        (lambda d: d["items"][0].update(id="Sofa-3"), "snake_case"),
        (lambda d: d["items"][0].update(rooms=["ballroom"]), "room hints"),
        (lambda d: d["items"][0].update(rooms=[]), "room hints"),
        (lambda d: d["items"][0].update(volume_m3=0), "volume_m3"),
        (lambda d: d["items"][0].update(volume_m3=True), "volume_m3"),
        (lambda d: d["items"][0].update(volume_m3="2"), "volume_m3"),
        (lambda d: d["items"][0].update(en=" "), "en label"),
        (lambda d: d["items"][0].pop("fr"), "fr label"),
        (lambda d: d["items"][0].update(heavy="yes"), "booleans"),
        (lambda d: d.update(items=[]), "no items"),
        (lambda d: d.pop("version"), "version"),
        (lambda d: d.update(rooms=["kitchen", "kitchen"]), "rooms"),
    ],
)
def test_bad_data_is_refused_with_the_reason(change, message):
    with pytest.raises(CatalogueError, match=message):
        parse_catalogue(broken(change))


def test_two_ids_with_the_same_storage_code_are_refused():
    seen: dict[int, str] = {}
    for n in itertools.count():
        candidate = f"item_{n}"
        if catalogue_code(candidate) in seen:
            pair = (seen[catalogue_code(candidate)], candidate)
            break
        seen[catalogue_code(candidate)] = candidate
    template = raw()["items"][0]
    data = broken(lambda d: d.update(items=[{**template, "id": pair[0]}, {**template, "id": pair[1]}]))
    with pytest.raises(CatalogueError, match="storage code"):
        parse_catalogue(data)


def test_the_packaged_data_passes_its_own_rules():
    parsed = parse_catalogue(raw())
    assert tuple(parsed.items) == catalogue.ids()
