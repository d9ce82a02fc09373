"""What of a decode runs side by side: the audio pass beside the video, the selection's reducing
worker and JPEG pool, and the window that lets two containers share one source. The threads
themselves are started by ``streams.threads``.

libav and PIL release the GIL for all the heavy work, so these threads really run side by side.
``DecodeLimits.threads`` == 1 turns every pool into inline calls and the audio into a second pass.
"""

from __future__ import annotations

import io
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import BinaryIO

import av

from processors.video.frames import Shot, Timeline, finish, observe
from processors.video.media import DecodeLimits, Frame
from processors.video.media_reader import Seekable, seek_position
from processors.video.select import CoverageSelector
from streams.threads import Beside, pool

FINISH_THREADS = 2
"""Threads that JPEG-encode the chosen frames."""


class SharedWindow(Seekable):
    """A read position of its own over a source shared with another reader.

    Two containers (video seeks, audio pass) read the same seekable source from two threads; each
    gets a window, and the lock makes every seek-then-read atomic, so neither moves the other's
    position and the source (``BytesIO``, ``ChunkReader``) is only ever used by one thread at a time.
    """

    def __init__(self, source: BinaryIO, lock: threading.Lock) -> None:
        self._source = source
        self._lock = lock
        self._position = 0

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._position = seek_position(self._position, offset, whence, self._size)
        return self._position

    def _size(self) -> int:
        with self._lock:
            return self._source.seek(0, io.SEEK_END)

    def read(self, size: int = -1) -> bytes:
        with self._lock:
            self._source.seek(self._position)
            data = self._source.read(size)
        self._position += len(data or b"")
        return data or b""


def audio_beside(work: Callable[[threading.Event], bytes | None]) -> Beside[bytes | None]:
    """The audio decode, started at once so that it overlaps the video seeks.

    Audio is thousands of small packets, each a few Python round trips holding the GIL; keyframe
    decoding and scaling are long libav calls that release it. Side by side on two cores they take
    little longer than the video alone. ``cancel`` stops the pass at its next packet and waits for
    it, so no read of the source outlives ``decode_media``, whatever it raised.
    """
    return Beside(work, "dodolens-audio")


def executor(limits: DecodeLimits, workers: int, name: str) -> Executor:
    return pool(workers if limits.threads > 1 else 0, name)


class Selection:
    """Frames as a decode finds them, selected as they come (``CoverageSelector``).

    Each decoded frame is reduced to a candidate and judged on one worker thread while the decode
    thread goes on to the next; at most ``IN_FLIGHT`` decoded frames wait for it, so memory stays
    bounded by a few full-size frames (8K: 50 MB each). A kept frame is JPEG-encoded at once on a
    pool of ``FINISH_THREADS``; the selector holds at most ``max_frames`` of them.
    """

    IN_FLIGHT = 2

    def __init__(self, limits: DecodeLimits, timeline: Timeline) -> None:
        self.limits = limits
        self.timeline = timeline
        self.rotation = 0
        self.count = 0
        self._reduce = executor(limits, 1, "dodolens-shot")
        self._encode = executor(limits, FINISH_THREADS, "dodolens-jpeg")
        self._selector: CoverageSelector[Shot, Future[Frame]] = CoverageSelector(
            limits.max_frames, keep=lambda shot: self._encode.submit(finish, shot, limits)
        )
        self._pending: deque[Future[None]] = deque()

    def add(self, frame: av.VideoFrame) -> None:
        """Judge ``frame`` (candidates in time order); returns once it is queued."""
        if not self.count:
            self.rotation = round(frame.rotation / 90) * 90 % 360
        self.count += 1
        while len(self._pending) >= self.IN_FLIGHT:
            self._pending.popleft().result()
        self._pending.append(self._reduce.submit(self._judge, frame))

    def frames(self) -> list[Frame]:
        """The kept frames, JPEG-encoded, in time order."""
        while self._pending:
            self._pending.popleft().result()
        return [future.result() for future in self._selector.finish()]

    def close(self) -> None:
        for pool in (self._reduce, self._encode):
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Selection:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _judge(self, frame: av.VideoFrame) -> None:
        candidate, shrink = observe(frame, self.timeline, self.limits)
        self._selector.offer(candidate, shrink)
