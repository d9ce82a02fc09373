"""Every request leaves an audit record — route, status, duration — and no personal data."""

from __future__ import annotations

import httpx
import orjson

from dodolens.runner import Runtime
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
        ("GET", "/sessions/{sid}", 401),
    ]
    assert all(r["ms"] >= 0 for r in requests)
    assert requests[1]["session"] == pseudonym(runtime.stream, sid)
    everything = b"".join(raw)
    for secret in (sid.encode(), token.encode(), b"Dupont", b"127.0.0.1"):
        assert secret not in everything
