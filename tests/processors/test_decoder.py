"""The decoder job: chunks in Redis -> frames and audio, the declared SHA-256 checked on the way."""

from __future__ import annotations

import asyncio
import hashlib

import httpx

from dodolens.client import create, send_chunks
from dodolens.runner import Runtime
from streams import keys
from streams.connection import Redis
from streams.events import history
from tests.support.videos import corrupt, make_video


async def upload(http: httpx.AsyncClient, data: bytes) -> tuple[str, dict[str, str], int]:
    """Create a session and send every chunk; returns its id, auth header and chunk count."""
    session = await create(http, len(data), "video/mp4")
    sid, chunk_size = session["session_id"], session["chunk_size"]
    count = -(-len(data) // chunk_size)
    await send_chunks(http, sid, session["token"], memoryview(data), chunk_size, list(range(count)), 3, None)
    return sid, {"Authorization": f"Bearer {session['token']}"}, count


async def final_event(redis: Redis, sid: str, timeout_s: float = 60.0) -> tuple[str, dict]:
    """The first of frames_extracted or a final error in the session's event stream."""
    async with asyncio.timeout(timeout_s):
        while True:
            for event in await history(redis, sid):
                if event.type == "frames_extracted" or (event.type == "error" and event.data.get("final")):
                    return event.type, event.data
            await asyncio.sleep(0.05)


async def test_a_declared_sha256_that_matches_lets_the_frames_through(runtime: Runtime, redis: Redis) -> None:
    video = make_video(duration=4.0, width=640, height=360, noise=3)
    async with httpx.AsyncClient(base_url=runtime.url) as http:
        sid, auth, count = await upload(http, video)
        sha = hashlib.sha256(video).hexdigest()
        response = await http.post(f"/sessions/{sid}/complete", json={"chunks": count, "sha256": sha}, headers=auth)
        assert response.status_code == 202
        kind, data = await final_event(redis, sid)
    assert kind == "frames_extracted" and data["frames"] == 8


async def test_a_sha256_mismatch_is_a_final_error_and_no_frame_is_stored(runtime: Runtime, redis: Redis) -> None:
    video = make_video(duration=4.0, width=640, height=360, noise=3)
    async with httpx.AsyncClient(base_url=runtime.url) as http:
        sid, auth, count = await upload(http, video)
        response = await http.post(f"/sessions/{sid}/complete", json={"chunks": count, "sha256": "0" * 64}, headers=auth)
        assert response.status_code == 202
        kind, data = await final_event(redis, sid)
        status = (await http.get(f"/sessions/{sid}", headers=auth)).json()
    assert kind == "error" and data["code"] == "checksum_mismatch" and not data["retryable"]
    assert status["state"] == "failed" and status["error"]["code"] == "checksum_mismatch"
    assert not any([await redis.exists(k) for k in keys.media_keys(sid)])


async def test_a_damaged_transfer_reports_the_checksum_rather_than_the_decode(runtime: Runtime, redis: Redis) -> None:
    """Bytes damaged on the way fail to decode too; the checksum names the real cause."""
    video = make_video(duration=4.0, width=640, height=360, noise=3)
    damaged = corrupt(video, seed=7, flips=4096)
    async with httpx.AsyncClient(base_url=runtime.url) as http:
        sid, auth, count = await upload(http, damaged)
        sha = hashlib.sha256(video).hexdigest()
        response = await http.post(f"/sessions/{sid}/complete", json={"chunks": count, "sha256": sha}, headers=auth)
        assert response.status_code == 202
        kind, data = await final_event(redis, sid)
    assert kind == "error" and data["code"] == "checksum_mismatch"
