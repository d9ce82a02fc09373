"""The inventory: derived totals, item rules, and a compact form under 5 KB that reads back unchanged."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from types import MappingProxyType

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import catalogue
from schemas.inventory import (
    MAX_FRAME_INDEX,
    Dimensions,
    Inventory,
    Item,
    Room,
    catalogue_code,
    decode_inventory,
    encode_inventory,
    with_totals,
)
from schemas.result import (
    MAX_RESULT_BYTES,
    AnalysisInfo,
    AnalysisStatus,
    Result,
    ResultTooLarge,
    Timings,
    VideoInfo,
    decode_result,
    encode_result,
    fitted,
)

ROOM_NAMES = ["Entrée", "Salon", "Salle à manger", "Cuisine", "Chambre 1", "Chambre 2", "Chambre enfant",
              "Bureau", "Salle de bain", "Buanderie", "Cave", "Garage"]


def item(catalogue_id: str, quantity: int = 1, **fields) -> Item:
    """A catalogue item as the processors build it: volume and flags from the catalogue."""
    entry = catalogue.lookup(catalogue_id)
    return Item(catalogue_id=catalogue_id, quantity=quantity, volume_m3=entry.volume_m3, fragile=entry.fragile,
                needs_disassembly=entry.needs_disassembly, heavy=entry.heavy, **fields)


def other(label: str, length: float, width: float, height: float, **fields) -> Item:
    return Item(label=label, dimensions=Dimensions(length_m=length, width_m=width, height_m=height),
                quantity=fields.pop("quantity", 1), **fields)


def result_with(inventory: Inventory | None, frame_count: int = 16) -> Result:
    return Result(
        session_id="3f9c1a2b4d5e6f708192a3b4c5d6e7f8",
        created_at=datetime(2025, 6, 1, 12, 30, tzinfo=timezone.utc),
        video=VideoInfo(duration_s=184.533, size_bytes=412_345_678, width=1920, height=1080, codec="hevc",
                        container="mov,mp4,m4a,3gp,3g2,mj2", rotation=90, has_audio=True),
        frames=[round(i * 11.53, 2) for i in range(frame_count)],
        analysis=AnalysisInfo(status=AnalysisStatus.COMPLETE if inventory else AnalysisStatus.SKIPPED,
                              model="gpt-5.4-mini-2026-03-17", transcript_chars=2345, tokens=231_234,
                              frames_sent=frame_count + frame_count // 11, input_tokens=180_123,
                              image_tokens=160_920, text_tokens=19_203, output_tokens=51_111, cost_usd=0.365092),
        inventory=inventory,
        timings=Timings(upload_s=41.2, queue_s=0.015, decode_s=6.321, analysis_s=28.77, total_s=76.31),
    )


def large_house(count: int = 200, frame_count: int = 16) -> Inventory:
    """``count`` lines over 12 rooms, cycling through the whole catalogue (the most distinct ids possible),
    each seen in 3 frames, with out-of-catalogue items and exclusions mixed in."""
    ids = catalogue.ids()
    lines: list[Item] = []
    for n in range(count):
        frames = [n % frame_count, (n + 3) % frame_count, (n + 5) % frame_count]
        if n % 20 == 19:
            lines.append(other("Borne d'arcade vintage", 0.8, 0.7, 1.8, confidence=0.55, frames=frames, fragile=True))
        else:
            lines.append(item(ids[n % len(ids)], 1 + n % 3, confidence=0.5 + (n % 50) / 100, frames=frames,
                              excluded=n % 17 == 0))
    per_room = -(-count // len(ROOM_NAMES))
    rooms = [Room(name=name, items=lines[i * per_room:(i + 1) * per_room]) for i, name in enumerate(ROOM_NAMES)]
    return Inventory(rooms=[r for r in rooms if r.items], catalogue_version=catalogue.version())


# Derived totals


def test_totals_are_quantity_times_unit_volume_of_what_moves():
    inventory = Inventory(rooms=[
        Room(name="Salon", items=[item("sofa_3_seats"), item("chair", 4), item("piano_upright", excluded=True)]),
        Room(name="Cuisine", items=[item("fridge"), item("box_standard", 12)]),
    ])
    assert [r.subtotal_m3 for r in inventory.rooms] == [2.0 + 4 * 0.2, 1.0 + 12 * 0.1]
    assert inventory.total_volume_m3 == 2.8 + 2.2
    assert inventory.total_items == 1 + 4 + 1 + 12
    assert inventory.excluded_volume_m3 == 2.0


def test_totals_given_by_anyone_else_are_recomputed():
    inventory = Inventory.model_validate({
        "rooms": [{"name": "Salon", "items": [item("sofa_3_seats").model_dump()], "subtotal_m3": 99}],
        "total_items": 42, "total_volume_m3": 1234.5, "excluded_volume_m3": 7,
    })
    assert (inventory.rooms[0].subtotal_m3, inventory.total_volume_m3) == (2.0, 2.0)
    assert (inventory.total_items, inventory.excluded_volume_m3) == (1, 0.0)


def test_sums_are_exact_in_litres_not_float_drift():
    inventory = Inventory(rooms=[Room(name="Cave", items=[item("box_standard") for _ in range(3)])])
    assert inventory.total_volume_m3 == 0.3


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(catalogue.ids()), st.integers(1, 50), st.booleans()), min_size=1,
                max_size=40),
       st.randoms(use_true_random=False))
def test_totals_do_not_depend_on_item_order(lines, rng):
    items = [item(cid, q, excluded=x) for cid, q, x in lines]
    shuffled = items[:]
    rng.shuffle(shuffled)
    a = Inventory(rooms=[Room(name="A", items=items)])
    b = Inventory(rooms=[Room(name="A", items=shuffled)])
    assert (a.total_volume_m3, a.total_items, a.excluded_volume_m3) == (b.total_volume_m3, b.total_items,
                                                                         b.excluded_volume_m3)
    litres = sum(q * round(catalogue.lookup(cid).volume_m3 * 1000) for cid, q, x in lines if not x)
    assert a.total_volume_m3 == litres / 1000


def test_with_totals_repairs_a_copy_made_without_validation():
    inventory = Inventory(rooms=[Room(name="Salon", items=[item("sofa_3_seats")])])
    room = inventory.rooms[0].model_copy(update={"items": [item("sofa_3_seats"), item("armchair", 2)]})
    stale = inventory.model_copy(update={"rooms": [room]})
    assert stale.total_volume_m3 == 2.0
    assert with_totals(stale).total_volume_m3 == 3.6
    assert with_totals(stale).rooms[0].subtotal_m3 == 3.6


# Item rules


def test_an_out_of_catalogue_item_is_flagged_and_sized_by_its_dimensions():
    arcade = other("Borne d'arcade", 0.8, 0.7, 1.8)
    assert arcade.out_of_catalogue and arcade.catalogue_id is None
    assert arcade.volume_m3 == 1.008


def test_an_out_of_catalogue_item_needs_a_label_and_dimensions():
    with pytest.raises(ValidationError):
        Item(label="Borne d'arcade", quantity=1, volume_m3=1.0)
    with pytest.raises(ValidationError):
        Item(quantity=1, dimensions=Dimensions(length_m=1, width_m=1, height_m=1))


def test_an_out_of_catalogue_volume_must_be_its_dimensions():
    with pytest.raises(ValidationError, match="length × width × height"):
        Item(label="Rameur", quantity=1, volume_m3=5.0, dimensions=Dimensions(length_m=2, width_m=0.5, height_m=1))


def test_a_catalogue_item_is_named_by_its_id_only():
    with pytest.raises(ValidationError):
        Item(catalogue_id="sofa_3_seats", label="Canapé", quantity=1, volume_m3=2.0)
    with pytest.raises(ValidationError):
        Item(catalogue_id="sofa_3_seats", quantity=1, volume_m3=2.0, out_of_catalogue=True)


def test_values_are_quantized_so_the_compact_form_is_exact():
    line = item("chair", frames=[5, 1, 5, 3], confidence=0.8765)
    assert line.frames == [1, 3, 5]
    assert line.confidence == 0.88
    assert Item(catalogue_id="x", quantity=1, volume_m3=0.12345).volume_m3 == 0.123
    assert Dimensions(length_m=1.234, width_m=0.001, height_m=2).length_m == 1.23
    assert Dimensions(length_m=1.234, width_m=0.001, height_m=2).width_m == 0.01


def test_frame_indexes_are_bounded():
    item("chair", frames=[0, MAX_FRAME_INDEX])
    with pytest.raises(ValidationError):
        item("chair", frames=[MAX_FRAME_INDEX + 1])
    with pytest.raises(ValidationError):
        item("chair", frames=[-1])


# Compact form


def test_200_items_of_a_large_house_encode_under_5_kb_and_read_back_unchanged():
    result = result_with(large_house(200))
    assert sum(len(r.items) for r in result.inventory.rooms) == 200
    blob = encode_result(result)
    assert len(blob) < MAX_RESULT_BYTES
    assert decode_result(blob, catalogue.load()) == result


def test_the_stored_form_holds_codes_not_ids_or_labels_and_no_unit_volumes():
    result = result_with(Inventory(rooms=[Room(name="Salon", items=[item("sofa_3_seats", 2)])],
                                   catalogue_version=catalogue.version()))
    stored = orjson.loads(encode_result(result))["inventory"]
    assert stored == {
        "c": catalogue.version(),
        "r": [["Salon", [catalogue_code("sofa_3_seats"), 2, 100, 0]]],
        "total_volume_m3": 4.0, "total_items": 2, "excluded_volume_m3": 0.0,
    }


def test_exclusions_flags_dimensions_and_frames_survive_the_round_trip():
    inventory = Inventory(rooms=[
        Room(name="Salon", items=[
            item("piano_upright", excluded=True, confidence=0.42, frames=[0, 7, MAX_FRAME_INDEX]),
            other("Borne d'arcade", 0.8, 0.7, 1.8, fragile=True, heavy=True, needs_disassembly=True, quantity=2,
                  excluded=True, frames=[3]),
            item("chair", 6, confidence=0.0),
        ]),
        Room(name="Garage", items=[]),
    ], catalogue_version=catalogue.version())
    assert decode_inventory(orjson.loads(orjson.dumps(encode_inventory(inventory))), catalogue.load()) == inventory


inventories = st.builds(
    lambda rooms, version: Inventory(rooms=rooms, catalogue_version=version),
    st.lists(
        st.builds(
            lambda name, items: Room(name=name, items=items),
            st.text(min_size=1, max_size=40).filter(str.strip),
            st.lists(
                st.one_of(
                    st.builds(lambda cid, q, c, f, x: item(cid, q, confidence=c, frames=f, excluded=x),
                              st.sampled_from(catalogue.ids()), st.integers(1, 9999), st.floats(0, 1),
                              st.lists(st.integers(0, MAX_FRAME_INDEX), max_size=6), st.booleans()),
                    st.builds(lambda label, dims, q, flags, x: other(label, *dims, quantity=q, fragile=flags[0],
                                                                    needs_disassembly=flags[1], heavy=flags[2],
                                                                    excluded=x),
                              st.text(min_size=1, max_size=60), st.tuples(*[st.floats(0.01, 20)] * 3),
                              st.integers(1, 50), st.tuples(st.booleans(), st.booleans(), st.booleans()),
                              st.booleans()),
                ),
                max_size=8,
            ),
        ),
        max_size=5,
    ),
    st.sampled_from([None, catalogue.version()]),
)


@settings(max_examples=60, deadline=None)
@given(inventories)
def test_any_inventory_reads_back_unchanged(inventory):
    encoded = orjson.loads(orjson.dumps(encode_inventory(inventory)))
    assert decode_inventory(encoded, catalogue.load()) == inventory


@dataclass(frozen=True)
class Catalogue:
    version: str
    items: MappingProxyType


def catalogue_with(version: str, **volumes: float) -> Catalogue:
    real = catalogue.load()
    items = {cid: replace(entry, volume_m3=volumes.get(cid, entry.volume_m3)) for cid, entry in real.items.items()}
    return Catalogue(version=version, items=MappingProxyType(items))


def test_volumes_are_recomputed_from_the_catalogue_on_read():
    inventory = Inventory(rooms=[Room(name="Salon", items=[item("sofa_3_seats", 2)])], catalogue_version="2025.1")
    stored = encode_inventory(inventory)
    revised = decode_inventory(stored, catalogue_with("2026.1", sofa_3_seats=2.5))
    assert revised.rooms[0].items[0].volume_m3 == 2.5
    assert revised.total_volume_m3 == 5.0


def test_totals_that_disagree_with_the_same_catalogue_version_are_refused():
    stored = encode_inventory(Inventory(rooms=[Room(name="Salon", items=[item("sofa_3_seats")])],
                                        catalogue_version="2025.1"))
    with pytest.raises(ValueError, match="disagree"):
        decode_inventory(stored, catalogue_with("2025.1", sofa_3_seats=2.5))
    with pytest.raises(ValueError, match="disagree"):
        decode_inventory({**stored, "total_volume_m3": 3.0}, catalogue_with("2025.1"))


@pytest.mark.parametrize(
    "stored",
    [
        {},
        {"r": [["Salon", [catalogue_code("no_such_item_anywhere"), 1, 100, 0]]]},
        {"r": [["Salon", [True, 1, 100, 0]]]},
        {"r": [["Salon", [catalogue_code("chair"), 0, 100, 0]]]},
        {"r": [["Salon", [catalogue_code("chair"), 1, 100, 1 << (MAX_FRAME_INDEX + 1)]]]},
        {"r": [["Salon", ["Borne", 1, 100, 0, 0, 0.8]]]},
        {"r": [["", [catalogue_code("chair"), 1, 100, 0]]]},
        {"r": "Salon"},
    ],
)
def test_malformed_compact_forms_are_refused(stored):
    with pytest.raises(ValueError):
        decode_inventory(stored, catalogue.load())


def test_a_result_with_an_inventory_reads_back_with_the_shipped_catalogue_by_default():
    result = result_with(large_house(5))
    assert decode_result(encode_result(result)) == result


def test_a_skipped_analysis_reads_back_without_a_catalogue():
    result = result_with(None)
    assert decode_result(encode_result(result)) == result


def test_a_result_written_in_full_form_is_read_too():
    result = result_with(large_house(10))
    assert decode_result(result.model_dump_json()) == result


def long_tour_house(count: int = 200, frame_count: int = 150, per_item: int = 1) -> Inventory:
    """A house filmed in ``frame_count`` frames, each item seen in ``per_item`` consecutive ones."""
    rooms = large_house(count).rooms
    step = frame_count // count or 1
    n = 0
    for room in rooms:
        for line in room.items:
            first = min(n * step, frame_count - per_item)
            line.frames = list(range(first, first + per_item))
            n += 1
    return with_totals(Inventory(rooms=rooms, catalogue_version=catalogue.version()))


def test_200_items_seen_in_150_frames_encode_under_5_kb_with_their_frame_times_and_read_back_unchanged():
    result = result_with(long_tour_house(200, 150), frame_count=150)
    blob = encode_result(result)
    assert len(blob) < MAX_RESULT_BYTES
    assert orjson.loads(blob)["inventory"]["f"] == 2
    assert decode_result(blob, catalogue.load()) == result


def test_past_53_frames_items_keep_whole_frame_lists_when_they_fit():
    result = result_with(long_tour_house(40, 150, per_item=3), frame_count=150)
    assert fitted(result) == result
    stored = decode_result(encode_result(result), catalogue.load())
    assert [i.frames for r in stored.inventory.rooms for i in r.items] == \
        [i.frames for r in result.inventory.rooms for i in r.items]


def test_when_whole_frame_lists_do_not_fit_each_item_keeps_its_first_frame():
    result = result_with(long_tour_house(200, 150, per_item=3), frame_count=150)
    with pytest.raises(ResultTooLarge):
        encode_result(result)
    kept = fitted(result)
    assert len(encode_result(kept)) < MAX_RESULT_BYTES
    assert [i.frames for r in kept.inventory.rooms for i in r.items] == \
        [i.frames[:1] for r in result.inventory.rooms for i in r.items]
    assert kept.inventory.total_volume_m3 == result.inventory.total_volume_m3


def test_results_stored_with_frame_masks_still_read():
    result = result_with(large_house(30))
    stored = orjson.loads(encode_result(result))
    assert "f" not in stored["inventory"]
    assert isinstance(stored["inventory"]["r"][0][1][3], int)
    stored["frames"] = [round(i * 11.53, 2) for i in range(16)]
    del stored["fd"]
    assert decode_result(orjson.dumps(stored), catalogue.load()) == result


def test_frame_times_are_stored_as_centisecond_steps_in_base_36():
    result = result_with(None, frame_count=4)
    stored = orjson.loads(encode_result(result))
    assert "frames" not in stored and stored["fd"] == "0,w1,w1,w1"
    assert decode_result(orjson.dumps(stored)).frames == [0.0, 11.53, 23.06, 34.59]


def test_frame_times_read_back_exactly():
    times = [0.0, 0.04, 1.0, 1.01, 59.99, 60.0, 3599.97]
    assert decode_result(encode_result(result_with(None).model_copy(update={"frames": times}))).frames == times


def test_a_result_past_5_kb_is_refused():
    many_frames = result_with(large_house(200, frame_count=53), frame_count=53)
    rng = random.Random(7)
    for room in many_frames.inventory.rooms:
        for line in room.items:
            line.frames = sorted(rng.sample(range(MAX_FRAME_INDEX + 1), 20))
    with pytest.raises(ResultTooLarge):
        encode_result(many_frames)
