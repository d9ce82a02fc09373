"""Every malformed input is a clean 4xx (or an ``error`` event before a WebSocket closes), never a 500,
never a traceback in the log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
import websockets

from dodolens.runner import Runtime

TUS = {"Tus-Resumable": "1.0.0"}
BAD_TOKENS = ["².x", "١٢٣٤٥٦٧٨٩٠.abcdef", "9" * 4400 + ".abcdef", "12.é", "-5.abcdef", " 12.abcdef"]


@pytest.fixture
async def http(gateway: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        yield client


@pytest.fixture
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING)
    return caplog


def assert_quiet(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.text


@pytest.mark.parametrize("size", [True, "5", 5.0, [5], None])
async def test_a_size_that_is_not_a_json_integer_is_refused(http: httpx.AsyncClient, size: object) -> None:
    response = await http.post("/sessions", json={"size": size})
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_body"


@pytest.mark.parametrize("index", ["0_2", "+1", "٣", "1e2", "99999999999999999999"])
async def test_a_chunk_index_in_anything_but_ascii_digits_is_refused(http: httpx.AsyncClient, index: str) -> None:
    body = (await http.post("/sessions", json={"size": 10})).json()
    response = await http.put(f"/sessions/{body['session_id']}/chunks/{index}", content=b"0123456789",
                              headers={"Authorization": f"Bearer {body['token']}"})
    assert response.status_code == 400 and response.json()["error"]["code"] in ("bad_index", "index_out_of_range")


@pytest.mark.parametrize("token", BAD_TOKENS, ids=["superscript", "arabic-indic", "4400 digits", "non-ascii mac",
                                                  "negative", "leading space"])
async def test_a_malformed_token_is_a_4xx_everywhere(http: httpx.AsyncClient, token: str,
                                                     no_tracebacks: pytest.LogCaptureFixture) -> None:
    sid = "0123456789abcdef" * 2
    auth = {"Authorization": f"Bearer {token}".encode()}
    assert (await http.get(f"/sessions/{sid}", headers=auth)).status_code in (401, 403)
    assert (await http.get(f"/sessions/{sid}", params={"token": token})).status_code in (401, 403)
    assert (await http.head(f"/files/{sid}", headers={**TUS, **auth})).status_code in (401, 403)
    final = await http.post("/files/", headers={**TUS, **auth, "Upload-Concat": f"final;/files/{sid}"})
    assert final.status_code in (401, 403)
    assert_quiet(no_tracebacks)


@pytest.mark.parametrize("last_event_id", ["abc", "-1", "1-2-3", "١-0"])
async def test_a_bad_last_event_id_gets_an_error_event_before_the_close(http: httpx.AsyncClient, gateway: Runtime,
                                                                        last_event_id: str) -> None:
    body = (await http.post("/sessions", json={"size": 10})).json()
    url = (f"ws://127.0.0.1:{gateway.port}/sessions/{body['session_id']}/events?token={body['token']}"
           f"&last_event_id={last_event_id}")
    async with websockets.connect(url) as ws:
        event = orjson.loads(await ws.recv())
        await ws.wait_closed()
    assert event["type"] == "error" and event["data"]["code"] == "bad_last_event_id" and event["data"]["final"]
    assert ws.close_code == 4400


@pytest.mark.parametrize("frame", [b"\x00\x01binary", "[1, 2]", "not json"])
async def test_a_join_frame_that_is_not_a_json_object_gets_an_error_event(http: httpx.AsyncClient, gateway: Runtime,
                                                                          frame: bytes | str) -> None:
    body = (await http.post("/sessions", json={"size": 10})).json()
    async with websockets.connect(f"ws://127.0.0.1:{gateway.port}/session/{body['session_id']}") as ws:
        await ws.send(frame)
        event = orjson.loads(await ws.recv())
        await ws.wait_closed()
    assert event["type"] == "error" and event["data"]["code"] == "bad_join"


async def test_a_client_leaving_mid_chunk_is_closed_quietly(http: httpx.AsyncClient, gateway: Runtime,
                                                            no_tracebacks: pytest.LogCaptureFixture) -> None:
    chunk = gateway.settings.stream.chunk_size
    body = (await http.post("/sessions", json={"size": chunk})).json()
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write((f"PUT /sessions/{body['session_id']}/chunks/0 HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: Bearer {body['token']}\r\nContent-Length: {chunk}\r\n\r\n").encode() + b"x" * 1000)
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.close()
    await asyncio.sleep(0.5)
    status = await http.get(f"/sessions/{body['session_id']}", headers={"Authorization": f"Bearer {body['token']}"})
    assert status.json()["received_chunks"] == 0
    assert_quiet(no_tracebacks)
