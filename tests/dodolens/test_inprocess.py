"""``dodolens analyze``'s own upload: chunks appended into Redis in-process, no HTTP, same session story."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from dodolens.inprocess import analyze_in_process
from dodolens.runner import Runtime
from streams import keys
from streams.connection import Redis
from tests.support.videos import make_video

ORDER = ["session_created", "chunk_received", "upload_complete", "processing_started", "frames_extracted",
         "analysis_complete"]


async def test_a_video_appended_in_process_is_decoded_as_an_uploaded_one(runtime: Runtime, redis: Redis) -> None:
    assert runtime.redis is not None and runtime.stream is not None
    video = make_video(duration=6.0, width=640, height=360)
    cfg = runtime.settings.gateway_config(runtime.stream)
    seen: list[str] = []
    outcome = await asyncio.wait_for(analyze_in_process(runtime.redis, cfg, video, content_type="video/mp4",
                                                        on_event=lambda e: seen.append(e["type"])), 60)
    types = [e["type"] for e in outcome.events]
    assert outcome.error is None and types == seen
    assert [types.index(t) for t in ORDER] == sorted(types.index(t) for t in ORDER), types
    count = -(-len(video) // cfg.stream.chunk_size)
    received = [e["data"]["index"] for e in outcome.events if e["type"] == "chunk_received"]
    assert sorted(received) == list(range(count))
    assert received[0] == count - 1, "the MP4's index at the end goes first, as the clients send it"
    assert outcome.result is not None and outcome.result["video"]["size_bytes"] == len(video)
    assert len(outcome.result["frames"]) >= 2
    assert not await redis.exists(keys.chunks(outcome.session_id))
    assert await redis.hget(keys.meta(outcome.session_id), "state") == b"done"


async def test_a_video_over_the_size_limit_is_refused_before_a_session_exists(runtime: Runtime, redis: Redis) -> None:
    assert runtime.redis is not None and runtime.stream is not None
    cfg = runtime.settings.gateway_config(replace(runtime.stream, max_size=1000))
    outcome = await analyze_in_process(runtime.redis, cfg, b"\0" * 1001, content_type="video/mp4")
    assert outcome.error is not None and outcome.error["code"] == "video_too_large"
    assert outcome.session_id == "" and not [k async for k in redis.scan_iter(match="dodo:{*}:*")]
