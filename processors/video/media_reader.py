"""Read-only files over fixed-size chunks, so a large upload is never assembled in memory.

``ChunkReader`` is seekable: PyAV reads and seeks through it like a file; only the chunks around
the current read position are held (a small LRU), fetched on demand by ``fetch(index)``, which may
block: it runs on the decode thread. ``ArrivingReader`` is forward-only, for decoding an upload
while its chunks are still arriving: ``fetch(index)`` blocks until that chunk is there. Chunk
copies are zeroed when evicted and on ``close()`` so media bytes do not linger in freed memory
longer than needed. ``OrderedDigest`` hashes chunks as a reader happens to fetch them, so checking
a declared SHA-256 costs no second pass over the upload.
"""

from __future__ import annotations

import hashlib
import io
from collections import OrderedDict
from collections.abc import Callable

from streams.crypto import wipe


def seek_position(position: int, offset: int, whence: int, size: Callable[[], int]) -> int:
    """Where a seek from ``position`` lands, as ``io`` defines it; ``size()`` is asked only for SEEK_END."""
    if whence == io.SEEK_SET:
        target = offset
    elif whence == io.SEEK_CUR:
        target = position + offset
    elif whence == io.SEEK_END:
        target = size() + offset
    else:
        raise ValueError(f"invalid whence: {whence}")
    if target < 0:
        raise ValueError("negative seek position")
    return target


class Seekable:
    """What PyAV asks of a random-access source before it reads: readable and seekable."""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True


class ChunkReader(Seekable, io.RawIOBase):
    """Random access over ``size`` bytes split into ``chunk_size`` chunks (the last one may be shorter)."""

    def __init__(self, size: int, chunk_size: int, fetch: Callable[[int], bytes | bytearray], cache_chunks: int = 4,
                 on_chunk: Callable[[int, bytearray], None] | None = None) -> None:
        """``on_chunk(index, data)`` sees every chunk a read uses, fetched or cached: a checksum fed in
        order must not stall on a chunk that another read position fetched first."""
        super().__init__()
        if size < 0 or chunk_size <= 0 or cache_chunks <= 0:
            raise ValueError("size must be >= 0, chunk_size and cache_chunks > 0")
        self.size = size
        self.chunk_size = chunk_size
        self.cache_chunks = cache_chunks
        self.fetches = 0
        self._fetch = fetch
        self._on_chunk = on_chunk
        self._cache: OrderedDict[int, bytearray] = OrderedDict()
        self._position = 0

    def tell(self) -> int:
        self._check_open()
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        self._position = seek_position(self._position, offset, whence, lambda: self.size)
        return self._position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        """Fill ``buffer`` from the current position; fewer bytes only at end of file."""
        self._check_open()
        out = memoryview(buffer).cast("B")
        wanted = min(len(out), max(0, self.size - self._position))
        done = 0
        while done < wanted:
            index, offset = divmod(self._position, self.chunk_size)
            chunk = self._chunk(index)
            if self._on_chunk is not None:
                self._on_chunk(index, chunk)
            count = min(wanted - done, len(chunk) - offset)
            if count <= 0:
                raise OSError(f"chunk {index} is shorter than expected")
            out[done : done + count] = chunk[offset : offset + count]
            done += count
            self._position += count
        return done

    def close(self) -> None:
        """Zero and drop every cached chunk."""
        for chunk in self._cache.values():
            wipe(chunk)
        self._cache.clear()
        super().close()

    def _chunk(self, index: int) -> bytearray:
        """Chunk ``index`` from the cache, else fetched, checked for length, cached and oldest evicted."""
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        expected = min(self.chunk_size, self.size - index * self.chunk_size)
        self.fetches += 1
        chunk = _owned(self._fetch(index))
        if len(chunk) != expected:
            wipe(chunk)
            raise OSError(f"chunk {index} has {len(chunk)} bytes, expected {expected}")
        self._cache[index] = chunk
        while len(self._cache) > self.cache_chunks:
            wipe(self._cache.popitem(last=False)[1])
        return chunk

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed ChunkReader")


def _owned(data: bytes | bytearray) -> bytearray:
    """A chunk as a buffer the reader can wipe: a fetched ``bytearray`` is taken as is, ``bytes`` copied."""
    return data if isinstance(data, bytearray) else bytearray(data)


class ArrivingReader(io.RawIOBase):
    """Forward-only reads over ``size`` bytes of chunks fetched in index order, each once.

    Not seekable on purpose: PyAV then demuxes a streamable container (WebM, fragmented MP4,
    MPEG-TS) front to back without looking for an index at the end that has not arrived yet.
    """

    def __init__(self, size: int, chunk_size: int, fetch: Callable[[int], bytes | bytearray]) -> None:
        super().__init__()
        if size < 0 or chunk_size <= 0:
            raise ValueError("size must be >= 0 and chunk_size > 0")
        self.size = size
        self.chunk_size = chunk_size
        self.position = 0
        self._fetch = fetch
        self._index = -1
        self._chunk = bytearray()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        """Fill ``buffer`` from the current chunk, fetching (and waiting for) the next one when it runs out."""
        if self.closed:
            raise ValueError("I/O operation on closed ArrivingReader")
        if self.position >= self.size:
            return 0
        index, offset = divmod(self.position, self.chunk_size)
        if index != self._index:
            wipe(self._chunk)
            self._chunk = _owned(self._fetch(index))
            self._index = index
            expected = min(self.chunk_size, self.size - index * self.chunk_size)
            if len(self._chunk) != expected:
                raise OSError(f"chunk {index} has {len(self._chunk)} bytes, expected {expected}")
        out = memoryview(buffer).cast("B")
        count = min(len(out), len(self._chunk) - offset)
        out[:count] = self._chunk[offset : offset + count]
        self.position += count
        return count

    def close(self) -> None:
        wipe(self._chunk)
        super().close()


class OrderedDigest:
    """SHA-256 of ``count`` chunks that a reader fetches in whatever order it needs them.

    A chunk is hashed when it is the next one in order and skipped otherwise; ``hexdigest`` fetches
    only the chunks the reader never reached in order (none for a front-to-back pass).
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self.next = 0
        self._hash = hashlib.sha256()

    def offer(self, index: int, data: bytes | bytearray) -> None:
        if index == self.next:
            self._hash.update(data)
            self.next += 1

    def hexdigest(self, fetch: Callable[[int], bytes | bytearray]) -> str:
        """The SHA-256 of all ``count`` chunks, fetching those not hashed yet. ``fetch`` may itself
        offer what it reads (a reader's fetcher does): the chunk is then hashed once, not again."""
        while self.next < self.count:
            index = self.next
            chunk = fetch(index)
            self.offer(index, chunk)
            if isinstance(chunk, bytearray):
                wipe(chunk)
        return self._hash.hexdigest()
