"""The generated home tour: a phone-like MP4 whose ground truth agrees with what its codes say, frame by frame."""

from __future__ import annotations

import io

import av
import pytest
from PIL import Image

from tests.support.tour import Tour, code_bits, make_tour, read_codes


@pytest.fixture(scope="module")
def tour() -> Tour:
    return make_tour(rooms=3, objects_per_room=4, width=320, height=180, fps=10, still_s=3.0, walk_s=1.0)


def jpeg(image: Image.Image, long_side: int | None = None, quality: int = 85) -> bytes:
    if long_side and max(image.size) > long_side:
        scale = long_side / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BOX)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def decoded(data: bytes) -> list[tuple[float, Image.Image, bool]]:
    with av.open(io.BytesIO(data)) as container:
        return [(float(f.pts * f.time_base), f.to_image(), f.key_frame) for f in container.decode(video=0)]


def test_every_object_is_wholly_in_view_at_some_time_in_its_own_room(tour: Tour) -> None:
    assert [o.id for o in tour.objects] == list(range(1, 13))
    rooms = {name: (start, end) for name, start, end in tour.rooms}
    assert list(rooms) == ["kitchen", "living room", "bedroom"]
    for item in tour.objects:
        assert item.intervals
        start, end = rooms[item.room]
        assert all(start <= a <= b <= end for a, b in item.intervals)


def test_it_is_an_mp4_with_the_index_at_the_end_and_a_keyframe_every_second(tour: Tour) -> None:
    assert tour.data[4:8] == b"ftyp"
    assert tour.data.index(b"mdat") < tour.data.index(b"moov")
    keys = [t for t, _, key in decoded(tour.data) if key]
    assert keys == pytest.approx([float(s) for s in range(len(keys))])
    assert len(keys) == pytest.approx(tour.duration, abs=1)


def test_the_same_arguments_give_the_same_bytes(tour: Tour) -> None:
    again = make_tour(rooms=3, objects_per_room=4, width=320, height=180, fps=10, still_s=3.0, walk_s=1.0)
    assert again.data == tour.data
    assert again.objects == tour.objects


def test_codes_read_from_each_frame_are_the_objects_wholly_in_view(tour: Tour) -> None:
    """Every object the truth says is whole is read; anything more is a neighbour of it in the quiet zone."""
    extra = 0
    for t, image, _ in decoded(tour.data):
        truth = {o.id for o in tour.objects if o.visible_at(t)}
        near = {o.id for o in tour.objects if o.visible_at(t, tolerance=0.35)}
        read = read_codes(jpeg(image))
        assert truth <= read, t
        assert read <= near, t
        extra += len(read - truth)
    assert extra <= len(tour.objects)


def test_codes_survive_the_decoders_downscale_and_jpeg() -> None:
    big = make_tour(rooms=1, objects_per_room=4, width=1280, height=720, fps=5, still_s=0)
    counted = 0
    for t, image, _ in decoded(big.data):
        truth = {o.id for o in big.objects if o.visible_at(t)}
        assert truth <= read_codes(jpeg(image, long_side=640, quality=70)), t
        counted += len(truth)
    assert counted > 0


def test_walks_read_nothing(tour: Tour) -> None:
    frames = decoded(tour.data)
    in_walk = [image for t, image, _ in frames if any(a <= t <= b for a, b in tour.walks)]
    assert in_walk
    assert all(read_codes(jpeg(image)) == set() for image in in_walk)


def test_the_still_stretch_shows_one_picture(tour: Tour) -> None:
    (start, end), = tour.stills
    assert end - start == pytest.approx(2.9)
    still = [image for t, image, _ in decoded(tour.data) if start <= t <= end]
    readings = [read_codes(jpeg(image)) for image in still]
    assert readings[0] and all(reading == readings[0] for reading in readings)


def test_code_cells_carry_the_id_and_even_parity() -> None:
    assert code_bits(5) == [1, 0, 1, 0, 0, 0, 0, 0, 0]
    assert code_bits(7)[-1] == 1
    assert all(sum(code_bits(i)) % 2 == 0 for i in range(256))
