"""Events over the WebSocket: live, replayed after a reconnect (even to another gateway), guarded by token."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect

from dodolens.runner import Runtime
from dodolens.settings import Settings
from schemas.events import ChunkReceivedData, UploadCompleteData
from streams.connection import Redis
from streams.events import publish

SECRET = bytes.fromhex("cd" * 32)


def ws_url(rt: Runtime, sid: str, token: str, last: str = "") -> str:
    return rt.url.replace("http", "ws", 1) + f"/sessions/{sid}/events?token={token}" + (f"&last_event_id={last}" if last else "")


async def receive(ws, n: int) -> list[dict]:
    return [orjson.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(n)]


async def new_session(rt: Runtime) -> tuple[str, str]:
    async with httpx.AsyncClient(base_url=rt.url) as http:
        body = (await http.post("/sessions", json={"size": 100})).json()
    return body["session_id"], body["token"]


async def test_a_client_reconnecting_to_another_gateway_gets_every_missed_event(settings: Settings, redis: Redis) -> None:
    shared = settings.with_overrides(master_secret=SECRET)
    a = await Runtime(shared, workers=False).start()
    sid, token = await new_session(a)
    async with connect(ws_url(a, sid, token)) as ws:
        (created,) = await receive(ws, 1)
    assert created["type"] == "session_created"
    await a.stop()
    assert a.stream is not None
    missed = [await publish(redis, a.stream, sid, ChunkReceivedData(index=i, received=i + 1, chunks=4)) for i in range(3)]
    async with Runtime(shared, workers=False) as b:
        async with connect(ws_url(b, sid, token, created["id"])) as ws:
            replayed = await receive(ws, 3)
            assert [e["id"] for e in replayed] == [e.id for e in missed]
            assert [e["data"]["index"] for e in replayed] == [0, 1, 2]
            live = await publish(redis, a.stream, sid, UploadCompleteData(size=1, chunks=1))
            (received,) = await receive(ws, 1)
            assert received["id"] == live.id and received["type"] == "upload_complete"


async def test_the_seed_clients_join_session_form_works(runtime: Runtime) -> None:
    sid, token = await new_session(runtime)
    async with connect(runtime.url.replace("http", "ws", 1) + f"/session/{sid}") as ws:
        await ws.send(orjson.dumps({"action": "join_session", "sessionId": sid, "token": token}).decode())
        (event,) = await receive(ws, 1)
    assert event["type"] == "session_created" and event["session_id"] == sid and event["v"] == 1


@pytest.mark.parametrize("token", ["", "123.abc"])
async def test_a_bad_token_gets_an_error_and_a_close(runtime: Runtime, token: str) -> None:
    sid, _ = await new_session(runtime)
    async with connect(ws_url(runtime, sid, token)) as ws:
        (event,) = await receive(ws, 1)
        assert event["type"] == "error" and event["data"]["code"] == "bad_token"
        await asyncio.wait_for(ws.wait_closed(), 5)
    assert ws.close_code == 4401


async def test_an_idle_connection_stays_open_through_server_pings(settings: Settings, redis: Redis) -> None:
    async with Runtime(settings.with_overrides(ws_ping_interval_s=0.2), workers=False) as rt:
        sid, token = await new_session(rt)
        async with connect(ws_url(rt, sid, token), ping_interval=None) as ws:
            await receive(ws, 1)
            await asyncio.sleep(1.5)
            assert rt.stream is not None
            await publish(redis, rt.stream, sid, UploadCompleteData(size=1, chunks=1))
            (event,) = await receive(ws, 1)
    assert event["type"] == "upload_complete"


async def test_events_published_in_parallel_arrive_once_each_and_in_order(runtime: Runtime, redis: Redis) -> None:
    sid, token = await new_session(runtime)
    assert runtime.stream is not None
    async with connect(ws_url(runtime, sid, token)) as ws:
        await receive(ws, 1)
        published = await asyncio.gather(
            *(publish(redis, runtime.stream, sid, ChunkReceivedData(index=i, received=i + 1, chunks=40)) for i in range(40))
        )
        received = await receive(ws, 40)
    assert [e["id"] for e in received] == sorted((e.id for e in published), key=lambda i: tuple(map(int, i.split("-"))))
