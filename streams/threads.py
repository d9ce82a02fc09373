"""Every crossing between the event loop and threads, in one place.

Blocking work (PyAV, PIL, SQLite, Airtable's client, AES on large buffers, a file's SHA-256) runs
off the event loop, and threads report back to it, only through these functions, so that which
thread runs what, and how a thread's outcome reaches the loop, is decided here alone. A test fails
if another module starts a thread or a pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

T = TypeVar("T")


async def in_thread(fn: Callable[..., T], /, *args: object, **kwargs: object) -> T:
    """``fn(*args, **kwargs)`` on the loop's default executor: short blocking calls (a disk write, a seal)."""
    return await asyncio.to_thread(fn, *args, **kwargs)


async def in_pool(threads: Executor, fn: Callable[..., T], /, *args: object) -> T:
    """``fn(*args)`` on ``threads`` (a ``pool``): work that must not take more threads than a limit allows."""
    return await asyncio.get_running_loop().run_in_executor(threads, fn, *args)


async def in_own_thread(fn: Callable[..., T], /, *args: object) -> T:
    """``fn(*args)`` on a thread of its own: work that blocks for as long as an upload lasts must not
    hold one of the default executor's few threads (the result sink writes there)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, exc: BaseException | None) -> None:
        if future.done():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def hand_over(result: T | None, exc: BaseException | None) -> None:
        """To the awaiting task; a loop closed meanwhile (the process stopping) has nobody waiting."""
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, result, exc)

    def run() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task, which re-raises it
            hand_over(None, exc)
        else:
            hand_over(result, None)

    threading.Thread(target=run, name="dodolens-own", daemon=True).start()
    return await future


def on_loop(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, None]) -> None:
    """Schedule ``coroutine`` on ``loop`` from a thread, without waiting for it."""
    asyncio.run_coroutine_threadsafe(coroutine, loop)


class Beside(Generic[T]):
    """``work`` started at once on a thread of its own, beside the caller's; ``work`` receives an event
    that ``cancel`` sets, and should stop soon after. ``cancel`` waits for it, so nothing ``work``
    touches outlives the caller's ``finally``."""

    def __init__(self, work: Callable[[threading.Event], T], name: str) -> None:
        self._stop = threading.Event()
        self._work = work
        self._outcome: list[T] = []
        self._error: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def result(self) -> T:
        """What ``work`` returned, once it is done; re-raises what it raised."""
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
    """An executor that runs each task at once on the calling thread: a pool of no threads."""

    def submit(self, fn: Callable[..., T], /, *args: object, **kwargs: object) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - kept in the future, raised by result() as from a thread
            future.set_exception(exc)
        return future


def pool(workers: int, name: str) -> Executor:
    """``workers`` threads named ``name``; with 0 workers, every task runs inline on the caller."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name) if workers > 0 else Inline()

