"""A generated home tour with ground truth, and the reader a fake vision model uses to see its objects.

The tour is what a phone records walking through a home: H.264 in MP4 with the index at the end and
a keyframe every second; in each room the camera pans along a wall of distinct objects at 150-400 px/s
(scaled to the picture width), stops once for a still stretch, and between rooms it walks quickly
through a blurred corridor where nothing can be recognised.

Every object is a square card on one of two shelves (fixed bands of the picture height; the camera
only pans sideways, so the bands never move): a magenta bar on its left, a cyan bar on its right and
a 3x3 grid of black/white cells between them holding the object's id (8 bits) and an even-parity bit.
Saturated bars survive JPEG chroma subsampling and downscaling; the card is read only when both bars
are whole and clear of the picture's edges, so ``read_codes`` sees an object exactly when the ground
truth says it is wholly in view (plus a thin quiet zone the truth also demands).

Pure and deterministic: the same arguments give the same bytes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import av
import numpy as np
from PIL import Image

ROOM_NAMES = (
    "kitchen", "living room", "bedroom", "bathroom", "hallway", "office", "dining room", "nursery",
    "laundry", "guest room", "garage", "attic", "study", "pantry", "playroom", "cellar",
)
SHELF_TOPS = (0.10, 0.56)
"""Top of each shelf band, as a share of the picture height."""
CARD = 0.30
"""Card side as a share of the picture height."""
BAR = 0.14
"""Width of each coloured bar as a share of the card side."""
CELL_TOP, CELL_BOTTOM = 0.06, 0.94
"""Vertical extent of the 3x3 cell grid within a card (share of the card side)."""
QUIET = 0.08
"""Share of the card side that must also be in view on each side for the card to count as wholly in view."""
MAX_ID = 255

_MAGENTA = (106, 202, 222)
_CYAN = (170, 166, 16)
_BLACK, _WHITE = 16, 235
_SPEED_PX_AT_1280 = (150.0, 400.0)


@dataclass(frozen=True)
class TourObject:
    """One object of the tour: its id (what its code says), its room, when it is wholly in view."""

    id: int
    room: str
    intervals: tuple[tuple[float, float], ...]
    """Closed ``(first, last)`` frame times, seconds on the container's timeline."""

    def visible_at(self, seconds: float, tolerance: float = 1e-3) -> bool:
        return any(start - tolerance <= seconds <= end + tolerance for start, end in self.intervals)


@dataclass(frozen=True)
class Tour:
    """The video and what is true about it."""

    data: bytes
    width: int
    height: int
    fps: int
    duration: float
    objects: tuple[TourObject, ...]
    rooms: tuple[tuple[str, float, float], ...]
    """``(name, first frame time, last frame time)`` of each room's pan."""
    stills: tuple[tuple[float, float], ...]
    """``(first, last)`` frame times during which the camera stands still."""
    walks: tuple[tuple[float, float], ...]
    """``(first, last)`` frame times of the blurred walks between rooms."""
    frame_times: tuple[float, ...] = field(repr=False, default=())


@dataclass
class _Card:
    id: int
    shelf: int
    x: int


@dataclass
class _Segment:
    """A run of frames cut from one panorama: per frame, the panorama column at the picture's left edge."""

    luma: np.ndarray
    u: np.ndarray
    v: np.ndarray
    offsets: list[int]
    room: str | None
    cards: list[_Card]
    still: tuple[int, int] | None = None


def make_tour(
    *,
    rooms: int = 10,
    objects_per_room: int = 7,
    width: int = 1280,
    height: int = 720,
    fps: int = 30,
    still_s: float = 15.0,
    walk_s: float = 2.0,
    seed: int = 0,
    preset: str = "ultrafast",
) -> Tour:
    """Encode a tour of ``rooms`` rooms with ``objects_per_room`` objects each (ids 1, 2, ... in order).

    The still stretch is in the middle of the middle room's pan (``still_s`` 0 for none). Defaults
    give about 2.4 minutes with 70 objects; ``width=320, height=180, fps=10`` makes a quick test clip.
    """
    if width % 2 or height % 2:
        raise ValueError("width and height must be even (yuv420p)")
    if rooms * objects_per_room > MAX_ID:
        raise ValueError(f"at most {MAX_ID} objects")
    rng = np.random.default_rng(seed)
    card = _even(CARD * height)
    segments: list[_Segment] = []
    next_id = 1
    for room in range(rooms):
        if room:
            segments.append(_walk(width, height, fps, walk_s, rng))
        cards = []
        x = _even(width * rng.uniform(0.4, 0.65))
        for index in range(objects_per_room):
            cards.append(_Card(id=next_id, shelf=index % 2, x=x))
            next_id += 1
            x += _even(card * rng.uniform(0.8, 2.2))
        length = _even(max(cards[-1].x + card + width * rng.uniform(0.4, 0.65), width + 2))
        speed = rng.uniform(*_SPEED_PX_AT_1280) * width / 1280
        name = ROOM_NAMES[room % len(ROOM_NAMES)] + (f" {room // len(ROOM_NAMES) + 1}" if room >= len(ROOM_NAMES) else "")
        still = still_s if room == rooms // 2 else 0.0
        segments.append(_room(name, cards, length, width, height, fps, speed, still, rng))
    return _encode(segments, width, height, fps, card, preset)


def read_codes(jpeg: bytes) -> set[int]:
    """Ids of the objects whose card is wholly visible in ``jpeg`` (any size, as the decoder sends it)."""
    image = Image.open(io.BytesIO(jpeg)).convert("YCbCr")
    pixels = np.asarray(image, dtype=np.int16)
    height, width = pixels.shape[:2]
    side = CARD * height
    found: set[int] = set()
    for top in SHELF_TOPS:
        y0, y1 = int(height * top + side * 0.25), int(height * top + side * 0.75)
        if y1 <= y0:
            continue
        cb, cr = pixels[y0:y1, :, 1], pixels[y0:y1, :, 2]
        magenta = _runs(((cb > 170) & (cr > 175)).mean(axis=0) > 0.6)
        cyan = _runs(((cb > 140) & (cr < 75)).mean(axis=0) > 0.6)
        for left_start, left_end in magenta:
            right = next(((s, e) for s, e in cyan if s >= left_end), None)
            if right is None or any(left_end <= s < right[0] for s, _ in magenta):
                continue
            span = right[1] - left_start
            whole = left_start >= 2 and right[1] <= width - 2
            if whole and 0.85 * side <= span <= 1.15 * side and left_end - left_start >= 0.6 * BAR * side:
                code = _read_cells(pixels[:, :, 0], left_end, right[0], height * top, side)
                if code is not None:
                    found.add(code)
    return found


def code_bits(identifier: int) -> list[int]:
    """The 9 cells of an id, row by row: 8 id bits (least significant first), then even parity."""
    bits = [(identifier >> index) & 1 for index in range(8)]
    return [*bits, sum(bits) % 2]


def _read_cells(luma: np.ndarray, left: int, right: int, top: float, side: float) -> int | None:
    """The id in the grid between the bars, or None when a cell is not clearly black or white or parity fails."""
    columns = np.linspace(left, right, 4)
    rows = np.linspace(top + CELL_TOP * side, top + CELL_BOTTOM * side, 4)
    bits = []
    for row in range(3):
        for column in range(3):
            dy, dx = (rows[row + 1] - rows[row]) / 4, (columns[column + 1] - columns[column]) / 4
            patch = luma[int(rows[row] + dy): int(rows[row + 1] - dy) + 1, int(columns[column] + dx): int(columns[column + 1] - dx) + 1]
            if patch.size == 0:
                return None
            level = float(patch.mean())
            if 90 <= level <= 165:
                return None
            bits.append(1 if level < 128 else 0)
    if sum(bits[:8]) % 2 != bits[8]:
        return None
    identifier = sum(bit << index for index, bit in enumerate(bits[:8]))
    return identifier or None


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of True in a 1-D mask."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def _wall(length: int, height: int, rng: np.random.Generator, tint: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """A textured wall in yuv420p planes: block texture on a gradient, a faint colour tint (never saturated)."""
    block = max(4, height // 24)
    texture = rng.integers(-50, 51, size=(height // block + 1, length // block + 1), dtype=np.int16)
    texture = np.repeat(np.repeat(texture, block, axis=0), block, axis=1)[:height, :length]
    base = rng.uniform(90, 160)
    ramp = np.linspace(-25, 25, height, dtype=np.float32)[:, None]
    luma = np.clip(base + ramp + texture, 20, 230).astype(np.uint8)
    u = np.full((height // 2, length // 2), 128 + tint[0], np.uint8)
    v = np.full((height // 2, length // 2), 128 + tint[1], np.uint8)
    return luma, u, v


def _draw_card(luma: np.ndarray, u: np.ndarray, v: np.ndarray, card: _Card, side: int, height: int) -> None:
    """Paint a card into the planes: magenta bar, the id's cells on white, cyan bar."""
    x, y = card.x, _even(SHELF_TOPS[card.shelf] * height)
    bar = _even(BAR * side)
    luma[y: y + side, x: x + side] = _WHITE
    u[y // 2: (y + side) // 2, x // 2: (x + side) // 2] = 128
    v[y // 2: (y + side) // 2, x // 2: (x + side) // 2] = 128
    for (start, stop), (yy, uu, vv) in (((x, x + bar), _MAGENTA), ((x + side - bar, x + side), _CYAN)):
        luma[y: y + side, start:stop] = yy
        u[y // 2: (y + side) // 2, start // 2: stop // 2] = uu
        v[y // 2: (y + side) // 2, start // 2: stop // 2] = vv
    columns = np.linspace(x + bar, x + side - bar, 4).round().astype(int)
    rows = np.linspace(y + CELL_TOP * side, y + CELL_BOTTOM * side, 4).round().astype(int)
    for index, bit in enumerate(code_bits(card.id)):
        row, column = divmod(index, 3)
        inset = max(1, side // 60)
        luma[rows[row] + inset: rows[row + 1] - inset, columns[column] + inset: columns[column + 1] - inset] = (
            _BLACK if bit else _WHITE
        )


def _room(name: str, cards: list[_Card], length: int, width: int, height: int, fps: int, speed: float,
          still_s: float, rng: np.random.Generator) -> _Segment:
    tint = (int(rng.integers(-14, 15)), int(rng.integers(-14, 15)))
    luma, u, v = _wall(length, height, rng, tint)
    side = _even(CARD * height)
    for card in cards:
        _draw_card(luma, u, v, card, side, height)
    travel = length - width
    pan_frames = max(2, round(travel / speed * fps))
    offsets = [_even_floor(travel * index / (pan_frames - 1)) for index in range(pan_frames)]
    still = None
    if still_s > 0:
        middle = len(offsets) // 2
        hold = round(still_s * fps)
        offsets = offsets[:middle] + [offsets[middle]] * hold + offsets[middle:]
        still = (middle, middle + hold)
    return _Segment(luma, u, v, offsets, name, cards, still)


def _walk(width: int, height: int, fps: int, seconds: float, rng: np.random.Generator) -> _Segment:
    """A fast pan through a corridor, smoothed so heavily that no edge (and no card) survives."""
    frames = max(1, round(seconds * fps))
    travel = _even(width * 1.5)
    luma, u, v = _wall(width + travel, height, rng, (0, 0))
    image = Image.fromarray(luma)
    small = image.resize((max(2, image.width // 24), max(2, image.height // 24)), Image.Resampling.BOX)
    luma = np.asarray(small.resize(image.size, Image.Resampling.BILINEAR))
    offsets = [_even_floor(travel * index / max(1, frames - 1)) for index in range(frames)]
    return _Segment(luma, u, v, offsets, None, [])


def _even_floor(value: float) -> int:
    return int(value) // 2 * 2


def _encode(segments: list[_Segment], width: int, height: int, fps: int, side: int, preset: str) -> Tour:
    out = io.BytesIO()
    quiet = QUIET * side
    seen: dict[int, list[int]] = {}
    owners: dict[int, str] = {}
    rooms, stills, walks = [], [], []
    index = 0
    with av.open(out, mode="w", format="mp4") as muxer:
        stream = muxer.add_stream("libx264", rate=fps, options={"preset": preset})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.gop_size = fps
        for segment in segments:
            first = index
            for offset in segment.offsets:
                planes = np.concatenate([
                    segment.luma[:, offset: offset + width].ravel(),
                    segment.u[:, offset // 2: (offset + width) // 2].ravel(),
                    segment.v[:, offset // 2: (offset + width) // 2].ravel(),
                ]).reshape(height * 3 // 2, width)
                frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
                frame.pts = index
                muxer.mux(stream.encode(frame))
                for card in segment.cards:
                    owners[card.id] = segment.room or ""
                    if offset <= card.x - quiet and card.x + side + quiet <= offset + width:
                        seen.setdefault(card.id, []).append(index)
                index += 1
            span = (first / fps, (index - 1) / fps)
            if segment.room is None:
                walks.append(span)
            else:
                rooms.append((segment.room, *span))
            if segment.still is not None:
                stills.append(((first + segment.still[0]) / fps, (first + segment.still[1] - 1) / fps))
        muxer.mux(stream.encode())
    objects = tuple(
        TourObject(identifier, owners[identifier], _intervals(seen.get(identifier, []), fps))
        for identifier in sorted(owners)
    )
    return Tour(
        data=out.getvalue(), width=width, height=height, fps=fps, duration=index / fps, objects=objects,
        rooms=tuple(rooms), stills=tuple(stills), walks=tuple(walks),
        frame_times=tuple(i / fps for i in range(index)),
    )


def _intervals(frames: list[int], fps: int) -> tuple[tuple[float, float], ...]:
    """Consecutive frame indexes merged into closed time intervals."""
    spans: list[tuple[float, float]] = []
    start = previous = None
    for frame in frames:
        if previous is None or frame != previous + 1:
            if start is not None:
                spans.append((start / fps, previous / fps))
            start = frame
        previous = frame
    if start is not None and previous is not None:
        spans.append((start / fps, previous / fps))
    return tuple(spans)
