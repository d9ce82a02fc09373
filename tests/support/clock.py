"""A clock a test moves forward: minutes of a service's lock pass in a fraction of a second."""

from __future__ import annotations

import time


class SimulatedClock:
    """Wall-clock seconds plus whatever the test has skipped; it never runs backwards."""

    def __init__(self) -> None:
        self.skipped = 0.0

    def __call__(self) -> float:
        return time.time() + self.skipped

    def advance(self, seconds: float) -> None:
        self.skipped += seconds
