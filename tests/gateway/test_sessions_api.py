"""The session API's contract, over real HTTP: every misuse is a 4xx with a JSON error body."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import httpx
import pytest

from dodolens.runner import Runtime
from dodolens.settings import Settings
from gateway.auth import issue_token
from streams import keys
from streams.connection import Redis
from streams.events import history

CHUNK = 256 * 1024


@pytest.fixture
async def http(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=runtime.url, timeout=30) as client:
        yield client


async def new_session(http: httpx.AsyncClient, size: int) -> tuple[str, dict[str, str]]:
    response = await http.post("/sessions", json={"size": size, "filename": "tour.mp4"})
    assert response.status_code == 201, response.text
    body = response.json()
    return body["session_id"], {"Authorization": f"Bearer {body['token']}"}


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    return error


async def test_create_answers_the_upload_plan(http: httpx.AsyncClient) -> None:
    response = await http.post("/sessions", json={"size": CHUNK * 2 + 1, "content_type": "video/mp4"})
    assert response.status_code == 201
    body = response.json()
    assert len(body["session_id"]) == 32 and body["chunk_size"] == CHUNK and body["max_chunks"] == 3
    assert body["token"] and body["expires_at"] > 0


@pytest.mark.parametrize(
    "kwargs,status,code",
    [
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "malformed_json"),
        ({"content": b'{"size": 10}', "headers": {"content-type": "text/plain"}}, 415, "unsupported_media_type"),
        ({"json": {"size": 10, "padding": "x" * 20_000}}, 413, "body_too_large"),
        ({"json": {"size": -5}}, 422, "invalid_body"),
        ({"json": {"size": 10, "unknown": 1}}, 422, "invalid_body"),
        ({"json": {"size": 10**12}}, 413, "video_too_large"),
    ],
    ids=["malformed", "wrong content type", "oversized json", "negative size", "unknown field", "too large"],
)
async def test_create_rejects_bad_bodies(http: httpx.AsyncClient, kwargs: dict, status: int, code: str) -> None:
    assert_error(await http.post("/sessions", **kwargs), status, code)


async def test_backpressure_beyond_max_sessions(settings: Settings) -> None:
    async with Runtime(settings.with_overrides(max_sessions=2)) as rt:
        async with httpx.AsyncClient(base_url=rt.url) as http:
            for _ in range(2):
                assert (await http.post("/sessions", json={"size": 10})).status_code == 201
            response = await http.post("/sessions", json={"size": 10})
            assert_error(response, 429, "too_many_sessions")
            assert int(response.headers["retry-after"]) > 0


async def test_chunk_guards(http: httpx.AsyncClient, runtime: Runtime) -> None:
    sid, auth = await new_session(http, CHUNK + 10)
    other, other_auth = await new_session(http, 10)
    put = f"/sessions/{sid}/chunks"
    assert_error(await http.put(f"{put}/0", content=b"x" * CHUNK), 401, "missing_token")
    assert_error(await http.put(f"{put}/0", content=b"x" * CHUNK, headers=other_auth), 403, "bad_token")
    expired, _ = issue_token(runtime.stream.keyring, sid, ttl_s=-10)
    assert_error(await http.put(f"{put}/0", content=b"x" * CHUNK, headers={"Authorization": f"Bearer {expired}"}), 401, "bad_token")
    assert_error(await http.put(f"{put}/0", content=b"x" * CHUNK, headers={"Authorization": "Bearer nonsense"}), 403, "bad_token")
    assert_error(await http.put("/sessions/not-a-session/chunks/0", content=b"x", headers=auth), 404, "unknown_session")
    assert_error(await http.put(f"{put}/2", content=b"x" * 10, headers=auth), 400, "index_out_of_range")
    assert_error(await http.put(f"{put}/x", content=b"x" * 10, headers=auth), 400, "bad_index")
    assert_error(await http.put(f"{put}/0", content=b"x" * (CHUNK + 1), headers=auth), 413, "chunk_too_large")
    assert_error(await http.put(f"{put}/0", content=b"", headers=auth), 400, "empty_chunk")
    assert_error(await http.put(f"{put}/1", content=b"x" * 9, headers=auth), 400, "bad_chunk_length")
    first = await http.put(f"{put}/1", content=b"y" * 10, headers=auth)
    again = await http.put(f"{put}/1", content=b"y" * 10, headers=auth)
    assert first.json()["stored"] is True and again.json()["stored"] is False
    status = (await http.get(f"/sessions/{sid}", headers=auth)).json()
    assert status["missing_chunks"] == [0] and status["received_chunks"] == 1 and status["state"] == "uploading"


async def test_complete_with_missing_chunks_lists_them_and_resumes(http: httpx.AsyncClient, redis: Redis) -> None:
    sid, auth = await new_session(http, CHUNK * 3)
    await http.put(f"/sessions/{sid}/chunks/1", content=b"a" * CHUNK, headers=auth)
    error = assert_error(await http.post(f"/sessions/{sid}/complete", json={"chunks": 3}, headers=auth), 409, "missing_chunks")
    assert error["missing"] == [0, 2]
    (event,) = [e for e in await history(redis, sid) if e.type == "error"]
    assert event.data["code"] == "missing_chunks" and event.data["missing"] == [0, 2] and not event.data["final"]
    for i in (0, 2):
        await http.put(f"/sessions/{sid}/chunks/{i}", content=b"a" * CHUNK, headers=auth)
    response = await http.post(f"/sessions/{sid}/complete", json={"chunks": 3, "sha256": hashlib.sha256(b"a" * CHUNK * 3).hexdigest()}, headers=auth)
    assert response.status_code == 202 and response.json()["state"] == "queued"


async def test_complete_keeps_the_declared_sha256_for_the_decoder_to_check(http: httpx.AsyncClient, redis: Redis) -> None:
    sid, auth = await new_session(http, 100)
    await http.put(f"/sessions/{sid}/chunks/0", content=b"b" * 100, headers=auth)
    response = await http.post(f"/sessions/{sid}/complete", json={"chunks": 1, "sha256": "AB" * 32}, headers=auth)
    assert response.status_code == 202 and response.json()["state"] == "queued"
    assert await redis.hget(keys.meta(sid), "sha256") == b"ab" * 32


async def test_wrong_chunk_count_is_a_size_mismatch(http: httpx.AsyncClient, redis: Redis) -> None:
    sid, auth = await new_session(http, 100)
    await http.put(f"/sessions/{sid}/chunks/0", content=b"b" * 100, headers=auth)
    assert_error(await http.post(f"/sessions/{sid}/complete", json={"chunks": 2}, headers=auth), 422, "size_mismatch")
    assert not await redis.exists(keys.chunks(sid))


async def test_erase_returns_a_receipt_and_is_idempotent(http: httpx.AsyncClient, redis: Redis) -> None:
    sid, auth = await new_session(http, 100)
    await http.put(f"/sessions/{sid}/chunks/0", content=b"c" * 100, headers=auth)
    receipt = (await http.delete(f"/sessions/{sid}", headers=auth)).json()
    assert receipt["session_id"] == sid and {"chunks", "meta"} <= set(receipt["redis_keys_deleted"])
    assert not await redis.exists(keys.chunks(sid), keys.meta(sid))
    again = await http.delete(f"/sessions/{sid}", headers=auth)
    assert again.status_code == 200 and again.json()["redis_keys_deleted"] in ([], ["events"])
    assert_error(await http.get(f"/sessions/{sid}", headers=auth), 404, "unknown_session")


async def test_unknown_routes_and_methods_answer_json(http: httpx.AsyncClient) -> None:
    assert_error(await http.get("/nowhere"), 404, "not_found")
    assert_error(await http.patch("/sessions"), 405, "method_not_allowed")


async def test_health_and_readiness(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json()["status"] == "ok"
    assert (await http.get("/readyz")).json()["status"] == "ready"
