"""What the first bytes of an upload say about how it can be read: pure functions, no PyAV.

The gateway's clients use them too, to send an MP4's index before its media (``upload_order``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

EBML_MAGIC = b"\x1a\x45\xdf\xa3"
HEAD_BYTES = 65536
"""How much of a file's start these functions need to see."""


def top_level_boxes(head: bytes | bytearray | memoryview) -> Iterator[tuple[bytes, int, int]]:
    """``(type, offset, size)`` of each ISO BMFF top-level box whose header lies in ``head``.

    Stops at the first header that is not a box (or not in ``head``); a box whose size runs to the
    end of the file (size 0) is reported with size 0 and ends the walk.
    """
    head = memoryview(head).cast("B")
    position = 0
    while position + 8 <= len(head):
        size = int.from_bytes(head[position : position + 4], "big")
        kind = bytes(head[position + 4 : position + 8])
        if not kind.isascii():
            return
        if size == 1:
            if position + 16 > len(head):
                return
            size = int.from_bytes(head[position + 8 : position + 16], "big")
            if size < 16:
                return
        elif size == 0:
            yield kind, position, 0
            return
        elif size < 8:
            return
        yield kind, position, size
        position += size


def streamable(head: bytes | bytearray | memoryview) -> bool:
    """Whether a file starting with ``head`` can be decoded front to back from its first bytes.

    Matroska/WebM (EBML magic), MPEG-TS or M2TS (sync bytes every 188/192 bytes) and ISO BMFF whose
    ``moov`` comes before any ``mdat`` (fragmented or fast-start MP4/MOV). Anything else (an MP4 with
    its index at the end, or an unknown format) is not.
    """
    if bytes(head[:4]) == EBML_MAGIC:
        return True
    if len(head) > 376 and head[0] == head[188] == head[376] == 0x47:
        return True
    if len(head) > 388 and head[4] == head[196] == head[388] == 0x47:
        return True
    for kind, _offset, _size in top_level_boxes(head):
        if kind == b"moov":
            return True
        if kind == b"mdat":
            return False
    return False


def index_offset(head: bytes | bytearray | memoryview) -> int | None:
    """Where the index of an MP4/MOV written with it at the end may start: the end of its first ``mdat``.

    None for anything else (no ``mdat`` header in ``head``, a ``moov`` before it, not ISO BMFF).
    Phones write their videos this way; once the bytes from this offset on are stored, the file can
    be read front to back like a fast-start one.
    """
    for kind, offset, size in top_level_boxes(head):
        if kind == b"moov":
            return None
        if kind == b"mdat":
            return offset + size if size else None
    return None


def leading_chunks(head: bytes | bytearray | memoryview, size: int, chunk_size: int) -> list[int]:
    """The chunks to send, and have stored, before all others: those holding an index at the end.

    With them stored first, a worker decodes the upload while it arrives instead of after its last
    chunk (``processors.decoder.follow_job``). Empty for any other file, which goes in plain order.
    """
    offset = index_offset(head)
    if offset is None or not chunk_size <= offset < size:
        return []
    return list(range(offset // chunk_size, -(-size // chunk_size)))


ISO_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"moof", b"styp", b"sidx"}


def peek(source: BinaryIO) -> bytes:
    """The first bytes, to tell a damaged video from something that never was one."""
    source.seek(0)
    head = source.read(512)
    source.seek(0)
    return bytes(head or b"")


def looks_like_container(head: bytes) -> bool:
    """ISO BMFF box, EBML (Matroska/WebM), MPEG-TS / M2TS sync bytes, RIFF, Ogg or FLV signature."""
    transport = len(head) > 196 and (head[0] == head[188] == 0x47 or head[4] == head[196] == 0x47)
    return (
        head[4:8] in ISO_BOXES
        or head.startswith(EBML_MAGIC)
        or transport
        or head.startswith((b"RIFF", b"OggS", b"FLV"))
    )
