"""The thread boundary: one module starts threads and pools, and hands their outcomes back to the loop."""

from __future__ import annotations

import ast
import asyncio
import threading

import pytest

from streams.threads import Beside, in_own_thread, in_thread, on_loop, pool
from tests.support.sources import ROOT, offenders

OWNER = "streams/threads.py"
THREAD_STARTERS = {"Thread", "Timer", "ThreadPoolExecutor", "ProcessPoolExecutor", "to_thread", "run_in_executor",
                   "run_coroutine_threadsafe", "call_soon_threadsafe", "start_new_thread"}


def thread_starters(tree: ast.AST) -> list[str]:
    """Every mention of something that starts a thread or a pool, or crosses back to the loop."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in THREAD_STARTERS:
            found.append(f"{node.attr} (line {node.lineno})")
        elif isinstance(node, ast.Name) and node.id in THREAD_STARTERS:
            found.append(f"{node.id} (line {node.lineno})")
        elif isinstance(node, ast.ImportFrom):
            found += [f"import of {a.name} (line {node.lineno})" for a in node.names if a.name in THREAD_STARTERS]
    return found


def test_only_the_owner_starts_threads_or_pools() -> None:
    assert offenders(thread_starters, owner=OWNER) == {}, "start threads through streams.threads"


def test_the_scan_sees_each_way_of_starting_a_thread() -> None:
    source = "\n".join([
        "import asyncio, threading", "from concurrent.futures import ThreadPoolExecutor",
        "threading.Thread(target=print).start()", "asyncio.to_thread(print)",
        "loop.run_in_executor(None, print)", "asyncio.run_coroutine_threadsafe(c, loop)",
    ])
    assert len(thread_starters(ast.parse(source))) == 5
    assert thread_starters(ast.parse((ROOT / OWNER).read_text()))


async def test_blocking_work_runs_off_the_loop_and_its_outcome_comes_back() -> None:
    loop_thread = threading.get_ident()
    assert await in_thread(threading.get_ident) != loop_thread
    assert await in_own_thread(threading.get_ident) != loop_thread
    with pytest.raises(ZeroDivisionError):
        await in_own_thread(lambda: 1 / 0)


async def test_a_thread_schedules_work_on_the_loop() -> None:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    async def mark() -> None:
        done.set()

    await in_thread(on_loop, loop, mark())
    await asyncio.wait_for(done.wait(), 5)


def test_work_beside_the_caller_stops_when_cancelled_and_reports_errors() -> None:
    waiting = Beside(lambda stop: stop.wait(30) and "stopped", "test-beside")
    waiting.cancel()
    assert waiting.result() == "stopped"
    failing = Beside(lambda stop: 1 / 0, "test-beside")
    with pytest.raises(ZeroDivisionError):
        failing.result()


def test_a_pool_of_no_threads_runs_on_the_caller() -> None:
    with pool(0, "test-inline") as inline:
        assert inline.submit(threading.get_ident).result() == threading.get_ident()
    with pool(2, "test-pool") as threads:
        assert list(threads.map(lambda n: n * n, range(5))) == [0, 1, 4, 9, 16]
