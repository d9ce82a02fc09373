"""A Redis outage: the gateway answers 503 with Retry-After, and everything resumes when Redis is back."""

from __future__ import annotations

import asyncio

import httpx
import orjson
from websockets.asyncio.client import connect

from dodolens.client import analyze_bytes
from dodolens.runner import Runtime
from dodolens.settings import Settings
from streams.embedded import EmbeddedRedis
from tests.support.videos import make_video


async def wait_ready(http: httpx.AsyncClient, timeout_s: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while (await http.get("/readyz")).status_code != 200:
        assert asyncio.get_running_loop().time() < deadline, "the gateway never became ready again"
        await asyncio.sleep(0.2)


async def test_outage_answers_503_then_everything_resumes(settings: Settings, redis_server: EmbeddedRedis) -> None:
    async with Runtime(settings.with_overrides(session_check_interval_s=0.5)) as rt, \
            httpx.AsyncClient(base_url=rt.url, timeout=30) as http:
        before = (await http.post("/sessions", json={"size": 1000})).json()
        ws = await connect(rt.url.replace("http", "ws", 1) + f"/sessions/{before['session_id']}/events?token={before['token']}")
        assert orjson.loads(await ws.recv())["type"] == "session_created"

        redis_server.kill()
        down = await http.post("/sessions", json={"size": 1000})
        assert down.status_code == 503 and int(down.headers["retry-after"]) > 0
        assert down.json()["error"]["code"] == "unavailable"
        ready = await http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "not ready"

        redis_server.start()
        await wait_ready(http)
        lost = orjson.loads(await asyncio.wait_for(ws.recv(), 15))
        assert lost["type"] == "error" and lost["data"]["code"] == "media_expired"
        assert lost["data"]["retryable"] and "upload again" in lost["data"]["message"]
        await ws.close()

        outcome = await asyncio.wait_for(analyze_bytes(rt.url, make_video(duration=2.0)), 60)
        assert outcome.result is not None, outcome.events[-1]


async def test_no_request_fails_once_ready_after_a_restart(settings: Settings, redis_server: EmbeddedRedis) -> None:
    """Every pooled connection outlives the old server; none may cost a client a 503."""
    roomy = settings.with_overrides(max_sessions=1000, client_max_sessions=0)
    async with Runtime(roomy, workers=False) as rt, httpx.AsyncClient(base_url=rt.url, timeout=30) as http:
        for _ in range(3):
            await asyncio.gather(*(http.post("/sessions", json={"size": 10}) for _ in range(12)))
            redis_server.stop()
            redis_server.start()
            await wait_ready(http)
            answers = await asyncio.gather(*(http.post("/sessions", json={"size": 10}) for _ in range(12)))
            assert [a.status_code for a in answers] == [201] * 12
