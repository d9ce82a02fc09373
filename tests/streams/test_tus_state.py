"""tus upload state in Redis: PATCH bodies of any size become the session's fixed-size chunks."""

from __future__ import annotations

import os
import random

import pytest

from streams import keys
from streams.chunks import iter_chunks
from streams.config import StreamConfig
from streams.connection import Redis
from streams.sessions import chunk_map, create_session, get_meta
from streams.tus import ChunkWriter, UploadLocked, commit, create_upload, get_upload, load_tail, locked


async def write_in_requests(r: Redis, cfg: StreamConfig, sid: str, data: bytes, cuts: list[int]) -> None:
    """One ChunkWriter per simulated request, as separate gateways would do, resuming from Redis alone."""
    edges = [0, *cuts, len(data)]
    for start, end in zip(edges, edges[1:]):
        upload = await get_upload(r, sid)
        assert upload is not None and upload.offset == start
        tail = await load_tail(r, cfg, sid, start)
        writer = ChunkWriter(r, cfg, sid, size=len(data), chunk_size=cfg.chunk_size, offset=start, tail=tail)
        step = random.Random(start).randint(1, 40_000)
        for i in range(start, end, step):
            await writer.write(data[i : min(i + step, end)])
        await writer.save()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_any_split_of_the_bytes_gives_the_same_fixed_size_chunks(redis: Redis, stream_cfg: StreamConfig,
                                                                       seed: int) -> None:
    rng = random.Random(seed)
    data = os.urandom(rng.randint(3, 6) * stream_cfg.chunk_size + rng.randint(1, stream_cfg.chunk_size - 1))
    cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 8)))
    sid = f"{seed:032x}"
    await create_session(redis, stream_cfg, sid, len(data), "video/mp4")
    await create_upload(redis, stream_cfg, sid, len(data))

    await write_in_requests(redis, stream_cfg, sid, data, cuts)

    meta = await get_meta(redis, sid)
    assert meta is not None
    lengths = [length for _index, (_entry, length) in sorted(chunk_map(meta).items())]
    assert lengths[:-1] == [stream_cfg.chunk_size] * (len(lengths) - 1)
    assert b"".join([c async for c in iter_chunks(redis, stream_cfg, sid)]) == data
    assert (await get_upload(redis, sid)).offset == len(data)  # type: ignore[union-attr]
    assert not await redis.exists(keys.tus_tail(sid))


async def test_the_tail_is_sealed_bound_to_its_offset_and_expires(redis: Redis, stream_cfg: StreamConfig) -> None:
    sid = "a" * 32
    tail = os.urandom(5000)
    await create_session(redis, stream_cfg, sid, 10 * stream_cfg.chunk_size, "video/mp4")
    await create_upload(redis, stream_cfg, sid, 10 * stream_cfg.chunk_size)
    await commit(redis, stream_cfg, sid, 5000, tail)

    raw = await redis.get(keys.tus_tail(sid))
    assert raw is not None and tail[:64] not in raw
    assert 0 < await redis.ttl(keys.tus_tail(sid)) <= stream_cfg.chunk_ttl_s
    assert keys.tus_tail(sid) in keys.media_keys(sid)
    assert await load_tail(redis, stream_cfg, sid, 5000) == tail
    with pytest.raises(Exception, match="does not open"):
        await load_tail(redis, stream_cfg, sid, 4999)


async def test_one_writer_at_a_time(redis: Redis) -> None:
    sid = "b" * 32
    async with locked(redis, sid):
        with pytest.raises(UploadLocked):
            async with locked(redis, sid):
                pass
        assert await redis.pttl(keys.tus_lock(sid)) > 0
    assert not await redis.exists(keys.tus_lock(sid))
    async with locked(redis, sid):
        pass
