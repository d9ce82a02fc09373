"""The thread side of a decode, in one place: the audio pass beside the video, the shrinking worker,
the JPEG pool, and the window that lets two containers share one source.

libav and PIL release the GIL for all the heavy work, so these threads really run side by side.
``DecodeLimits.threads`` == 1 turns every pool into inline calls and the audio into a second pass.
"""

from __future__ import annotations

import io
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import BinaryIO, TypeVar

from processors.video.frames import Shot, finish
from processors.video.media import DecodeLimits, Frame
from processors.video.media_reader import seek_position

T = TypeVar("T")

FINISH_THREADS = 2
"""Threads that JPEG-encode the chosen frames."""


class SharedWindow:
    """A read position of its own over a source shared with another reader.

    Two containers (video seeks, audio pass) read the same seekable source from two threads; each
    gets a window, and the lock makes every seek-then-read atomic, so neither moves the other's
    position and the source (``BytesIO``, ``ChunkReader``) is only ever used by one thread at a time.
    """

    def __init__(self, source: BinaryIO, lock: threading.Lock) -> None:
        self._source = source
        self._lock = lock
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

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


class AudioPass:
    """The audio decode, started at once on its own thread so that it overlaps the video seeks.

    Audio is thousands of small packets, each a few Python round trips holding the GIL; keyframe
    decoding and scaling are long libav calls that release it. Side by side on two cores they take
    little longer than the video alone. ``cancel`` stops the pass at its next packet and waits for
    it, so no read of the source outlives ``decode_media``, whatever it raised.
    """

    def __init__(self, work: Callable[[threading.Event], bytes | None]) -> None:
        self._stop = threading.Event()
        self._work = work
        self._outcome: list[bytes | None] = []
        self._error: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name="dodolens-audio", daemon=True)
        self._thread.start()

    def result(self) -> bytes | None:
        """The WAV (None without audio) once the pass is done; re-raises what the pass raised."""
        self._thread.join()
        if self._error:
            raise self._error[0]
        return self._outcome[0]

    def cancel(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            self._outcome.append(self._work(self._stop))
        except BaseException as exc:  # noqa: BLE001 - handed over to the caller's thread by result()
            self._error.append(exc)


class Inline(Executor):
    """An executor that runs each task at once on the calling thread (``DecodeLimits.threads`` == 1)."""

    def submit(self, fn: Callable[..., T], /, *args: object, **kwargs: object) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - kept in the future, raised by result() as from a thread
            future.set_exception(exc)
        return future


def executor(limits: DecodeLimits, workers: int, name: str) -> Executor:
    return Inline() if limits.threads <= 1 else ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)


def finish_all(shots: list[Shot], limits: DecodeLimits) -> list[Frame]:
    """``finish`` for each chosen candidate, in order, on two threads: colour conversion and JPEG
    encoding run in libav and PIL without the GIL, so two frames are finished at once on two cores."""
    if len(shots) < 2 or limits.threads <= 1:
        return [finish(shot, limits) for shot in shots]
    with ThreadPoolExecutor(max_workers=FINISH_THREADS, thread_name_prefix="dodolens-jpeg") as pool:
        return list(pool.map(finish, shots, itertools.repeat(limits)))
