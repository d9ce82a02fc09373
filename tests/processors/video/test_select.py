"""Frame selection: sharp frames, every real scene shown, no twins, spread over the whole video."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from processors.video.select import (
    NEW_VIEW_SHARE,
    TAIL_SHARE,
    WINDOW_FROM,
    Candidate,
    displacement,
    new_view,
    scene_cuts,
    select_frames,
    sharpness,
)
from tests.support.videos import make_video

SCENES = [(0.0, "navy"), (3.5, "gold"), (4.5, "teal"), (8.0, "lightgrey")]
"""Three scenes over 2 s and one (gold, 1 s) that selection may skip."""
BLUR = [(1.0, 2.5), (5.0, 7.0), (9.0, 11.0)]
DURATION = 12.0


def noise(seed: int, shape: tuple[int, int] = (72, 128)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def blurred(grey: np.ndarray, passes: int = 6) -> np.ndarray:
    image = grey.astype(np.float32)
    for _ in range(passes):
        neighbours = np.roll(image, 1, 0) + np.roll(image, -1, 0) + np.roll(image, 1, 1) + np.roll(image, -1, 1)
        image = (image + neighbours) / 5
    return image.astype(np.uint8)


@pytest.fixture(scope="module")
def walkthrough() -> list[Candidate]:
    """24 candidates, every half second, from a real encoded clip with known scenes and blurred spans."""
    data = make_video(duration=DURATION, scenes=SCENES, blur=BLUR, audio=None, fps=24)
    candidates = []
    with av.open(io.BytesIO(data)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % 12 == 6:
                grey = frame.reformat(width=128, height=96, format="gray", interpolation="AREA").to_ndarray()
                candidates.append(Candidate(frame.time, grey))
    assert len(candidates) == 24
    return candidates


def scene_of(t: float) -> int:
    return max(i for i, (start, _) in enumerate(SCENES) if start <= t)


def is_blurred(t: float) -> bool:
    return any(start <= t < end for start, end in BLUR)


def test_sharpness_orders_crisp_above_blurred_above_flat() -> None:
    crisp = noise(1)
    assert sharpness(crisp) > 20 * sharpness(blurred(crisp)) > 0
    assert sharpness(np.full((72, 128), 128, dtype=np.uint8)) == 0.0


def test_sharpness_of_degenerate_images_is_zero() -> None:
    assert sharpness(np.zeros((2, 50), dtype=np.uint8)) == 0.0
    assert sharpness(np.zeros((0, 0), dtype=np.uint8)) == 0.0


def test_scene_cuts_find_the_real_cuts_and_ignore_motion_and_blur(walkthrough: list[Candidate]) -> None:
    scenes = [scene_of(c.timestamp) for c in walkthrough]
    expected = [i for i in range(1, len(scenes)) if scenes[i] != scenes[i - 1]]
    assert expected == [7, 9, 16]
    assert scene_cuts(walkthrough) == expected


def panorama(seed: int = 7, width: int = 1200, height: int = 72) -> np.ndarray:
    """A wall to pan along: block texture smoothed a little, so that shifts are measurable."""
    blocks = np.random.default_rng(seed).integers(0, 256, size=(height // 6, width // 6))
    return blurred(np.repeat(np.repeat(blocks, 6, axis=0), 6, axis=1).astype(np.uint8), passes=1)


def pan(offsets: list[int], wall: np.ndarray | None = None, width: int = 128) -> list[Candidate]:
    """One candidate a second, each the 128-px view of the wall at a pixel offset."""
    wall = panorama() if wall is None else wall
    return [Candidate(float(t), wall[:, x : x + width].copy()) for t, x in enumerate(offsets)]


def test_displacement_measures_a_pan_as_a_share_of_the_picture() -> None:
    wall = panorama()
    step = displacement(wall[:, 100:228], wall[:, 132:260])
    assert step == pytest.approx((-0.25, 0.0), abs=1 / 128)
    assert new_view((-0.25, 0.0)) == pytest.approx(0.25)
    assert new_view((0.5, 0.5)) == pytest.approx(0.75)


def test_a_still_camera_adds_no_frame() -> None:
    assert select_frames(pan([200] * 30), ceiling=150) == [0]


def test_a_pan_keeps_a_frame_each_time_the_set_share_of_the_picture_is_new() -> None:
    offsets = [20 * t for t in range(50)]
    chosen = select_frames(pan(offsets), ceiling=150)
    moves = [(offsets[b] - offsets[a]) / 128 for a, b in zip(chosen, chosen[1:], strict=False)]
    assert chosen[0] == 0 and (offsets[-1] - offsets[chosen[-1]]) / 128 <= TAIL_SHARE
    assert all(m <= NEW_VIEW_SHARE for m in moves), moves
    assert all(m >= WINDOW_FROM * NEW_VIEW_SHARE for m in moves[:-1]), moves
    assert len(chosen) <= 1 + offsets[-1] / 128 / (WINDOW_FROM * NEW_VIEW_SHARE) + 1


def test_the_share_is_configurable() -> None:
    candidates = pan([20 * t for t in range(50)])
    assert len(select_frames(candidates, ceiling=150, share=0.3)) > 1.8 * len(select_frames(candidates, ceiling=150))


def test_a_blurred_stretch_waits_for_the_next_sharp_candidate() -> None:
    candidates = pan([40 * t for t in range(20)])
    smeared = {5, 6, 7, 8}
    candidates = [Candidate(c.timestamp, blurred(c.grey, 8)) if i in smeared else c for i, c in enumerate(candidates)]
    chosen = select_frames(candidates, ceiling=150)
    assert not smeared & set(chosen)
    assert 9 in chosen, "the first sharp candidate after the blur"


def test_a_scene_cut_starts_a_new_view_at_once() -> None:
    candidates = pan([200] * 5) + [Candidate(5.0 + t, c.grey) for t, c in enumerate(pan([300] * 5, panorama(9)))]
    assert select_frames(candidates, ceiling=150) == [0, 5]


def test_above_the_ceiling_the_frames_adding_least_new_view_go_first() -> None:
    rooms = [pan([0, 20, 40, 60, 80, 100], panorama(seed)) for seed in (1, 2, 3)]
    candidates = [Candidate(6.0 * r + c.timestamp, c.grey) for r, room in enumerate(rooms) for c in room]
    unlimited = select_frames(candidates, ceiling=150)
    capped = select_frames(candidates, ceiling=3)
    assert len(unlimited) > 3
    assert capped == [0, 6, 12], "each room's first view adds all of it; the rest add part"
    assert select_frames(candidates, ceiling=1) == [0]


def test_selection_follows_a_real_clip_through_scenes_and_blur(walkthrough: list[Candidate]) -> None:
    chosen = select_frames(walkthrough, ceiling=150)
    assert chosen == sorted(set(chosen))
    assert {scene_of(walkthrough[i].timestamp) for i in chosen} >= {0, 2, 3}
    assert not any(is_blurred(walkthrough[i].timestamp) for i in chosen)
