"""Which decoded frames are worth sending to the vision model: sharp, spread out, one per scene, no twins.

Pure numpy on small grey images (``Candidate.grey``, uint8, about 128 px wide), so it is cheap,
deterministic and testable without any video.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

MIN_SCENE_S = 2.0
"""Scenes longer than this (seconds) must be represented by a frame."""

CUT_THRESHOLD = 30.0
"""Mean absolute difference, in grey levels (0-255), between the 8x8 block-mean thumbnails of two
consecutive candidates above which a scene cut is declared. Block means ignore blur and fine motion
(texture, noise) but follow what changes with a new room: overall brightness and where light and dark
areas sit. 30 is about 12 % of the range: a moving object covering a sixteenth of the picture stays
well below it, a change of room or lighting goes above."""

DUPLICATE_BITS = 4
"""Two frames whose 64-bit difference hashes differ in at most this many bits are near-duplicates."""

BLUR_RATIO = 0.25
"""A frame less sharp than this share of the median candidate is blurred: used only when nothing else fits."""

SPREAD_WEIGHT = 0.25
"""How much a frame's distance from its anchor time (in half-slots) costs against relative sharpness."""


@dataclass(frozen=True, eq=False)
class Candidate:
    """A decoded frame reduced to what selection needs: when it is and a small grey picture of it."""

    timestamp: float
    grey: np.ndarray


def sharpness(grey: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian: high for crisp edges, near zero for blur or flat frames."""
    image = np.asarray(grey, dtype=np.float32)
    if image.ndim != 2 or min(image.shape) < 3:
        return 0.0
    laplacian = (
        image[:-2, 1:-1] + image[2:, 1:-1] + image[1:-1, :-2] + image[1:-1, 2:] - 4.0 * image[1:-1, 1:-1]
    )
    return float(laplacian.var())


def dhash(grey: np.ndarray) -> int:
    """64-bit difference hash: for a 9x8 block-mean thumbnail, is each cell brighter than its right neighbour."""
    cells = _block_means(grey, rows=8, cols=9)
    bits = (cells[:, :-1] > cells[:, 1:]).ravel()
    return int(sum(1 << index for index, bit in enumerate(bits) if bit))


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return (a ^ b).bit_count()


def scene_cuts(candidates: list[Candidate]) -> list[int]:
    """Indexes ``i`` where a new scene starts between candidates ``i - 1`` and ``i`` (see ``CUT_THRESHOLD``)."""
    thumbs = [_block_means(c.grey, rows=8, cols=8) for c in candidates]
    return [
        index
        for index in range(1, len(thumbs))
        if float(np.abs(thumbs[index] - thumbs[index - 1]).mean()) > CUT_THRESHOLD
    ]


def select_frames(candidates: list[Candidate], budget: int) -> list[int]:
    """Choose at most ``budget`` candidates; returns their indexes in time order.

    In priority order:
    1. every scene longer than ``MIN_SCENE_S`` gets its sharpest frame (longest scenes first when
       there are more scenes than budget; a scene whose frames all twin a chosen one is already shown);
    2. each of ``budget`` evenly spaced anchor times, from the first candidate to the last, gets the
       sharpest unblurred, non-duplicate frame among the candidates nearest to it, ties going to the
       one closest to the anchor;
    3. free slots go to the candidates farthest in time from those chosen, blurred frames and
       near-duplicates last.
    Candidates are assumed sorted by timestamp.
    """
    count = len(candidates)
    if budget <= 0 or count == 0:
        return []
    if count <= budget:
        return list(range(count))
    scores = [sharpness(c.grey) for c in candidates]
    hashes = [dhash(c.grey) for c in candidates]
    times = [c.timestamp for c in candidates]
    floor = BLUR_RATIO * float(np.median(scores))
    chosen: list[int] = []

    def fresh(indexes: Iterable[int]) -> list[int]:
        return [i for i in indexes if all(hamming(hashes[i], hashes[j]) > DUPLICATE_BITS for j in chosen)]

    for start, stop in _long_scenes(candidates)[:budget]:
        if options := fresh(range(start, stop)):
            chosen.append(max(options, key=lambda i: scores[i]))

    for members, anchor, reach in _anchor_regions(times, budget):
        if len(chosen) >= budget:
            break
        if not members.intersection(chosen):
            if options := fresh(i for i in sorted(members) if scores[i] >= floor):
                best = max(scores[i] for i in options) or 1.0
                chosen.append(
                    max(options, key=lambda i: scores[i] / best - SPREAD_WEIGHT * abs(times[i] - anchor) / reach)
                )

    while len(chosen) < budget:
        unique = set(fresh(range(count)))
        rest = [i for i in range(count) if i not in chosen]
        chosen.append(
            min(
                rest,
                key=lambda i: (
                    i not in unique,
                    scores[i] < floor,
                    -min((abs(times[i] - times[j]) for j in chosen), default=0.0),
                    -scores[i],
                ),
            )
        )
    return sorted(chosen)


def _block_means(grey: np.ndarray, *, rows: int, cols: int) -> np.ndarray:
    """Area-average ``grey`` down to ``rows`` x ``cols`` (any input size; tiny inputs are repeated)."""
    image = np.asarray(grey, dtype=np.float32)
    if image.ndim != 2 or image.size == 0:
        return np.zeros((rows, cols), dtype=np.float32)
    if image.shape[0] < rows or image.shape[1] < cols:
        image = np.repeat(np.repeat(image, -(-rows // image.shape[0]), axis=0), -(-cols // image.shape[1]), axis=1)
    row_edges = np.linspace(0, image.shape[0], rows + 1).astype(int)
    col_edges = np.linspace(0, image.shape[1], cols + 1).astype(int)
    sums = np.add.reduceat(np.add.reduceat(image, row_edges[:-1], axis=0), col_edges[:-1], axis=1)
    areas = np.outer(np.diff(row_edges), np.diff(col_edges))
    return sums / areas


def _long_scenes(candidates: list[Candidate]) -> list[tuple[int, int]]:
    """``(start, stop)`` index ranges of scenes longer than ``MIN_SCENE_S``, longest first.

    A scene's extent runs from midway between the candidates around its first cut to midway around
    the next one; the first and last scenes extend half a sampling step past the outer candidates.
    """
    times = [c.timestamp for c in candidates]
    step = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 0.0
    bounds = [0, *scene_cuts(candidates), len(candidates)]
    scenes = []
    for start, stop in zip(bounds, bounds[1:]):
        begin = times[0] - step / 2 if start == 0 else (times[start - 1] + times[start]) / 2
        end = times[-1] + step / 2 if stop == len(times) else (times[stop - 1] + times[stop]) / 2
        if end - begin > MIN_SCENE_S:
            scenes.append((end - begin, start, stop))
    return [(start, stop) for _, start, stop in sorted(scenes, key=lambda s: -s[0])]


def _anchor_regions(times: list[float], budget: int) -> list[tuple[set[int], float, float]]:
    """``budget`` anchor times from the first to the last candidate, each with the candidates nearest it.

    Anchors include both ends, so the selection reaches the start and the end of the video.
    """
    first, last = times[0], times[-1]
    if budget == 1 or last <= first:
        return [(set(range(len(times))), (first + last) / 2, max(last - first, 1e-6))]
    gap = (last - first) / (budget - 1)
    regions: list[set[int]] = [set() for _ in range(budget)]
    for index, t in enumerate(times):
        regions[min(budget - 1, max(0, round((t - first) / gap)))].add(index)
    return [(members, first + k * gap, gap / 2) for k, members in enumerate(regions) if members]
