"""The decoder jobs: chunks in Redis -> frames and audio, decoded after completion or, for a
streamable container (or an MP4 whose index was sent first), while the chunks arrive; the declared
SHA-256 checked on the way."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from dodolens.client import create, send_chunks
from dodolens.runner import Runtime
from dodolens.settings import Settings
from processors.video.sniff import HEAD_BYTES, index_offset, leading_chunks
from streams import keys
from streams.connection import Redis
from streams.events import history
from tests.support.videos import corrupt, make_long_video, make_video


async def upload(http: httpx.AsyncClient, data: bytes, *, index_first: bool = True) -> tuple[str, dict[str, str], int]:
    """Create a session and send every chunk as our clients do (an MP4's index at the end first, unless
    told not to); returns its id, auth header and chunk count."""
    session = await create(http, len(data), "video/mp4")
    sid, chunk_size = session["session_id"], session["chunk_size"]
    count = -(-len(data) // chunk_size)
    await send_chunks(http, sid, session["token"], memoryview(data), chunk_size, list(range(count)), 3, None,
                      index_first=index_first)
    return sid, {"Authorization": f"Bearer {session['token']}"}, count


async def final_event(redis: Redis, sid: str, timeout_s: float = 60.0) -> tuple[str, dict]:
    """The first of frames_extracted or a final error in the session's event stream."""
    async with asyncio.timeout(timeout_s):
        while True:
            for event in await history(redis, sid):
                if event.type == "frames_extracted" or (event.type == "error" and event.data.get("final")):
                    return event.type, event.data
            await asyncio.sleep(0.05)


async def complete(http: httpx.AsyncClient, sid: str, auth: dict[str, str], count: int, sha256: str | None = None) -> None:
    body = {"chunks": count, **({"sha256": sha256} if sha256 else {})}
    response = await http.post(f"/sessions/{sid}/complete", json=body, headers=auth)
    assert response.status_code == 202, response.text


@pytest.fixture(params=[8, 0], ids=["with_follow_jobs", "without_follow_jobs"])
async def deployment(settings: Settings, request: pytest.FixtureRequest) -> AsyncIterator[Runtime]:
    """A DodoLens whose workers hash uploads as they arrive, or do not (then the decode checks the SHA-256)."""
    rt = await Runtime(settings.with_overrides(follow_concurrency=request.param)).start()
    try:
        yield rt
    finally:
        await rt.stop()


async def test_a_declared_sha256_that_matches_lets_the_frames_through(deployment: Runtime, redis: Redis) -> None:
    rt = deployment
    video = make_video(duration=4.0, width=640, height=360, noise=3)
    async with httpx.AsyncClient(base_url=rt.url) as http:
        sid, auth, count = await upload(http, video)
        await complete(http, sid, auth, count, hashlib.sha256(video).hexdigest())
        kind, data = await final_event(redis, sid)
    assert kind == "frames_extracted" and data["frames"] >= 2


async def test_a_video_over_the_duration_limit_is_refused_as_too_long_not_as_a_checksum_mismatch(
    deployment: Runtime, redis: Redis
) -> None:
    """The decode stops at the declared duration, before reading most chunks: the checksum is then
    finished from the chunks it did not read, and it is right."""
    video = make_long_video(3660)
    async with httpx.AsyncClient(base_url=deployment.url) as http:
        sid, auth, count = await upload(http, video, index_first=False)
        assert count > 4
        await complete(http, sid, auth, count, hashlib.sha256(video).hexdigest())
        kind, data = await final_event(redis, sid)
    assert (kind, data["code"]) == ("error", "too_long")


async def test_a_sha256_mismatch_is_a_final_error_and_no_frame_is_stored(deployment: Runtime, redis: Redis) -> None:
    rt = deployment
    video = make_video(duration=4.0, width=640, height=360, noise=3)
    async with httpx.AsyncClient(base_url=rt.url) as http:
        sid, auth, count = await upload(http, video)
        await complete(http, sid, auth, count, "0" * 64)
        kind, data = await final_event(redis, sid)
        status = (await http.get(f"/sessions/{sid}", headers=auth)).json()
    assert kind == "error" and data["code"] == "checksum_mismatch" and not data["retryable"]
    assert status["state"] == "failed" and status["error"]["code"] == "checksum_mismatch"
    assert not any([await redis.exists(k) for k in keys.media_keys(sid)])


async def test_a_damaged_transfer_reports_the_checksum_rather_than_the_decode(deployment: Runtime, redis: Redis) -> None:
    """Bytes damaged on the way fail to decode too; the checksum names the real cause."""
    rt = deployment
    video = make_video(duration=4.0, width=640, height=360, noise=3)
    async with httpx.AsyncClient(base_url=rt.url) as http:
        sid, auth, count = await upload(http, corrupt(video, seed=7, flips=4096))
        await complete(http, sid, auth, count, hashlib.sha256(video).hexdigest())
        kind, data = await final_event(redis, sid)
    assert kind == "error" and data["code"] == "checksum_mismatch"


@pytest.fixture
async def small_chunks(settings: Settings) -> AsyncIterator[Runtime]:
    """A DodoLens with 64 KiB chunks, so a short clip arrives in many, and a 1 s follow idle bound."""
    rt = await Runtime(settings.with_overrides(chunk_size=64 * 1024, follow_idle_s=1.0)).start()
    try:
        yield rt
    finally:
        await rt.stop()


async def meta_field(redis: Redis, sid: str, name: str) -> str | None:
    value = await redis.hget(keys.meta(sid), name)
    return value.decode() if value is not None else None


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float = 30.0, redis: Redis | None = None,
                sid: str = "") -> None:
    """Wait for ``check``; on timeout, fail showing the session's meta (chunk entries left out)."""
    try:
        async with asyncio.timeout(timeout_s):
            while not await check():
                await asyncio.sleep(0.02)
    except TimeoutError:
        meta = {k: v for k, v in (await redis.hgetall(keys.meta(sid))).items() if not k.startswith(b"c:")} if redis else {}
        raise AssertionError(f"not reached within {timeout_s} s; meta: {meta}") from None


async def stream_ids(redis: Redis, stream: str) -> set[str]:
    return {entry_id.decode() for entry_id, _ in await redis.xrange(stream)}


async def queued_on(redis: Redis, sid: str, field: str) -> str:
    """The work stream of the job named by meta ``field``. A done job's entry is deleted, but its id is the
    time it was queued: the follow job's at creation, the decode job's at completion."""
    entry, uploaded_at = await redis.hmget(keys.meta(sid), [field, "uploaded_at"])
    queued_ms = int(entry.decode().partition("-")[0])
    return keys.FOLLOW if queued_ms < int(float(uploaded_at) * 1000) else keys.JOBS


STREAMING_UPLOADS = {
    "webm_vp9": dict(codec="vp9"),
    "mediarecorder_webm_keyframes_3_s_apart": dict(codec="vp8", live=True, gop=90, fps=30),
}


@pytest.mark.parametrize("kind", STREAMING_UPLOADS)
async def test_a_streamable_upload_is_decoded_while_its_chunks_arrive(small_chunks: Runtime, redis: Redis,
                                                                      kind: str) -> None:
    video = make_video(duration=8.0, width=640, height=360, noise=3, container="webm", audio="opus",
                       **STREAMING_UPLOADS[kind])
    async with httpx.AsyncClient(base_url=small_chunks.url) as http:
        session = await create(http, len(video), "video/webm")
        sid, token, chunk = session["session_id"], session["token"], session["chunk_size"]
        count = -(-len(video) // chunk)
        assert count >= 5
        await send_chunks(http, sid, token, memoryview(video), chunk, list(range(count - 1)), 3, None)

        async def read_all_but_the_last() -> bool:
            return await meta_field(redis, sid, "followed") == str(count - 1)

        await until(read_all_but_the_last, redis=redis, sid=sid)
        assert await meta_field(redis, sid, "decoder") in await stream_ids(redis, keys.FOLLOW)
        await send_chunks(http, sid, token, memoryview(video), chunk, [count - 1], 1, None)
        await complete(http, sid, {"Authorization": f"Bearer {token}"}, count, hashlib.sha256(video).hexdigest())
        kind, data = await final_event(redis, sid)
    assert kind == "frames_extracted" and data["frames"] >= 2 and data["audio"]
    assert abs(data["duration"] - 8.0) < 0.2 and data["timestamps"][-1] > 5.0
    assert await meta_field(redis, sid, "followed") == str(count)
    types = [e.type for e in await history(redis, sid)]
    assert types.index("upload_complete") < types.index("processing_started") < types.index("frames_extracted")


@pytest.mark.parametrize("container", ["mpegts", "mp4"], ids=["streamable", "mp4_index_sent_first"])
async def test_a_follow_decode_checks_the_declared_sha256(small_chunks: Runtime, redis: Redis, container: str) -> None:
    video = make_video(duration=4.0, width=640, height=360, noise=3, container=container)
    async with httpx.AsyncClient(base_url=small_chunks.url) as http:
        sid, auth, count = await upload(http, video)
        await until(lambda: _has(redis, sid, "followed", str(count)), redis=redis, sid=sid)
        await complete(http, sid, auth, count, "1" * 64)
        kind, data = await final_event(redis, sid)
    assert kind == "error" and data["code"] == "checksum_mismatch"
    assert await queued_on(redis, sid, "decoder") == keys.FOLLOW
    assert not any([await redis.exists(k) for k in keys.media_keys(sid)])


async def test_an_mp4_whose_index_at_the_end_is_sent_first_is_decoded_while_the_rest_arrives(
    small_chunks: Runtime, redis: Redis
) -> None:
    video = make_video(duration=8.0, width=640, height=360, noise=3)
    lead = leading_chunks(video[:HEAD_BYTES], len(video), 64 * 1024)
    assert lead, "the index must start after the first chunk for this test to mean anything"
    async with httpx.AsyncClient(base_url=small_chunks.url) as http:
        session = await create(http, len(video), "video/mp4")
        sid, token, chunk = session["session_id"], session["token"], session["chunk_size"]
        count = -(-len(video) // chunk)
        media = [i for i in range(count) if i not in lead]
        await send_chunks(http, sid, token, memoryview(video), chunk, lead, 3, None)
        await send_chunks(http, sid, token, memoryview(video), chunk, media[:-1], 3, None, index_first=False)

        async def read_all_but_the_last() -> bool:
            return await meta_field(redis, sid, "followed") == str(count - 1)

        await until(read_all_but_the_last, redis=redis, sid=sid)
        await send_chunks(http, sid, token, memoryview(video), chunk, media[-1:], 1, None)
        await complete(http, sid, {"Authorization": f"Bearer {token}"}, count, hashlib.sha256(video).hexdigest())
        kind, data = await final_event(redis, sid)
    assert kind == "frames_extracted" and data["frames"] >= 2 and data["audio"]
    assert abs(data["duration"] - 8.0) < 0.2 and data["timestamps"][-1] > 5.0
    assert await queued_on(redis, sid, "decoder") == keys.FOLLOW
    assert await meta_field(redis, sid, "hasher") is None


async def test_an_index_sent_first_that_does_not_open_falls_back_to_the_seeking_decode_after_completion(
    small_chunks: Runtime, redis: Redis
) -> None:
    video = make_video(duration=4.0, width=640, height=360, noise=3)
    offset = index_offset(video[:HEAD_BYTES])
    assert offset is not None
    damaged = video[:offset] + bytes(len(video) - offset)
    async with httpx.AsyncClient(base_url=small_chunks.url) as http:
        sid, auth, count = await upload(http, damaged)

        async def follow_job_claimed_the_decode() -> bool:
            return await meta_field(redis, sid, "decoder") is not None

        await until(follow_job_claimed_the_decode, redis=redis, sid=sid)
        await complete(http, sid, auth, count)
        kind, data = await final_event(redis, sid)
    assert kind == "error" and data["code"] in ("truncated_video", "not_a_video"), data
    assert await queued_on(redis, sid, "decoder") == keys.FOLLOW
    assert not any([await redis.exists(k) for k in keys.media_keys(sid)])


async def test_an_mp4_sent_in_plain_order_is_hashed_as_it_arrives_and_decoded_after_completion(
    small_chunks: Runtime, redis: Redis
) -> None:
    video = make_video(duration=4.0, width=640, height=360, noise=3)
    sha = hashlib.sha256(video).hexdigest()
    async with httpx.AsyncClient(base_url=small_chunks.url) as http:
        session = await create(http, len(video), "video/mp4")
        sid, token, chunk = session["session_id"], session["token"], session["chunk_size"]
        count = -(-len(video) // chunk)
        await send_chunks(http, sid, token, memoryview(video), chunk, [0], 1, None)

        async def hashing() -> bool:
            return await meta_field(redis, sid, "hasher") is not None

        await until(hashing, redis=redis, sid=sid)
        await send_chunks(http, sid, token, memoryview(video), chunk, list(range(1, count)), 3, None)
        auth = {"Authorization": f"Bearer {token}"}
        await complete(http, sid, auth, count, sha)
        kind, data = await final_event(redis, sid)
    assert kind == "frames_extracted" and data["frames"] >= 2
    assert await queued_on(redis, sid, "decoder") == keys.JOBS
    assert await queued_on(redis, sid, "hasher") == keys.FOLLOW
    assert await meta_field(redis, sid, "sha256_verified") == sha
    assert await meta_field(redis, sid, "followed") is None


async def test_an_upload_that_goes_quiet_is_given_back_to_the_completion_decode(small_chunks: Runtime, redis: Redis) -> None:
    video = make_video(duration=4.0, width=640, height=360, noise=3, container="mpegts")
    async with httpx.AsyncClient(base_url=small_chunks.url) as http:
        session = await create(http, len(video), "video/mp2t")
        sid, token, chunk = session["session_id"], session["token"], session["chunk_size"]
        count = -(-len(video) // chunk)
        await send_chunks(http, sid, token, memoryview(video), chunk, [0, 1], 1, None)
        await until(lambda: _has(redis, sid, "followed", "2"))
        await until(lambda: _has(redis, sid, "decoder", None), timeout_s=10)
        await send_chunks(http, sid, token, memoryview(video), chunk, list(range(2, count)), 3, None)
        await complete(http, sid, {"Authorization": f"Bearer {token}"}, count)
        kind, data = await final_event(redis, sid)
    assert kind == "frames_extracted"
    assert await queued_on(redis, sid, "decoder") == keys.JOBS


async def test_too_few_keyframes_fall_back_to_the_seeking_decode(small_chunks: Runtime, redis: Redis) -> None:
    video = make_video(duration=6.0, width=640, height=360, noise=3, container="mpegts", gop=1000)
    async with httpx.AsyncClient(base_url=small_chunks.url) as http:
        sid, auth, count = await upload(http, video)
        await until(lambda: _has(redis, sid, "followed", str(count)), redis=redis, sid=sid)
        await complete(http, sid, auth, count)
        kind, data = await final_event(redis, sid)
    assert kind == "frames_extracted" and data["frames"] >= 2
    assert data["timestamps"][-1] > 4.0
    assert await queued_on(redis, sid, "decoder") == keys.FOLLOW


async def _has(redis: Redis, sid: str, name: str, value: str | None) -> bool:
    return await meta_field(redis, sid, name) == value


async def test_a_tus_upload_is_followed_like_a_chunk_upload(small_chunks: Runtime, redis: Redis) -> None:
    video = make_video(duration=6.0, width=640, height=360, noise=3, container="mpegts")
    tus = {"Tus-Resumable": "1.0.0"}
    async with httpx.AsyncClient(base_url=small_chunks.url) as http:
        created = await http.post("/files/", headers={**tus, "Upload-Length": str(len(video))})
        assert created.status_code == 201, created.text
        sid, location = created.headers["Upload-Session-Id"], created.headers["Location"]
        patch = {**tus, "Content-Type": "application/offset+octet-stream"}
        piece = 100_000
        for offset in range(0, len(video), piece):
            sent = await http.patch(location, content=video[offset : offset + piece],
                                    headers={**patch, "Upload-Offset": str(offset)})
            assert sent.status_code == 204, sent.text
        kind, data = await final_event(redis, sid)
    assert kind == "frames_extracted" and data["frames"] >= 2
    assert await queued_on(redis, sid, "decoder") == keys.FOLLOW
    assert await meta_field(redis, sid, "followed") == str(-(-len(video) // (64 * 1024)))
