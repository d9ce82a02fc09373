"""Every request leaves an audit record — route, status, duration — and no personal data."""

from __future__ import annotations

import httpx
import orjson

from dodolens.runner import Runtime
from dodolens.settings import Settings
from streams import keys
from streams.audit import pseudonym
from streams.connection import Redis


async def test_requests_are_audited_without_personal_data(runtime: Runtime, redis: Redis) -> None:
    async with httpx.AsyncClient(base_url=runtime.url) as http:
        body = (await http.post("/sessions", json={"size": 10, "filename": "Dupont-family-home.mp4"})).json()
        sid, token = body["session_id"], body["token"]
        await http.put(f"/sessions/{sid}/chunks/0", content=b"0123456789", headers={"Authorization": f"Bearer {token}"})
        await http.get(f"/sessions/{sid}")
    raw = [f[b"r"] for _id, f in await redis.xrange(keys.AUDIT)]
    records = [orjson.loads(r) for r in raw]
    requests = [r for r in records if r["action"] == "request"]
    assert [(r["method"], r["route"], r["status"]) for r in requests] == [
        ("POST", "/sessions", 201),
        ("PUT", "/sessions/{sid}/chunks/{index}", 200),
    ]
    assert all(r["ms"] >= 0 for r in requests)
    assert runtime.server is not None
    assert dict(runtime.server.config.app.state.refused.counts) == {("GET", "/sessions/{sid}", 401): 1}
    assert requests[1]["session"] == pseudonym(runtime.stream, sid)
    everything = b"".join(raw)
    for secret in (sid.encode(), token.encode(), b"Dupont", b"127.0.0.1"):
        assert secret not in everything


async def test_refused_requests_are_counted_not_recorded_one_by_one(settings: Settings, redis: Redis) -> None:
    async with Runtime(settings) as rt, httpx.AsyncClient(base_url=rt.url) as http:
        for _ in range(300):
            assert (await http.get("/no/such/page")).status_code == 404
        for _ in range(20):
            assert (await http.get(f"/sessions/{'a' * 32}")).status_code == 401
    records = [orjson.loads(f[b"r"]) for _id, f in await redis.xrange(keys.AUDIT)]
    assert not [r for r in records if r["action"] == "request" and r["status"] >= 400]
    [refused] = [r for r in records if r["action"] == "requests_refused"]
    assert refused["total"] == 320
    assert {(row["route"], row["status"], row["count"]) for row in refused["routes"]} == {
        ("unmatched", 404, 300), ("/sessions/{sid}", 401, 20)}
