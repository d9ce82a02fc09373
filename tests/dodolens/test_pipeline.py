"""The whole pipeline through real HTTP and WebSocket: upload -> Redis -> PyAV -> analysis -> result."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from dodolens.client import analyze_bytes
from dodolens.runner import Runtime
from dodolens.settings import Settings
from processors.batches import plan
from processors.usage import DEFAULT_PRICES
from schemas import catalogue
from streams import keys
from streams.connection import Redis
from tests.support.fake_openai import CHAT, FakeOpenAI, LocalServer, object_item, sent_jpegs, tour_sight
from tests.support.tour import make_tour, read_codes
from tests.support.videos import corrupt, make_audio_only, make_video, truncate

ORDER = ["session_created", "chunk_received", "upload_complete", "processing_started", "frames_extracted"]


async def session_keys(redis: Redis, sid: str) -> set[str]:
    return {k.decode() async for k in redis.scan_iter(match=f"dodo:{{{sid}}}:*")}


def assert_in_order(types: list[str], expected: list[str]) -> None:
    positions = [types.index(t) for t in expected]
    assert positions == sorted(positions), types


@pytest.fixture
async def model() -> AsyncIterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI(transcript="Le piano reste ici. The sofa comes with us.")
    async with LocalServer(fake.app) as server:
        yield fake, server.url + "/v1"


@pytest.fixture
async def analyzing_runtime(settings: Settings, model: tuple[FakeOpenAI, str]) -> AsyncIterator[Runtime]:
    fake, url = model
    rt = await Runtime(settings.with_overrides(base_url=url, api_key=fake.api_key, max_retries=0)).start()
    try:
        yield rt
    finally:
        await rt.stop()


async def test_a_video_becomes_an_inventory_and_leaves_no_media(
    analyzing_runtime: Runtime, redis: Redis, model: tuple[FakeOpenAI, str]
) -> None:
    fake, _ = model
    video = make_video(duration=6.0, width=640, height=360, noise=3)
    outcome = await analyze_bytes(analyzing_runtime.url, video)
    types = [e["type"] for e in outcome.events]
    assert outcome.error is None, outcome.events[-1]
    assert_in_order(types, [*ORDER, "ai_analysis_progress", "analysis_complete"])
    assert types.count("chunk_received") == -(-len(video) // analyzing_runtime.stream.chunk_size)
    result = outcome.result
    assert result is not None and result["session_id"] == outcome.session_id
    assert result["analysis"]["status"] == "complete"
    assert result["video"]["size_bytes"] == len(video)
    assert abs(result["video"]["duration_s"] - 6.0) < 0.2
    assert len(result["frames"]) >= 2
    assert result["inventory"]["total_items"] > 0
    assert len(fake.received("chat")[0].json["messages"][-1]["content"]) >= len(result["frames"])
    assert not {k for k in await session_keys(redis, outcome.session_id) if k.rsplit(":", 1)[1] in ("chunks", "frames", "audio")}
    async with __import__("httpx").AsyncClient(base_url=analyzing_runtime.url) as http:
        stored = await http.get(f"/sessions/{outcome.session_id}/result",
                                headers={"Authorization": f"Bearer {outcome.token}"})
    assert stored.status_code == 200 and stored.json() == result


async def test_a_home_tour_analysed_in_batches_lists_each_object_once_in_its_room(settings: Settings) -> None:
    """The fake model reads the objects' codes in the JPEGs it is sent; the merge must count each once."""
    tour = make_tour(rooms=4, objects_per_room=5, width=320, height=180, fps=10, still_s=2.0, walk_s=1.0, seed=5)
    fake = FakeOpenAI(sees=tour_sight(tour))
    async with LocalServer(fake.app) as server:
        rt = await Runtime(settings.with_overrides(base_url=server.url + "/v1", api_key=fake.api_key,
                                                   max_retries=0, batch_frames=3)).start()
        try:
            outcome = await analyze_bytes(rt.url, tour.data)
            async with __import__("httpx").AsyncClient(base_url=rt.url) as http:
                stored = await http.get(f"/sessions/{outcome.session_id}/result",
                                        headers={"Authorization": f"Bearer {outcome.token}"})
        finally:
            await rt.stop()
    assert outcome.error is None, outcome.events[-1]
    result = outcome.result
    requests = [sent_jpegs(r.json) for r in fake.received(CHAT)]
    spans = plan(len(result["frames"]), 3)
    assert len(requests) == len(spans) >= 3
    assert result["analysis"]["frames_sent"] == len(result["frames"]) + len(spans) - 1
    reported = [answer["usage"] for answer in fake.answers]
    analysis = result["analysis"]
    assert analysis["input_tokens"] == sum(u["prompt_tokens"] for u in reported)
    assert analysis["image_tokens"] == sum(u["prompt_tokens_details"]["image_tokens"] for u in reported) > 0
    assert analysis["text_tokens"] == sum(u["prompt_tokens_details"]["text_tokens"] for u in reported) > 0
    assert analysis["output_tokens"] == sum(u["completion_tokens"] for u in reported)
    price = DEFAULT_PRICES["gpt-5.4-mini"]
    assert analysis["cost_usd"] == pytest.approx(
        (analysis["input_tokens"] * price.input + analysis["output_tokens"] * price.output) / 1e6, abs=1e-6)
    read = {code for batch in requests for j in batch for code in read_codes(j)}
    shared = [batch[0] for batch in requests if batch[0] in {b[-1] for b in requests}]
    assert len(shared) == len(spans) - 1
    assert any(read_codes(j) for j in shared), "an object must be in a frame two batches share"
    truth = {o.id: o for o in tour.objects}
    assert {o.id for o in tour.objects if any(o.visible_at(t) for t in result["frames"])} <= read
    assert read == set(truth), "the frame selection shows every object of the tour"
    ids = list(catalogue.ids())
    listed = sorted((room["name"], item["catalogue_id"]) for room in result["inventory"]["rooms"]
                    for item in room["items"])
    assert listed == sorted((truth[code].room, object_item(code, ids)) for code in read)
    assert stored.status_code == 200 and stored.json() == result


async def test_without_a_model_the_analysis_is_skipped_with_a_reason(runtime: Runtime) -> None:
    outcome = await analyze_bytes(runtime.url, make_video(duration=3.0, audio=None))
    assert outcome.result is not None
    assert outcome.result["analysis"]["status"] == "skipped"
    assert "OPENAI" in outcome.result["analysis"]["reason"]
    assert outcome.result["inventory"] is None
    assert outcome.result["video"]["has_audio"] is False


@pytest.mark.parametrize(
    "make,code",
    [
        (lambda: b"this is not a video at all, just text. " * 2000, "not_a_video"),
        (lambda: truncate(make_video(duration=3.0), 0.5), "truncated_video"),
        (lambda: make_audio_only(), "no_video_stream"),
        (lambda: make_video(width=8192, height=4352, fps=1, duration=1.0, audio=None), "too_many_pixels"),
        (lambda: corrupt(make_video(duration=2.0), seed=3, flips=4000), None),
    ],
    ids=["non-video bytes", "truncated", "no video stream", "decompression bomb", "corrupt"],
)
async def test_bad_videos_end_in_an_error_event_and_no_media(runtime: Runtime, redis: Redis, make, code: str | None) -> None:
    """``code`` None: a damaged file may still decode partly; either way the run ends and leaves no media."""
    outcome = await asyncio.wait_for(analyze_bytes(runtime.url, make()), 60)
    left = await session_keys(redis, outcome.session_id)
    assert not {k for k in left if k.endswith((":chunks", ":frames", ":audio"))}
    assert (outcome.result is None) != (outcome.error is None)
    if code is None and outcome.result is not None:
        return
    assert outcome.error is not None and (code is None or outcome.error["code"] == code), outcome.events
    assert outcome.error["message"] and outcome.error["final"]
    assert outcome.events[-1]["type"] == "error"
    assert await redis.hget(keys.meta(outcome.session_id), "state") == b"failed"
