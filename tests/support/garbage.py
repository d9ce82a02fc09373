"""Garbage only a full collection frees: reference cycles, left while automatic collection is off."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def uncollected_cycles(count: int) -> Iterator[None]:
    """``count`` unreachable self-referencing lists exist inside the block (unless something collects them)."""
    gc.disable()
    try:
        for _ in range(count):
            cycle: list[object] = []
            cycle.append(cycle)
        del cycle
        yield
    finally:
        gc.enable()
