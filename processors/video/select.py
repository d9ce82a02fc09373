"""Which candidate frames go to the vision model: one each time the camera has shown enough new view.

Candidates come about a second apart (``CANDIDATE_SPACING_S``). Between consecutive candidates the
global motion is estimated by phase correlation on their small grey pictures (``Candidate.grey``,
about 128 px wide); a scene cut or a picture too blurred to match starts a new view. A frame is kept
each time the view has moved on by ``NEW_VIEW_SHARE`` of the picture since the last kept one: the
sharpest candidate of the window that moved on by between ``WINDOW_FROM`` and all of that share. A
still camera adds nothing; a blurred stretch waits for the next sharp candidate; the end of a view
(a cut, or the end of the video) keeps one more frame if the view moved on at all since the last one.
There is no budget, only a ceiling: above it, the kept frames that add least new view are dropped.

``CoverageSelector`` works as the decode goes, so only a few candidates' pictures are ever held;
``select_frames`` runs it over a list. Pure numpy: cheap, deterministic, testable without video.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

P = TypeVar("P")
K = TypeVar("K")

CANDIDATE_SPACING_S = 1.0
"""Time between two candidates: phones write a keyframe every 1-2 s; a 400 px/s pan moves a third of
a 1280-px picture in that time, well within what phase correlation follows."""

NEW_VIEW_SHARE = 0.75
"""Share of the picture that must be new since the last kept frame before another is kept. An object
up to a quarter of the picture wide is wholly in view over three quarters of the pan, so frames this
far apart show each one whole at least once."""

WINDOW_FROM = 0.6
"""Candidates that moved on by at least this share of ``NEW_VIEW_SHARE`` may be kept in its place:
the sharpest of them is."""

TAIL_SHARE = 0.3
"""When a view ends (a cut, a blur, the end of the video), the stretch since the last kept frame is
kept too if it moved on by more than this share of the picture. Less is left out: what only that
stretch shows whole is an object cut by the last kept frame's edge, and a frame for each such end
costs more than the few objects it adds."""

MIN_MATCH = 0.1
"""Phase-correlation peak (1.0: identical pictures; about 0.02 for unrelated ones) below which two
candidates are not taken to show the same view."""

MIN_CORRELATION = 0.6
"""Correlation of the overlapping parts of two aligned candidates below which they show different places."""

CUT_THRESHOLD = 30.0
"""Mean absolute difference, in grey levels (0-255), between the 8x8 block-mean thumbnails of two
consecutive candidates above which a scene cut is declared. Block means ignore blur and fine motion
(texture, noise) but follow what changes with a new room: overall brightness and where light and dark
areas sit. 30 is about 12 % of the range: a moving object covering a sixteenth of the picture stays
well below it, a change of room or lighting goes above."""

BLUR_RATIO = 0.25
"""A candidate less sharp than this share of its recent neighbours (``SHARPNESS_WINDOW``, upper
quartile) is blurred: never kept while a sharp one can be."""

SHARPNESS_WINDOW = 9
"""Candidates that set the sharpness a candidate is judged against: recent ones only, so a dim room
after a bright one is not taken for a blurred one for longer than a few seconds."""

SHARP_ENOUGH = 0.8
"""Candidates of a window at least this share of its sharpest count as sharp as it: the one furthest
along is kept, which spaces kept frames as far apart as the share allows."""

WINDOW_PICTURES = 3
"""Pictures held for the window: its sharpest few."""


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


def is_cut(before: np.ndarray, after: np.ndarray) -> bool:
    """Whether a new scene starts between two pictures (see ``CUT_THRESHOLD``)."""
    a, b = _block_means(before, rows=8, cols=8), _block_means(after, rows=8, cols=8)
    return float(np.abs(a - b).mean()) > CUT_THRESHOLD


def same_view(before: np.ndarray, after: np.ndarray) -> bool:
    """Whether two aligned pictures of one size show the same place: no cut between them and their
    pixels agree (``MIN_CORRELATION``), which a chance peak of the phase correlation does not give."""
    if before.shape != after.shape or before.size < 64 or is_cut(before, after):
        return False
    a, b = before.astype(np.float32).ravel(), after.astype(np.float32).ravel()
    a, b = a - a.mean(), b - b.mean()
    scale = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return scale > 0 and float((a * b).sum()) / scale >= MIN_CORRELATION


def scene_cuts(candidates: list[Candidate]) -> list[int]:
    """Indexes ``i`` where a new scene starts between candidates ``i - 1`` and ``i``."""
    return [i for i in range(1, len(candidates)) if is_cut(candidates[i - 1].grey, candidates[i].grey)]


def displacement(before: np.ndarray, after: np.ndarray) -> tuple[float, float] | None:
    """How far the picture content moved from ``before`` to ``after``, as shares of its width and height
    (positive: right, down); None when the two do not match well enough to tell (``MIN_MATCH``).

    Phase correlation: the normalised cross-power spectrum of two views of one scene is a pure phase
    ramp whose inverse transform peaks at their offset. A Hann window keeps the picture borders from
    matching each other.
    """
    a, b = np.asarray(before, np.float32), np.asarray(after, np.float32)
    if a.shape != b.shape or a.ndim != 2 or min(a.shape) < 8:
        return None
    window = np.outer(np.hanning(a.shape[0]), np.hanning(a.shape[1])).astype(np.float32)
    fa, fb = np.fft.rfft2((a - a.mean()) * window), np.fft.rfft2((b - b.mean()) * window)
    cross = fb * np.conj(fa)
    cross /= np.maximum(np.abs(cross), 1e-6)
    surface = np.fft.irfft2(cross, s=a.shape)
    row, column = np.unravel_index(int(np.argmax(surface)), surface.shape)
    if float(surface[row, column]) < MIN_MATCH:
        return None
    dy = row - a.shape[0] if row > a.shape[0] // 2 else row
    dx = column - a.shape[1] if column > a.shape[1] // 2 else column
    return dx / a.shape[1], dy / a.shape[0]


def new_view(offset: tuple[float, float]) -> float:
    """Share of a picture that is not in another one shifted by ``offset`` (shares of width and height)."""
    dx, dy = offset
    return 1.0 - max(0.0, 1.0 - abs(dx)) * max(0.0, 1.0 - abs(dy))


@dataclass
class _Seen:
    """What the selector remembers of a candidate: where its view sits within its run of matched views."""

    timestamp: float
    grey: np.ndarray
    sharpness: float
    run: int
    offset: tuple[float, float]
    payload: object = None


@dataclass
class _Kept(Generic[K]):
    seen: _Seen
    adds: float
    handle: K


class CoverageSelector(Generic[P, K]):
    """Chooses frames as candidates arrive, in time order; holds only the window's pictures.

    ``offer(candidate, picture)`` calls ``picture()`` only for a candidate that may be kept, and
    ``keep(picture)`` once one is: the caller turns it into whatever it stores (a JPEG being encoded).
    ``finish()`` returns those, in time order, at most ``ceiling`` of them.
    """

    def __init__(self, ceiling: int, keep: Callable[[P], K], share: float = NEW_VIEW_SHARE) -> None:
        self.ceiling = max(1, ceiling)
        self.share = share
        self._keep = keep
        self._kept: list[_Kept[K]] = []
        self._window: list[_Seen] = []
        self._tail: _Seen | None = None
        self._previous: _Seen | None = None
        self._runs = 0
        self._scores: deque[float] = deque(maxlen=SHARPNESS_WINDOW)

    def offer(self, candidate: Candidate, picture: Callable[[], P]) -> None:
        seen = self._place(candidate)
        self._scores.append(seen.sharpness)
        sharp = seen.sharpness > 0 and seen.sharpness >= BLUR_RATIO * float(np.percentile(self._scores, 75))
        last = self._kept[-1].seen if self._kept else None
        if last is not None and seen.run != last.run:
            self._close_view()
            last = self._kept[-1].seen if self._kept else None
        self._previous = seen
        moved = self._moved(last, seen)
        while moved > self.share and self._window:
            best = _best(self._window)
            self._commit(best)
            later = [s for s in self._window if s.timestamp > best.timestamp]
            self._window, self._tail = [], None
            for other in later:
                self._consider(other, self._moved(best, other))
            last, moved = best, self._moved(best, seen)
        if not sharp:
            return
        if moved > self.share:
            seen.payload = picture()
            self._commit(seen)
        elif moved >= WINDOW_FROM * self.share or moved > TAIL_SHARE:
            seen.payload = picture()
            self._consider(seen, moved)

    def finish(self) -> list[K]:
        self._close_view()
        return [kept.handle for kept in self._kept]

    def _place(self, candidate: Candidate) -> _Seen:
        """The candidate within a run of matched views: chained to the previous candidate, else to the
        last kept frame (a camera back from a blurred swing), else the start of a new run."""
        grey = np.asarray(candidate.grey)
        score = sharpness(grey)
        for anchor in (self._previous, self._kept[-1].seen if self._kept else None):
            if anchor is None or anchor.grey.shape != grey.shape:
                continue
            step = displacement(anchor.grey, grey)
            if step is not None and same_view(*_overlap(anchor.grey, grey, step)):
                offset = (anchor.offset[0] + step[0], anchor.offset[1] + step[1])
                return _Seen(candidate.timestamp, grey, score, anchor.run, offset)
        self._runs += 1
        return _Seen(candidate.timestamp, grey, score, self._runs, (0.0, 0.0))

    @staticmethod
    def _moved(last: _Seen | None, seen: _Seen) -> float:
        if last is None or last.run != seen.run:
            return 1.0
        return new_view((seen.offset[0] - last.offset[0], seen.offset[1] - last.offset[1]))

    def _consider(self, seen: _Seen, moved: float) -> None:
        """Hold a sharp candidate that may yet be kept: in the window, or as the view's latest tail."""
        if moved >= WINDOW_FROM * self.share:
            self._window.append(seen)
            if len(self._window) > WINDOW_PICTURES:
                self._window.remove(min(self._window, key=lambda s: s.sharpness))
        elif moved > TAIL_SHARE:
            self._tail = seen

    def _close_view(self) -> None:
        """The view ended: keep the window's choice, else the last stretch it moved on by. When that
        frame is still close enough to the one before the last kept, it replaces the last kept."""
        last = self._kept[-1].seen if self._kept else None
        closing = _best(self._window) if self._window else self._tail
        self._window, self._tail = [], None
        if closing is None or last is None or closing.run != last.run:
            return
        if len(self._kept) >= 2 and self._moved(self._kept[-2].seen, closing) <= self.share:
            self._kept.pop()
        self._commit(closing)

    def _commit(self, seen: _Seen) -> None:
        previous = next((k.seen for k in reversed(self._kept) if k.seen.timestamp < seen.timestamp), None)
        handle = self._keep(seen.payload)  # type: ignore[arg-type]
        seen.payload = None
        self._kept.append(_Kept(seen, self._moved(previous, seen), handle))
        self._kept.sort(key=lambda k: k.seen.timestamp)
        self._window = [s for s in self._window if s is not seen]
        if self._tail is seen:
            self._tail = None
        while len(self._kept) > self.ceiling:
            self._drop_least_new()

    def _drop_least_new(self) -> None:
        """Drop the kept frame that adds least new view over the one before it; its successor then
        adds what both did."""
        index = min(range(len(self._kept)), key=lambda i: (self._kept[i].adds, -i))
        del self._kept[index]
        if index < len(self._kept):
            before = self._kept[index - 1].seen if index else None
            self._kept[index].adds = self._moved(before, self._kept[index].seen)


def _best(window: list[_Seen]) -> _Seen:
    """The window's sharpest candidate; among those nearly as sharp, the one furthest along."""
    top = max(s.sharpness for s in window)
    return max((s for s in window if s.sharpness >= SHARP_ENOUGH * top), key=lambda s: s.timestamp)


def select_frames(candidates: Iterable[Candidate], ceiling: int, share: float = NEW_VIEW_SHARE) -> list[int]:
    """Indexes of the candidates ``CoverageSelector`` keeps, in time order (candidates sorted by time)."""
    selector: CoverageSelector[int, int] = CoverageSelector(ceiling, keep=lambda index: index, share=share)
    for index, candidate in enumerate(candidates):
        selector.offer(candidate, lambda index=index: index)  # type: ignore[misc]
    return selector.finish()


def _overlap(before: np.ndarray, after: np.ndarray, step: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """The parts of two pictures that show the same place if the content moved by ``step``."""
    height, width = before.shape
    dx, dy = round(step[0] * width), round(step[1] * height)
    if abs(dx) >= width - 8 or abs(dy) >= height - 8:
        return before[:0], after[:0]
    a = before[max(0, -dy): height - max(0, dy), max(0, -dx): width - max(0, dx)]
    b = after[max(0, dy): height - max(0, -dy), max(0, dx): width - max(0, -dx)]
    return a, b


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
