"""The whole pipeline on a real 3-master Redis Cluster: two gateways, two workers, one shared secret.

A session uploaded through one gateway is followed over the other gateway's WebSocket and completes
with a result; its keys live on one slot, the global streams on whichever node owns them, and the
sweeper's scan and the persistence check reach every node.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio.cluster import RedisCluster as ClusterClient

from dodolens.client import Outcome, complete, create, follow_events, send_chunks
from dodolens.runner import Runtime
from dodolens.settings import Settings
from processors.sweeper import media_keys_by_session, memory_fraction
from streams import keys
from streams.connection import connect, persistence_problems
from tests.support.cluster import RedisCluster
from tests.support.fake_openai import FakeOpenAI, LocalServer
from tests.support.videos import make_video

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with RedisCluster(masters=3) as running:
        yield running


@pytest.fixture
async def client(cluster: RedisCluster) -> AsyncIterator[ClusterClient]:
    r = connect(cluster.url, cluster=True)
    try:
        yield r
    finally:
        await r.aclose()


def probe_sessions(client: ClusterClient) -> list[str]:
    """Session ids whose keys land on every primary, one each."""
    by_node: dict[str, str] = {}
    n = 0
    while len(by_node) < len(client.get_primaries()):
        sid = f"probe{n}"
        by_node.setdefault(client.get_node_from_key(keys.frames(sid)).name, sid)
        n += 1
    return list(by_node.values())


async def upload(gateway: str, watcher: str, video: bytes) -> Outcome:
    """Create and upload through ``gateway``, follow the events over ``watcher``'s WebSocket."""
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
        session = await create(http, len(video), "video/mp4")
        sid, token, chunk_size = session["session_id"], session["token"], session["chunk_size"]
        outcome, ready = Outcome(sid, token), asyncio.Event()
        follower = asyncio.create_task(follow_events(watcher, sid, token, None, outcome, ready))
        try:
            await asyncio.wait_for(ready.wait(), 10)
            view = memoryview(video)
            await send_chunks(http, sid, token, view, chunk_size, list(range(-(-len(video) // chunk_size))))
            response = await complete(http, sid, token, view, chunk_size, hashlib.sha256(video).hexdigest())
            assert response.status_code == 202, response.text
            await asyncio.wait_for(follower, 60)
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
    return outcome


async def test_sessions_cross_gateways_and_workers_on_a_cluster(
    cluster: RedisCluster, client: ClusterClient, tmp_path: Path
) -> None:
    fake = FakeOpenAI(transcript="The sofa comes with us.")
    async with LocalServer(fake.app) as model:
        shared = Settings().with_overrides(
            redis_url=cluster.url, redis_cluster=True, master_secret=bytes(range(32)),
            results_db=str(tmp_path / "results.sqlite3"), chunk_size=64 * 1024, claim_idle_ms=2_000,
            base_url=model.url + "/v1", api_key=fake.api_key, max_retries=0)
        runtimes = [Runtime(shared, workers=False), Runtime(shared, workers=False),
                    Runtime(shared, gateway=False), Runtime(shared, gateway=False)]
        async with contextlib.AsyncExitStack() as stack:
            for runtime in runtimes:
                await stack.enter_async_context(runtime)
            gateway_a, gateway_b = runtimes[0].url, runtimes[1].url
            videos = [make_video(duration=3.0, noise=2, pattern=bytes([n])) for n in range(2)]
            outcomes = await asyncio.gather(upload(gateway_a, gateway_b, videos[0]),
                                            upload(gateway_b, gateway_a, videos[1]))
            assert all(not task.done() for runtime in runtimes for task in runtime.tasks), "a runtime task died"

            for outcome, video in zip(outcomes, videos):
                assert outcome.error is None, outcome.events
                assert outcome.result is not None and outcome.result["session_id"] == outcome.session_id
                assert outcome.result["analysis"]["status"] == "complete"
                assert outcome.result["video"]["size_bytes"] == len(video)
                types = [e["type"] for e in outcome.events]
                assert types[0] == "session_created" and types[-1] == "analysis_complete"
                assert "frames_extracted" in types
                async with httpx.AsyncClient(base_url=gateway_b) as http:
                    stored = await http.get(f"/sessions/{outcome.session_id}/result",
                                            headers={"Authorization": f"Bearer {outcome.token}"})
                assert stored.status_code == 200 and stored.json() == outcome.result

            slots = {client.keyslot(key) for key in keys.session_keys(outcomes[0].session_id)}
            assert len(slots) == 1, "a session's keys must share one slot"
            assert len({client.keyslot(key) for key in (keys.JOBS, keys.ANALYZE, keys.EVENTS)}) > 1
            assert await media_keys_by_session(client) == {}

    stray = probe_sessions(client)
    for sid in stray:
        await client.xadd(keys.frames(sid), {"i": 0})
    try:
        assert set(await media_keys_by_session(client)) == set(stray), "the sweeper's scan must reach every primary"
    finally:
        for sid in stray:
            await client.delete(keys.frames(sid))

async def test_the_persistence_check_asks_every_node(cluster: RedisCluster, client: ClusterClient) -> None:
    assert await persistence_problems(client) == []
    other = next(node for node in client.get_primaries() if node.name != client.get_default_node().name)
    await client.config_set("save", "3600 1", target_nodes=other)
    try:
        problems = await persistence_problems(client)
        assert problems and "RDB" in problems[0]
    finally:
        await client.config_set("save", "", target_nodes=other)


async def test_memory_pressure_is_read_on_every_primary(client: ClusterClient) -> None:
    assert await memory_fraction(client) is None
    other = next(node for node in client.get_primaries() if node.name != client.get_default_node().name)
    used = int((await client.info("memory", target_nodes=other))["used_memory"])
    await client.config_set("maxmemory", str(int(used * 1.1)), target_nodes=other)
    try:
        assert (await memory_fraction(client) or 0) > 0.8
    finally:
        await client.config_set("maxmemory", "0", target_nodes=other)
