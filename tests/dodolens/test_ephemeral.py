"""Ephemeral by construction: nothing on disk, nothing in clear in Redis, nothing left after a session."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from dodolens.client import analyze_bytes
from dodolens.runner import Runtime
from dodolens.settings import Settings
from gateway.auth import issue_token
from streams.connection import PersistentRedisError, Redis
from streams.embedded import EmbeddedRedis
from tests.support.fake_openai import CHAT, Fault, FakeOpenAI, LocalServer
from tests.support.videos import make_video

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_written: list[str] = []
_recording = threading.Event()


def _audit(event: str, args: tuple) -> None:
    if event != "open" or not _recording.is_set():
        return
    path, mode, flags = (list(args) + [None, None, None])[:3]
    writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & WRITE_FLAGS)
    if writes and isinstance(path, (str, bytes, os.PathLike)):
        _written.append(os.fsdecode(path))


sys.addaudithook(_audit)


async def redis_values(redis: Redis) -> list[bytes]:
    """Every value of every key, whatever its type."""
    values: list[bytes] = []
    async for key in redis.scan_iter(count=1000):
        kind = (await redis.type(key)).decode()
        if kind == "string":
            values.append(await redis.get(key) or b"")
        elif kind == "hash":
            values += list((await redis.hgetall(key)).values())
        elif kind == "stream":
            values += [v for _id, fields in await redis.xrange(key) for v in fields.values()]
        elif kind == "zset":
            values += await redis.zrange(key, 0, -1)
    return values


@pytest.fixture
async def slow_model() -> AsyncIterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI(transcript="the sofa and the piano come too")
    fake.inject(Fault(delay_s=2.0), endpoint=CHAT)
    async with LocalServer(fake.app) as server:
        yield fake, server.url + "/v1"


def with_model(settings: Settings, model: tuple[FakeOpenAI, str]) -> Settings:
    fake, url = model
    return settings.with_overrides(base_url=url, api_key=fake.api_key)


async def test_a_pipeline_run_writes_no_file_but_the_result_database(settings: Settings, slow_model) -> None:
    video = make_video(duration=4.0, width=480, height=270)
    async with Runtime(with_model(settings, slow_model)) as rt:
        _written.clear()
        _recording.set()
        try:
            outcome = await analyze_bytes(rt.url, video)
        finally:
            _recording.clear()
    assert outcome.result is not None and outcome.result["analysis"]["status"] == "complete"
    allowed = Path(settings.sink.results_db).resolve()
    strays = [p for p in _written if p != os.devnull and not Path(p).resolve().as_posix().startswith(allowed.as_posix())]
    assert strays == []


async def test_no_uploaded_or_decoded_byte_is_in_clear_in_redis(settings: Settings, slow_model, redis: Redis) -> None:
    fake, _ = slow_model
    video = make_video(duration=4.0, width=480, height=270, noise=2)
    rng = random.Random(5)
    windows = [video[i : i + 48] for i in (rng.randrange(0, len(video) - 48) for _ in range(64))]
    snapshots: list[list[bytes]] = []
    async with Runtime(with_model(settings, slow_model)) as rt:

        async def snapshot(event: dict) -> None:
            if event["type"] in ("chunk_received", "frames_extracted", "ai_analysis_progress"):
                snapshots.append(await redis_values(redis))

        outcome = await analyze_bytes(rt.url, video, on_event=snapshot)
    assert outcome.result is not None
    jpegs = [part for r in fake.received(CHAT) for part in _images(r.json)]
    assert jpegs, "the model received frames"
    jpeg_windows = [j[len(j) // 2 : len(j) // 2 + 48] for j in jpegs]
    assert any(len(v) > 1000 for snap in snapshots for v in snap), "snapshots saw the media keys"
    for snap in snapshots:
        for value in snap:
            assert not any(w in value for w in windows + jpeg_windows)


def _images(body: dict | None) -> list[bytes]:
    import base64

    out = []
    for message in (body or {}).get("messages", []):
        for part in message.get("content", []) if isinstance(message.get("content"), list) else []:
            url = part.get("image_url", {}).get("url", "") if part.get("type") == "image_url" else ""
            if url.startswith("data:image/jpeg;base64,"):
                out.append(base64.b64decode(url.split(",", 1)[1]))
    return out


async def session_keys(redis: Redis, sid: str) -> set[str]:
    return {k.decode().rsplit(":", 1)[1] async for k in redis.scan_iter(match=f"dodo:{{{sid}}}:*")}


async def test_erasure_in_the_middle_of_processing_leaves_nothing(settings: Settings, slow_model, redis: Redis) -> None:
    async with Runtime(with_model(settings, slow_model)) as rt:
        erased = asyncio.Event()

        async def erase_when_analyzing(event: dict) -> None:
            if event["type"] == "ai_analysis_progress" and not erased.is_set():
                erased.set()
                token, _ = issue_token(rt.stream.keyring, event["session_id"], 60)
                async with httpx.AsyncClient(base_url=rt.url) as http:
                    receipt = await http.delete(f"/sessions/{event['session_id']}",
                                                headers={"Authorization": f"Bearer {token}"})
                    assert receipt.status_code == 200

        outcome = await analyze_bytes(rt.url, make_video(duration=3.0), on_event=erase_when_analyzing)
        await asyncio.sleep(3.0)
        assert erased.is_set()
        assert outcome.events[-1]["type"] == "session_erased"
        assert await session_keys(redis, outcome.session_id) <= {"events"}
        assert await rt.sink.get(outcome.session_id) is None


async def test_ttl_expiry_removes_an_abandoned_upload_and_tells_the_client(settings: Settings, redis: Redis) -> None:
    short = settings.with_overrides(chunk_ttl_s=1, session_ttl_s=2, sweep_interval_s=0.5)
    async with Runtime(short) as rt, httpx.AsyncClient(base_url=rt.url) as http:
        created = (await http.post("/sessions", json={"size": 300_000})).json()
        sid, auth = created["session_id"], {"Authorization": f"Bearer {created['token']}"}
        await http.put(f"/sessions/{sid}/chunks/0", content=b"v" * 262_144, headers=auth)
        assert "chunks" in await session_keys(redis, sid)
        await asyncio.sleep(3.5)
        assert await session_keys(redis, sid) <= {"events"}
        events = [f[b"data"] for _id, f in await redis.xrange(f"dodo:{{{sid}}}:events")]
        assert any(b"media_expired" in e for e in events)


async def test_a_persistent_redis_is_refused_unless_allowed(settings: Settings, tmp_path: Path) -> None:
    with EmbeddedRedis(extra_args=("--save", "3600 1", "--dir", str(tmp_path))) as persistent:
        with pytest.raises(PersistentRedisError, match="RDB"):
            async with Runtime(settings.with_overrides(redis_url=persistent.url)):
                pass
        async with Runtime(settings.with_overrides(redis_url=persistent.url, allow_persistent_redis=True)) as rt:
            assert rt.url
