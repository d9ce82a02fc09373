"""A seekable, read-only file over fixed-size chunks, so a large upload is never assembled in memory.

PyAV reads and seeks through it like a file; only the chunks around the current read position are
held (a small LRU), fetched on demand by ``fetch(index)``, which may block: it runs on the decode
thread. Chunk copies are zeroed when evicted and on ``close()`` so media bytes do not linger in
freed memory longer than needed.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from collections.abc import Callable

from streams.crypto import wipe


class ChunkReader(io.RawIOBase):
    """Random access over ``size`` bytes split into ``chunk_size`` chunks (the last one may be shorter)."""

    def __init__(self, size: int, chunk_size: int, fetch: Callable[[int], bytes], cache_chunks: int = 4) -> None:
        super().__init__()
        if size < 0 or chunk_size <= 0 or cache_chunks <= 0:
            raise ValueError("size must be >= 0, chunk_size and cache_chunks > 0")
        self.size = size
        self.chunk_size = chunk_size
        self.cache_chunks = cache_chunks
        self.fetches = 0
        self._fetch = fetch
        self._cache: OrderedDict[int, bytearray] = OrderedDict()
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._check_open()
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._position + offset
        elif whence == io.SEEK_END:
            position = self.size + offset
        else:
            raise ValueError(f"invalid whence: {whence}")
        if position < 0:
            raise ValueError("negative seek position")
        self._position = position
        return position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        """Fill ``buffer`` from the current position; fewer bytes only at end of file."""
        self._check_open()
        out = memoryview(buffer).cast("B")
        wanted = min(len(out), max(0, self.size - self._position))
        done = 0
        while done < wanted:
            index, offset = divmod(self._position, self.chunk_size)
            chunk = self._chunk(index)
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
        chunk = bytearray(self._fetch(index))
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

