"""Frame selection: sharp frames, every real scene shown, no twins, spread over the whole video."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from processors.video.select import (
    DUPLICATE_BITS,
    Candidate,
    dhash,
    hamming,
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


def test_dhash_is_64_bit_stable_under_noise_and_tells_scenes_apart() -> None:
    picture = blurred(noise(2), passes=2)
    jitter = np.clip(picture.astype(int) + np.random.default_rng(3).integers(-2, 3, picture.shape), 0, 255)
    assert 0 <= dhash(picture) < 2**64
    assert hamming(dhash(picture), dhash(picture)) == 0
    assert hamming(dhash(picture), dhash(jitter.astype(np.uint8))) <= DUPLICATE_BITS
    assert hamming(dhash(picture), dhash(blurred(noise(4), passes=2))) > 3 * DUPLICATE_BITS


def test_hamming_counts_differing_bits() -> None:
    assert hamming(0b1011, 0b0001) == 2
    assert hamming(2**64 - 1, 0) == 64


def test_scene_cuts_find_the_real_cuts_and_ignore_motion_and_blur(walkthrough: list[Candidate]) -> None:
    scenes = [scene_of(c.timestamp) for c in walkthrough]
    expected = [i for i in range(1, len(scenes)) if scenes[i] != scenes[i - 1]]
    assert expected == [7, 9, 16]
    assert scene_cuts(walkthrough) == expected


def test_every_scene_longer_than_two_seconds_is_shown(walkthrough: list[Candidate]) -> None:
    long_scenes = {0, 2, 3}
    for budget in (3, 4, 8):
        chosen = select_frames(walkthrough, budget)
        assert long_scenes <= {scene_of(walkthrough[i].timestamp) for i in chosen}, budget


def test_selected_frames_are_sharper_than_uniform_sampling(walkthrough: list[Candidate]) -> None:
    chosen = select_frames(walkthrough, 8)
    uniform = [round(x) for x in np.linspace(0, len(walkthrough) - 1, 8)]
    assert any(is_blurred(walkthrough[i].timestamp) for i in uniform)
    mean = lambda indexes: np.mean([sharpness(walkthrough[i].grey) for i in indexes])  # noqa: E731
    assert mean(chosen) > 1.5 * mean(uniform)
    assert not any(is_blurred(walkthrough[i].timestamp) for i in chosen)


def test_selection_is_sorted_unique_and_within_budget(walkthrough: list[Candidate]) -> None:
    for budget in range(0, 30):
        chosen = select_frames(walkthrough, budget)
        assert chosen == sorted(set(chosen))
        assert len(chosen) == min(budget, len(walkthrough))
        assert all(0 <= i < len(walkthrough) for i in chosen)
    assert select_frames([], 8) == []


def test_selection_spreads_over_the_whole_timeline() -> None:
    candidates = [Candidate(float(t), noise(100 + t)) for t in range(24)]
    chosen = [candidates[i].timestamp for i in select_frames(candidates, 8)]
    assert chosen[0] <= 2.0 and chosen[-1] >= 21.0
    assert max(b - a for a, b in zip(chosen, chosen[1:])) <= 2 * 23 / 7


def test_near_duplicates_are_dropped_while_distinct_frames_remain() -> None:
    still = noise(7)
    distinct = {5: noise(8), 11: noise(9), 17: noise(10)}
    candidates = [Candidate(float(t), distinct.get(t, still)) for t in range(24)]
    chosen = select_frames(candidates, 4)
    assert set(distinct) <= set(chosen)
    assert len([i for i in chosen if i not in distinct]) == 1


def test_duplicates_fill_the_budget_only_when_nothing_else_is_left_and_fill_the_widest_gaps() -> None:
    still = noise(7)
    distinct = {5: noise(8), 11: noise(9), 17: noise(10)}
    candidates = [Candidate(float(t), distinct.get(t, still)) for t in range(24)]
    chosen = select_frames(candidates, 6)
    assert set(distinct) <= set(chosen) and len(chosen) == 6
    assert chosen[0] == 0 and chosen[-1] == 23
    assert min(b - a for a, b in zip(chosen, chosen[1:])) >= 3
