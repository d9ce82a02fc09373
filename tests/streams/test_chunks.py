"""The chunk stream: encrypted, idempotent appends, random access by index, TTLs."""

from __future__ import annotations

import asyncio

import pytest

from streams import keys
from streams.chunks import KIND, SealedBuffers, SessionGone, append_chunk, append_sealed, iter_chunks, read_chunk
from streams.config import StreamConfig
from streams.connection import Redis
from streams.crypto import SealError, sealed_size
from streams.events import history
from streams.sessions import chunk_map, create_session, get_meta, missing_chunks


async def test_chunks_out_of_order_and_repeated_are_stored_once_each(redis: Redis, stream_cfg: StreamConfig) -> None:
    size = stream_cfg.chunk_size * 2 + 100
    await create_session(redis, stream_cfg, "a" * 32, size, "video/mp4")
    parts = [bytes([i]) * stream_cfg.chunk_size for i in range(2)] + [b"z" * 100]
    results = await asyncio.gather(*(append_chunk(redis, stream_cfg, "a" * 32, i, parts[i]) for i in (2, 0, 1, 0, 2)))
    assert results.count(None) == 2 and sorted(r for r in results if r is not None) == [1, 2, 3]
    assert await redis.xlen(keys.chunks("a" * 32)) == 3
    meta = await get_meta(redis, "a" * 32)
    assert meta is not None and missing_chunks(meta) == []
    assert int(meta["bytes"]) == size
    assert [c async for c in iter_chunks(redis, stream_cfg, "a" * 32)] == parts
    entry, _ = chunk_map(meta)[1]
    assert await read_chunk(redis, stream_cfg, "a" * 32, 1, entry) == parts[1]


async def test_plaintext_never_reaches_redis_and_keys_have_ttls(redis: Redis, stream_cfg: StreamConfig) -> None:
    sid = "b" * 32
    marker = b"MARKER-0123456789-" * 10
    await create_session(redis, stream_cfg, sid, len(marker), "video/mp4")
    await append_chunk(redis, stream_cfg, sid, 0, marker)
    for key in (keys.chunks(sid), keys.meta(sid)):
        assert 0 < await redis.ttl(key) <= stream_cfg.session_ttl_s
    rows = await redis.xrange(keys.chunks(sid))
    assert all(b"MARKER" not in value for _id, fields in rows for value in fields.values())


async def test_missing_chunks_lists_what_the_server_lacks(redis: Redis, stream_cfg: StreamConfig) -> None:
    sid = "c" * 32
    await create_session(redis, stream_cfg, sid, stream_cfg.chunk_size * 4, "video/mp4")
    await append_chunk(redis, stream_cfg, sid, 1, b"x" * stream_cfg.chunk_size)
    meta = await get_meta(redis, sid)
    assert meta is not None and missing_chunks(meta) == [0, 2, 3]


async def test_a_chunk_moved_to_another_session_or_index_does_not_open(redis: Redis, stream_cfg: StreamConfig) -> None:
    a, b = "d" * 32, "e" * 32
    for sid in (a, b):
        await create_session(redis, stream_cfg, sid, 20, "video/mp4")
    await append_chunk(redis, stream_cfg, a, 0, b"secret-bytes-of-a!!!")
    (entry_id, fields), = await redis.xrange(keys.chunks(a))
    moved = await redis.xadd(keys.chunks(b), fields)
    with pytest.raises(SealError):
        await read_chunk(redis, stream_cfg, b, 0, moved.decode())
    with pytest.raises(SealError):
        await read_chunk(redis, stream_cfg, a, 1, entry_id.decode())
    assert await read_chunk(redis, stream_cfg, a, 0, entry_id.decode()) == b"secret-bytes-of-a!!!"


async def test_appending_to_a_session_that_is_gone_is_refused(redis: Redis, stream_cfg: StreamConfig) -> None:
    with pytest.raises(SessionGone):
        await append_chunk(redis, stream_cfg, "9" * 32, 0, b"late bytes")
    assert not await redis.exists(keys.chunks("9" * 32), keys.meta("9" * 32))


async def test_an_append_leaves_only_its_entry_and_records_its_id(redis: Redis, stream_cfg: StreamConfig) -> None:
    """The ciphertext is XADDed outside Lua; the bookkeeping learns its id without leaving anything behind."""
    sid = "f" * 32
    await create_session(redis, stream_cfg, sid, 30, "video/mp4")
    assert await append_chunk(redis, stream_cfg, sid, 1, b"y" * 10) == 1
    assert await append_chunk(redis, stream_cfg, sid, 1, b"y" * 10) is None
    assert await append_chunk(redis, stream_cfg, sid, 0, b"x" * 10) == 2
    rows = await redis.xrange(keys.chunks(sid))
    meta = await get_meta(redis, sid)
    assert meta is not None
    assert {index: entry for index, (entry, _n) in chunk_map(meta).items()} == {
        int(fields[b"i"]): entry_id.decode() for entry_id, fields in rows}
    assert await redis.xinfo_groups(keys.chunks(sid)) == []
    assert meta["state"] == "created"


async def test_the_first_chunk_can_open_the_upload(redis: Redis, stream_cfg: StreamConfig) -> None:
    sid = "0" * 32
    await create_session(redis, stream_cfg, sid, 20, "video/mp4")
    await append_chunk(redis, stream_cfg, sid, 0, b"z" * 10, mark_uploading=True)
    meta = await get_meta(redis, sid)
    assert meta is not None and meta["state"] == "uploading"
    await redis.hset(keys.meta(sid), "state", "queued")
    await append_chunk(redis, stream_cfg, sid, 1, b"z" * 10, mark_uploading=True)
    assert (await get_meta(redis, sid) or {})["state"] == "queued"


async def test_a_refused_append_to_a_gone_session_keeps_the_other_entries_out(redis: Redis, stream_cfg: StreamConfig) -> None:
    """Erased between the meta check and the append: the late chunk is dropped and no stream is left."""
    sid = "1" * 32
    await create_session(redis, stream_cfg, sid, 20, "video/mp4")
    await append_chunk(redis, stream_cfg, sid, 0, b"a" * 10)
    await redis.delete(keys.meta(sid), keys.chunks(sid))
    with pytest.raises(SessionGone):
        await append_chunk(redis, stream_cfg, sid, 1, b"b" * 10)
    assert not await redis.exists(keys.chunks(sid), keys.meta(sid))


async def test_a_sealed_append_announces_the_chunk_in_the_same_step(redis: Redis, stream_cfg: StreamConfig) -> None:
    sid = "e" * 32
    await create_session(redis, stream_cfg, sid, 300, "video/mp4")
    epoch, blob = stream_cfg.keyring.seal(b"x" * 100, sid, KIND, 1)
    received, event = await append_sealed(redis, stream_cfg, sid, 1, 100, epoch, blob, announce=3)
    assert received == 1 and event is not None
    assert (event.type, event.data) == ("chunk_received", {"index": 1, "received": 1, "chunks": 3})
    stored = await history(redis, sid)
    assert [(e.id, e.type, e.data, e.timestamp) for e in stored] == [(event.id, event.type, event.data, event.timestamp)]
    assert 0 < await redis.ttl(keys.session_events(sid)) <= stream_cfg.session_ttl_s
    again, repeat = await append_sealed(redis, stream_cfg, sid, 1, 100, epoch, blob, announce=3)
    assert (again, repeat) == (None, None), "a repeated chunk is neither stored nor announced twice"
    assert len(await history(redis, sid)) == 1
    quiet, none = await append_sealed(redis, stream_cfg, sid, 2, 100, *stream_cfg.keyring.seal(b"y" * 100, sid, KIND, 2))
    assert (quiet, none) == (2, None) and len(await history(redis, sid)) == 1


def test_sealed_buffers_are_reused_at_their_size_only() -> None:
    buffers = SealedBuffers(keep=1)
    first = buffers.take(sealed_size(10))
    buffers.give(first)
    assert buffers.take(sealed_size(10)) is first
    buffers.give(first)
    assert buffers.take(sealed_size(20)) is not first
    buffers.give(bytearray(5))
    buffers.give(bytearray(6))
    assert len(buffers.take(6)) == 6
