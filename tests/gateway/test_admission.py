"""Admission that holds: one atomic step counts and admits, per client and overall; idle uploads are
reaped; API keys when configured; every 429 says when to retry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import orjson
import pytest
import websockets

from dodolens.runner import Runtime
from dodolens.settings import Settings
from streams import keys
from streams.connection import Redis
from streams.events import history

TUS = {"Tus-Resumable": "1.0.0"}


@asynccontextmanager
async def client_from(url: str, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client whose connections come from ``address`` (any 127.x.y.z is this machine)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(base_url=url, transport=transport, timeout=30) as http:
        yield http


async def test_racing_creations_on_two_gateways_admit_no_more_than_the_cap(settings: Settings, redis: Redis) -> None:
    capped = settings.with_overrides(max_sessions=10, client_max_sessions=0)
    async with Runtime(capped, workers=False) as one, Runtime(capped, workers=False) as two:
        async with httpx.AsyncClient(timeout=30) as http:
            answers = await asyncio.gather(*(
                http.post(f"{(one, two)[i % 2].url}/sessions", json={"size": 10}) for i in range(40)))
    statuses = [a.status_code for a in answers]
    assert statuses.count(201) == 10 and statuses.count(429) == 30
    assert all(int(a.headers["retry-after"]) >= 1 for a in answers if a.status_code == 429)
    assert await redis.zcard(keys.ACTIVE) == 10


async def test_one_client_holds_its_quota_and_no_more_while_another_still_gets_in(settings: Settings) -> None:
    async with Runtime(settings.with_overrides(client_max_sessions=3), workers=False) as rt:
        async with client_from(rt.url, "127.0.0.2") as greedy, client_from(rt.url, "127.0.0.3") as other:
            created = [await greedy.post("/sessions", json={"size": 10}) for _ in range(3)]
            assert [c.status_code for c in created] == [201] * 3
            refused = await greedy.post("/sessions", json={"size": 10})
            assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_client_sessions"
            assert 1 <= int(refused.headers["retry-after"]) <= 30
            tus = await greedy.post("/files/", headers={**TUS, "Upload-Length": "10"})
            assert tus.status_code == 429 and "retry-after" in tus.headers
            assert (await other.post("/sessions", json={"size": 10})).status_code == 201
            first = created[0].json()
            erased = await greedy.delete(f"/sessions/{first['session_id']}",
                                         headers={"Authorization": f"Bearer {first['token']}"})
            assert erased.status_code == 200
            assert (await greedy.post("/sessions", json={"size": 10})).status_code == 201


async def test_a_session_that_sends_nothing_is_reaped_with_an_error_event(settings: Settings, redis: Redis) -> None:
    quick = settings.with_overrides(upload_idle_s=1.0, reap_interval_s=0.2, client_max_sessions=1)
    async with Runtime(quick, workers=False) as rt, httpx.AsyncClient(base_url=rt.url, timeout=30) as http:
        body = (await http.post("/sessions", json={"size": 2 * quick.stream.chunk_size})).json()
        sid, token = body["session_id"], body["token"]
        auth = {"Authorization": f"Bearer {token}"}
        assert (await http.put(f"/sessions/{sid}/chunks/0", content=b"x" * quick.stream.chunk_size, headers=auth)).status_code == 200
        assert (await http.post("/sessions", json={"size": 10})).status_code == 429
        async with websockets.connect(f"ws://127.0.0.1:{rt.port}/sessions/{sid}/events?token={token}") as ws:
            events = [orjson.loads(m) async for m in ws]
        assert events[-1]["type"] == "error"
        assert events[-1]["data"]["code"] == "upload_idle" and events[-1]["data"]["final"] is True
        assert not await redis.exists(keys.chunks(sid))
        assert (await http.get(f"/sessions/{sid}", headers=auth)).json()["state"] == "failed"
        assert await redis.zscore(keys.ACTIVE, sid) is None and await redis.zscore(keys.IDLE, sid) is None
        assert (await http.post("/sessions", json={"size": 10})).status_code == 201


async def test_chunks_keep_an_upload_alive_past_the_idle_time(settings: Settings) -> None:
    quick = settings.with_overrides(upload_idle_s=1.0, reap_interval_s=0.2)
    chunks = 6
    async with Runtime(quick, workers=False) as rt, httpx.AsyncClient(base_url=rt.url, timeout=30) as http:
        body = (await http.post("/sessions", json={"size": chunks * quick.stream.chunk_size})).json()
        auth = {"Authorization": f"Bearer {body['token']}"}
        for index in range(chunks):
            await asyncio.sleep(0.5)
            put = await http.put(f"/sessions/{body['session_id']}/chunks/{index}", content=b"x" * quick.stream.chunk_size,
                                 headers=auth)
            assert put.status_code == 200, put.text
        done = await http.post(f"/sessions/{body['session_id']}/complete", json={"chunks": chunks}, headers=auth)
        assert done.status_code == 202
        await asyncio.sleep(1.5)
        assert (await http.get(f"/sessions/{body['session_id']}", headers=auth)).json()["state"] == "queued"


async def test_with_api_keys_creating_needs_one_and_a_key_is_exempt_from_the_client_quota(settings: Settings) -> None:
    keyed = settings.with_overrides(api_keys=("k-backend-1", "k-backend-2"), client_max_sessions=1)
    async with Runtime(keyed, workers=False) as rt, httpx.AsyncClient(base_url=rt.url, timeout=30) as http:
        for path, extra in (("/sessions", {"json": {"size": 10}}), ("/files/", {"headers": {**TUS, "Upload-Length": "10"}})):
            headers = extra.get("headers", {})
            missing = await http.post(path, **extra)
            assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
            wrong = await http.post(path, **{**extra, "headers": {**headers, "X-API-Key": "k-guess"}})
            assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "bad_api_key"
            for _ in range(3):
                ok = await http.post(path, **{**extra, "headers": {**headers, "X-API-Key": "k-backend-2"}})
                assert ok.status_code == 201, ok.text


@pytest.mark.parametrize("trusted", [True, False])
async def test_forwarded_for_names_the_client_only_behind_a_trusted_proxy(settings: Settings, trusted: bool) -> None:
    proxied = settings.with_overrides(client_max_sessions=1, trusted_proxies=("127.0.0.1",) if trusted else ())
    async with Runtime(proxied, workers=False) as rt, httpx.AsyncClient(base_url=rt.url, timeout=30) as http:
        statuses = [(await http.post("/sessions", json={"size": 10},
                                     headers={"X-Forwarded-For": f"198.51.100.{i}"})).status_code for i in range(3)]
    assert statuses == ([201, 201, 201] if trusted else [201, 429, 429])


async def test_two_gateways_reap_each_idle_session_once(settings: Settings, redis: Redis) -> None:
    quick = settings.with_overrides(upload_idle_s=0.5, reap_interval_s=0.05, client_max_sessions=0)
    async with Runtime(quick, workers=False) as one, Runtime(quick, workers=False) as _two:
        async with httpx.AsyncClient(base_url=one.url, timeout=30) as http:
            sids = [(await http.post("/sessions", json={"size": 10})).json()["session_id"] for _ in range(6)]
        await asyncio.sleep(1.5)
    for sid in sids:
        errors = [e for e in await history(redis, sid) if e.type == "error"]
        assert [e.data["code"] for e in errors] == ["upload_idle"], sid
    assert await redis.zcard(keys.ACTIVE) == 0 and await redis.zcard(keys.IDLE) == 0


async def test_a_chunk_arriving_slowly_keeps_its_upload_alive(settings: Settings) -> None:
    quick = settings.with_overrides(upload_idle_s=1.0, reap_interval_s=0.1)
    size = quick.stream.chunk_size

    async def slowly() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b"s" * (size // 8)
            await asyncio.sleep(0.35)

    async with Runtime(quick, workers=False) as rt, httpx.AsyncClient(base_url=rt.url, timeout=30) as http:
        body = (await http.post("/sessions", json={"size": size})).json()
        auth = {"Authorization": f"Bearer {body['token']}"}
        put = await http.put(f"/sessions/{body['session_id']}/chunks/0", content=slowly(), headers=auth)
        assert put.status_code == 200, put.text
        assert (await http.get(f"/sessions/{body['session_id']}", headers=auth)).json()["state"] == "uploading"
