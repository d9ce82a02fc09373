"""Session metadata: state moves, the active set, and chunk arithmetic."""

from __future__ import annotations

from streams import keys
from streams.config import StreamConfig
from streams.connection import Redis
from streams.sessions import (
    State,
    active_sessions,
    create_session,
    expected_chunks,
    expected_length,
    get_fields,
    get_meta,
    set_state,
    update_meta,
)


async def test_a_state_change_after_erasure_does_not_bring_the_session_back(redis: Redis, stream_cfg: StreamConfig) -> None:
    sid = "f" * 32
    await create_session(redis, stream_cfg, sid, 10, "video/mp4")
    await redis.delete(keys.meta(sid))
    await set_state(redis, stream_cfg, sid, State.PROCESSING)
    assert not await update_meta(redis, stream_cfg, sid, duration=1.0)
    assert not await redis.exists(keys.meta(sid))


async def test_a_finished_session_stays_finished(redis: Redis, stream_cfg: StreamConfig) -> None:
    """A decode job taken just before the follow job failed the session must not revive it."""
    sid = "e" * 32
    await create_session(redis, stream_cfg, sid, 10, "video/mp4")
    assert await set_state(redis, stream_cfg, sid, State.FAILED, error_code="checksum_mismatch")
    assert not await set_state(redis, stream_cfg, sid, State.PROCESSING)
    meta = await get_meta(redis, sid)
    assert meta is not None and meta["state"] == "failed" and meta["error_code"] == "checksum_mismatch"


async def test_finished_sessions_leave_the_active_set(redis: Redis, stream_cfg: StreamConfig) -> None:
    for sid in ("1" * 32, "2" * 32):
        await create_session(redis, stream_cfg, sid, 10, "video/mp4")
    assert await active_sessions(redis, stream_cfg) == 2
    await set_state(redis, stream_cfg, "1" * 32, State.DONE, result_bytes=100)
    assert await active_sessions(redis, stream_cfg) == 1
    meta = await get_meta(redis, "1" * 32)
    assert meta is not None and meta["state"] == "done" and meta["result_bytes"] == "100"
    assert 0 < await redis.ttl(keys.meta("1" * 32)) <= stream_cfg.session_ttl_s


async def test_get_fields_reads_only_what_is_asked(redis: Redis, stream_cfg: StreamConfig) -> None:
    await create_session(redis, stream_cfg, "3" * 32, 10, "video/mp4")
    assert await get_fields(redis, "3" * 32, "size", "missing") == {"state": "created", "size": "10"}
    assert await get_fields(redis, "4" * 32, "size") is None


def test_every_chunk_is_full_but_the_last() -> None:
    assert expected_chunks(10, 4) == 3
    assert [expected_length(10, 4, i) for i in range(3)] == [4, 4, 2]
    assert expected_chunks(8, 4) == 2 and expected_length(8, 4, 1) == 4
