"""Frames in overlapping batches, and the batches' answers merged into one inventory that counts each object once.

A home tour is too long for one request, so the frames go to the model in consecutive batches
that share one frame: batch k's last frame is batch k+1's first. The model answers each batch on
its own (the batches run at the same time), naming the frames each item is seen in; those frame
references are what joins the answers again:

- a room of a later batch that holds an item seen in the shared frame continues the room of the
  earlier batch that holds the same item there (whatever name each batch gave it); other rooms
  join an earlier room of the same name, or start a new one;
- within a room, an item of a later batch is the same object as an earlier batch's item with the
  same catalogue id (or label) when the earlier one was last seen at most ``BOUNDARY_REACH``
  frames before the shared frame and the later one first seen at most that far after it;
- an item only mentioned (no frames) is one object for the whole video, and joins a sighting of
  the same id or label anywhere: every batch hears the whole transcript (the transcription API
  gives no times finer than its pieces of some twenty minutes), so every batch may name it.

Merged lines keep the largest quantity and confidence any batch gave, all their frames, and are
excluded when any batch heard the customer keep them. Pure functions, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.inventory import MAX_FRAME_INDEX, Inventory, Item

BOUNDARY_REACH = 1


def plan(count: int, size: int) -> list[range]:
    """Consecutive spans of at most ``size`` frames over ``count`` frames, each sharing its first frame
    with the previous span's last; the spans are as even as the count allows."""
    if size < 2:
        raise ValueError("a batch holds at least 2 frames, so that batches can share one")
    if count <= size:
        return [range(count)] if count else []
    batches = -(-(count - 1) // (size - 1))
    step, extra = divmod(count - 1, batches)
    spans: list[range] = []
    start = 0
    for index in range(batches):
        stop = start + step + (index < extra) + 1
        spans.append(range(start, stop))
        start = stop - 1
    return spans


def halves(span: range) -> tuple[range, range]:
    """Two spans covering ``span`` that share its middle frame (a batch whose answer did not fit)."""
    if len(span) < 2:
        raise ValueError("a single frame cannot be split")
    middle = span.start + (len(span) - 1) // 2
    if len(span) == 2:
        return range(span.start, span.start + 1), range(span.start + 1, span.stop)
    return range(span.start, middle + 1), range(middle, span.stop)


@dataclass(frozen=True)
class BatchAnswer:
    """One batch's inventory, its item frames numbered within the batch (0 is ``span.start``)."""

    span: range
    inventory: Inventory


@dataclass
class _Line:
    item: Item
    batch: int


@dataclass
class _Room:
    name: str
    lines: list[_Line] = field(default_factory=list)

    def seen_at(self, frame: int) -> list[_Line]:
        return [line for line in self.lines if frame in line.item.frames]


def _key(item: Item) -> str:
    return item.catalogue_id or "label:" + (item.label or "").casefold()


def _fold(into: Item, other: Item) -> Item:
    return Item.model_validate(into.model_dump() | {
        "quantity": max(into.quantity, other.quantity),
        "confidence": max(into.confidence, other.confidence),
        "frames": [*into.frames, *other.frames],
        "excluded": into.excluded or other.excluded,
    })


def _globally(item: Item, offset: int) -> Item:
    """The item with its frames numbered over the whole video (past ``MAX_FRAME_INDEX`` they cannot be kept)."""
    frames = [offset + f for f in item.frames if offset + f <= MAX_FRAME_INDEX]
    return Item.model_validate(item.model_dump() | {"frames": frames})


def merge(answers: list[BatchAnswer]) -> Inventory:
    """One inventory from the answers of consecutive overlapping batches, frames numbered over the whole video."""
    ordered = sorted(answers, key=lambda a: (a.span.start, a.span.stop))
    rooms: list[_Room] = []
    mentioned: list[tuple[str, Item]] = []
    version = next((a.inventory.catalogue_version for a in ordered if a.inventory.catalogue_version), None)
    for batch, answer in enumerate(ordered):
        shared = answer.span.start
        for room in answer.inventory.rooms:
            items = [_globally(item, shared) for item in room.items]
            seen = [item for item in items if item.frames]
            mentioned += [(room.name, item) for item in items if not item.frames]
            if not seen:
                continue
            target = _continued(rooms, room.name, seen, shared, batch) or _room(rooms, room.name)
            for item in seen:
                _place(target, item, batch, shared)
    for room_name, item in mentioned:
        _mention(rooms, room_name, item)
    return Inventory(
        rooms=[{"name": r.name, "items": [line.item for line in r.lines]} for r in rooms if r.lines],
        catalogue_version=version,
    )


def _continued(rooms: list[_Room], name: str, seen: list[Item], shared: int, batch: int) -> _Room | None:
    """The earlier room this batch's room continues through the shared frame, if any."""
    if batch == 0:
        return None
    here = {_key(item) for item in seen if shared in item.frames}
    best, best_count = None, 0
    for room in rooms:
        count = len(here & {_key(line.item) for line in room.seen_at(shared) if line.batch < batch})
        if count > best_count or (count == best_count and count and room.name.casefold() == name.casefold()):
            best, best_count = room, count
    return best


def _room(rooms: list[_Room], name: str) -> _Room:
    for room in rooms:
        if room.name.casefold() == name.casefold():
            return room
    rooms.append(room := _Room(name))
    return room


def _place(room: _Room, item: Item, batch: int, shared: int) -> None:
    meets = min(item.frames) <= shared + BOUNDARY_REACH
    for line in room.lines:
        if (meets and line.batch < batch and _key(line.item) == _key(item)
                and max(line.item.frames) >= shared - BOUNDARY_REACH):
            line.item, line.batch = _fold(line.item, item), batch
            return
    room.lines.append(_Line(item, batch))


def _mention(rooms: list[_Room], room_name: str, item: Item) -> None:
    for room in rooms:
        for line in room.lines:
            if _key(line.item) == _key(item):
                line.item = _fold(line.item, item)
                return
    _room(rooms, room_name).lines.append(_Line(item, -1))
