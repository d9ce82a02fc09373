"""Overlapping batches and their merge: every object the batches report is counted once, rooms continue."""

from __future__ import annotations

import pytest

from processors.batches import BatchAnswer, halves, merge, plan
from schemas import catalogue
from schemas.inventory import Dimensions, Inventory, Item, Room


def seen(cid: str, *frames: int, quantity: int = 1, excluded: bool = False, confidence: float = 0.8) -> Item:
    entry = catalogue.lookup(cid)
    return Item(catalogue_id=cid, volume_m3=entry.volume_m3, quantity=quantity, frames=list(frames),
                excluded=excluded, confidence=confidence)


def answer(start: int, stop: int, *rooms: tuple[str, list[Item]]) -> BatchAnswer:
    return BatchAnswer(range(start, stop), Inventory(rooms=[Room(name=n, items=i) for n, i in rooms],
                                                     catalogue_version=catalogue.version()))


def lines(inventory: Inventory) -> list[tuple[str, str, list[int], int]]:
    return [(room.name, item.catalogue_id or item.label, item.frames, item.quantity)
            for room in inventory.rooms for item in room.items]


# Planning


@pytest.mark.parametrize(("count", "size"), [(1, 12), (12, 12), (13, 12), (25, 12), (150, 12), (151, 16), (40, 2)])
def test_batches_cover_every_frame_share_one_frame_and_stay_within_the_size(count, size):
    spans = plan(count, size)
    assert spans[0].start == 0 and spans[-1].stop == count
    assert all(len(span) <= size for span in spans)
    assert all(before.stop - 1 == after.start for before, after in zip(spans, spans[1:]))
    assert max(map(len, spans)) - min(map(len, spans)) <= 1


def test_batches_are_as_few_as_the_size_allows():
    assert len(plan(12, 12)) == 1
    assert len(plan(23, 12)) == 2
    assert len(plan(24, 12)) == 3
    assert plan(0, 12) == []


def test_a_batch_is_split_into_halves_that_share_a_frame():
    assert halves(range(10, 22)) == (range(10, 16), range(15, 22))
    assert halves(range(4, 6)) == (range(4, 5), range(5, 6))
    with pytest.raises(ValueError):
        halves(range(3, 4))


def test_a_batch_of_fewer_than_two_frames_cannot_overlap():
    with pytest.raises(ValueError):
        plan(10, 1)


# Merging


def test_frames_are_numbered_over_the_whole_video():
    merged = merge([answer(0, 5, ("Salon", [seen("sofa_3_seats", 1)])),
                    answer(4, 9, ("Cuisine", [seen("fridge", 3)]))])
    assert lines(merged) == [("Salon", "sofa_3_seats", [1], 1), ("Cuisine", "fridge", [7], 1)]


def test_an_object_in_the_overlap_frame_counts_once():
    merged = merge([answer(0, 5, ("Salon", [seen("sofa_3_seats", 3, 4, quantity=1)])),
                    answer(4, 9, ("Salon", [seen("sofa_3_seats", 0, 1, quantity=1)]))])
    assert lines(merged) == [("Salon", "sofa_3_seats", [3, 4, 5], 1)]


def test_an_object_either_side_of_a_boundary_in_the_same_room_counts_once():
    merged = merge([answer(0, 5, ("Salon", [seen("armchair", 3)])), answer(4, 9, ("Salon", [seen("armchair", 1)]))])
    assert lines(merged) == [("Salon", "armchair", [3, 5], 1)]


def test_the_same_kind_of_object_far_from_the_boundary_is_another_object():
    merged = merge([answer(0, 9, ("Salon", [seen("chair", 1)])), answer(8, 17, ("Salon", [seen("chair", 6)]))])
    assert lines(merged) == [("Salon", "chair", [1], 1), ("Salon", "chair", [14], 1)]


def test_a_room_continues_through_the_overlap_frame_whatever_the_later_batch_calls_it():
    merged = merge([answer(0, 5, ("Salon", [seen("sofa_3_seats", 4)])),
                    answer(4, 9, ("Séjour", [seen("sofa_3_seats", 0), seen("tv_large", 2)]))])
    assert lines(merged) == [("Salon", "sofa_3_seats", [4], 1), ("Salon", "tv_large", [6], 1)]


def test_rooms_of_the_same_name_are_one_room_and_new_rooms_keep_their_order():
    merged = merge([answer(0, 5, ("Entrée", [seen("coat_rack", 0)]), ("Salon", [seen("sofa_3_seats", 4)])),
                    answer(4, 9, ("Salon", [seen("sofa_3_seats", 0)]), ("Cuisine", [seen("fridge", 3)])),
                    answer(8, 13, ("Chambre 1", [seen("bed_double", 2)]), ("Salon", [seen("piano_upright", 4)]))])
    assert [room.name for room in merged.rooms] == ["Entrée", "Salon", "Cuisine", "Chambre 1"]
    assert [i.catalogue_id for i in merged.rooms[1].items] == ["sofa_3_seats", "piano_upright"]


def test_the_largest_quantity_and_confidence_win_and_an_exclusion_holds():
    merged = merge([answer(0, 3, ("Salon", [seen("chair", 2, quantity=4, confidence=0.6)])),
                    answer(2, 5, ("Salon", [seen("chair", 0, quantity=6, confidence=0.9, excluded=True)]))])
    [chairs] = merged.rooms[0].items
    assert (chairs.quantity, chairs.confidence, chairs.excluded) == (6, 0.9, True)


def test_a_mention_heard_by_several_batches_is_one_object_and_joins_a_sighting():
    merged = merge([answer(0, 3, ("Salon", [seen("piano_upright", excluded=True)])),
                    answer(2, 5, ("Salon", [seen("piano_upright", 1)]), ("Cave", [seen("bicycle")])),
                    answer(4, 7, ("Garage", [seen("bicycle")]))])
    assert lines(merged) == [("Salon", "piano_upright", [3], 1), ("Cave", "bicycle", [], 1)]
    assert merged.rooms[0].items[0].excluded


def test_objects_outside_the_catalogue_are_matched_by_label():
    arcade = Item(label="Borne d'arcade", dimensions=Dimensions(length_m=0.8, width_m=0.7, height_m=1.8),
                  quantity=1, frames=[4])
    again = arcade.model_copy(update={"label": "borne d'arcade", "frames": [0]})
    merged = merge([answer(0, 5, ("Salon", [arcade])), answer(4, 9, ("Salon", [again]))])
    assert lines(merged) == [("Salon", "Borne d'arcade", [4], 1)]


def test_totals_are_recomputed_after_the_merge():
    merged = merge([answer(0, 3, ("Salon", [seen("chair", 2, quantity=2)])),
                    answer(2, 5, ("Salon", [seen("chair", 0, quantity=2)]))])
    assert merged.total_items == 2
    assert merged.total_volume_m3 == 2 * catalogue.lookup("chair").volume_m3


def test_frames_past_the_last_index_a_result_can_hold_are_dropped_not_fatal():
    merged = merge([answer(995, 1003, ("Salon", [seen("chair", 2), seen("sofa_3_seats", 6)]))])
    assert lines(merged) == [("Salon", "chair", [997], 1), ("Salon", "sofa_3_seats", [], 1)]
