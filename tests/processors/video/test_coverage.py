"""Whole-home coverage: on a generated tour, the frames both decodes send show every object whole."""

from __future__ import annotations

import io

import pytest

from processors.video import decode_arriving, decode_media
from tests.support.tour import Tour, make_tour, read_codes


@pytest.fixture(scope="module")
def tour() -> Tour:
    return make_tour(rooms=4, objects_per_room=6, width=640, height=360, fps=15, still_s=6.0, seed=3)


def fewest_frames(tour: Tour) -> int:
    spans = sorted((o.intervals[0] for o in tour.objects), key=lambda span: span[1])
    count, last = 0, float("-inf")
    for start, end in spans:
        if start > last:
            count, last = count + 1, end
    return count


def test_every_object_is_wholly_in_a_frame_sent_in_few_frames_and_once_in_the_still_stretch(tour: Tour) -> None:
    media = decode_media(io.BytesIO(tour.data))
    seen = set().union(*(read_codes(f.jpeg) for f in media.frames))
    assert seen == {o.id for o in tour.objects}
    assert len(media.frames) <= 2 * fewest_frames(tour)
    (start, end), = tour.stills
    assert sum(1 for f in media.frames if start <= f.timestamp <= end) <= 1


def test_the_front_to_back_decode_sends_the_same_frames(tour: Tour) -> None:
    """As a follow job reads an MP4 whose index at the end was sent first: front to back, the index at hand."""
    seeking = decode_media(io.BytesIO(tour.data))
    arriving = decode_arriving(io.BytesIO(tour.data), tour.data[:512])
    assert [f.timestamp for f in arriving.frames] == pytest.approx([f.timestamp for f in seeking.frames], abs=0.15)
