"""Gateway-only fixtures: a real uvicorn gateway without workers, so uploaded chunks stay put."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from dodolens.runner import Runtime
    from dodolens.settings import Settings


@pytest.fixture
async def gateway(settings: "Settings") -> AsyncIterator["Runtime"]:
    """The gateway of a DodoLens with no decoder/analyzer running: nothing consumes the uploads."""
    from dodolens.runner import Runtime

    rt = await Runtime(settings, workers=False).start()
    try:
        yield rt
    finally:
        await rt.stop()
