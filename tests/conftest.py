"""Fixtures shared by all tests: real redis-server processes on free ports, and a running DodoLens."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from streams.config import StreamConfig
from streams.connection import Redis, connect
from streams.embedded import EmbeddedRedis

if TYPE_CHECKING:
    from dodolens.runner import Runtime
    from dodolens.settings import Settings


@pytest.fixture
def redis_server() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def redis(redis_server: EmbeddedRedis) -> AsyncIterator[Redis]:
    client = connect(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def stream_cfg() -> StreamConfig:
    return StreamConfig(chunk_size=64 * 1024)


@pytest.fixture
def settings(redis_server: EmbeddedRedis, tmp_path: Path) -> "Settings":
    """Settings for a whole DodoLens against the test's Redis; analysis off unless a test sets a model."""
    from dodolens.settings import Settings

    return Settings().with_overrides(redis_url=redis_server.url, results_db=str(tmp_path / "results.sqlite3"),
                                     chunk_size=256 * 1024, claim_idle_ms=2_000)


@pytest.fixture
async def runtime(settings: "Settings") -> AsyncIterator["Runtime"]:
    from dodolens.runner import Runtime

    rt = await Runtime(settings).start()
    try:
        yield rt
    finally:
        await rt.stop()
