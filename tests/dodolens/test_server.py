"""HTTP limits on the server DodoLens starts: header size (431), time to send headers (408), pauses in a
body, concurrent connections — so one client cannot hold the server or stall others."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from dodolens.runner import Runtime
from dodolens.settings import Settings


@pytest.fixture
async def limited(settings: Settings) -> AsyncIterator[Runtime]:
    strict = settings.with_overrides(max_header_bytes=8 * 1024, header_timeout_s=0.5, body_idle_timeout_s=0.5,
                     min_body_rate=1000, max_connections=8)
    async with Runtime(strict, workers=False) as rt:
        yield rt


async def raw(rt: Runtime) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", rt.port)


async def answer(reader: asyncio.StreamReader, timeout_s: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection (nothing, if it closed mid-request)."""
    try:
        return await asyncio.wait_for(reader.read(), timeout_s)
    except ConnectionError:
        return b""


async def test_oversized_headers_get_431_without_stalling_anyone(limited: Runtime) -> None:
    reader, writer = await raw(limited)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")

    async def flood() -> None:
        try:
            for _ in range(200):
                writer.write(b"X-Pad: " + b"a" * 4096 + b"\r\n")
                await writer.drain()
        except ConnectionError:
            pass

    sender = asyncio.create_task(flood())
    reply = await answer(reader)
    await sender
    assert reply.startswith(b"HTTP/1.1 431 ")
    assert orjson.loads(reply.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "headers_too_large"
    async with httpx.AsyncClient(base_url=limited.url) as http:
        started = time.monotonic()
        assert (await http.get("/healthz")).status_code == 200
        assert time.monotonic() - started < 1.0


async def test_headers_sent_too_slowly_get_408(limited: Runtime) -> None:
    reader, writer = await raw(limited)
    writer.write(b"GET /healthz HTTP/1.1\r\n")
    started = time.monotonic()
    for _ in range(3):
        await asyncio.sleep(0.3)
        writer.write(b"X-Slow: 1\r\n")
    reply = await answer(reader)
    assert reply.startswith(b"HTTP/1.1 408 ") and b"headers_too_slow" in reply
    assert time.monotonic() - started < 2.0


async def test_a_connection_that_sends_nothing_is_closed(limited: Runtime) -> None:
    reader, _writer = await raw(limited)
    assert await answer(reader) == b""


async def test_a_body_that_stops_coming_is_cut_off(limited: Runtime) -> None:
    async with httpx.AsyncClient(base_url=limited.url) as http:
        body = (await http.post("/sessions", json={"size": 1000})).json()
    reader, writer = await raw(limited)
    writer.write((f"PUT /sessions/{body['session_id']}/chunks/0 HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: Bearer {body['token']}\r\nContent-Length: 1000\r\n\r\n").encode() + b"x" * 10)
    started = time.monotonic()
    reply = await answer(reader)
    assert b" 500 " not in reply
    assert time.monotonic() - started < 3.0


async def put_slowly(rt: Runtime, piece: int, pieces: int, every_s: float) -> bytes:
    """PUT a chunk of ``piece * pieces`` bytes, one piece every ``every_s``; what the server answers."""
    size = piece * pieces
    async with httpx.AsyncClient(base_url=rt.url) as http:
        body = (await http.post("/sessions", json={"size": size})).json()
    reader, writer = await raw(rt)
    writer.write((f"PUT /sessions/{body['session_id']}/chunks/0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  f"Authorization: Bearer {body['token']}\r\nContent-Length: {size}\r\n\r\n").encode())
    try:
        for _ in range(pieces):
            writer.write(b"x" * piece)
            await writer.drain()
            await asyncio.sleep(every_s)
    except ConnectionError:
        pass
    return await answer(reader)


async def test_a_body_that_keeps_coming_at_a_fair_rate_is_not_cut_off(limited: Runtime) -> None:
    assert (await put_slowly(limited, 1000, 5, 0.3)).startswith(b"HTTP/1.1 200 ")


async def test_a_body_that_trickles_is_cut_off(limited: Runtime) -> None:
    started = time.monotonic()
    assert await put_slowly(limited, 1, 30, 0.1) == b""
    assert time.monotonic() - started < 4.0


async def test_connections_beyond_the_cap_get_503(limited: Runtime) -> None:
    held = [await raw(limited) for _ in range(8)]
    async with httpx.AsyncClient(base_url=limited.url) as http:
        assert (await http.get("/healthz")).status_code == 503
    for _reader, writer in held:
        writer.close()
    await asyncio.sleep(0.2)
    async with httpx.AsyncClient(base_url=limited.url) as http:
        assert (await http.get("/healthz")).status_code == 200
