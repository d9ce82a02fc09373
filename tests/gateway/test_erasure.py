"""Erasure leaves nothing: no key, stream entry or shared event names the session afterwards, only the
tombstone's keyed pseudonym; the right to erase outlives the upload token."""

from __future__ import annotations

import asyncio

import httpx

from dodolens.client import analyze_bytes
from dodolens.runner import Runtime
from dodolens.settings import Settings
from gateway.auth import issue_token
from streams import keys
from streams.audit import pseudonym
from streams.connection import Redis
from streams.traces import traces
from tests.support.videos import make_video


async def test_after_erase_redis_holds_nothing_of_the_session_but_its_pseudonym(settings: Settings, redis: Redis) -> None:
    quick = settings.with_overrides(events_retention_s=1, reap_interval_s=0.2)
    async with Runtime(quick) as rt:
        outcome = await analyze_bytes(rt.url, make_video(duration=2.0, audio=None), timeout_s=60)
        assert outcome.result is not None
        sid = outcome.session_id
        shared = b"".join(f[b"e"] for _id, f in await redis.xrange(keys.EVENTS))
        assert b"analysis_complete" in shared and b'"video":' not in shared and b"inventory" not in shared
        for stream in (keys.JOBS, keys.FOLLOW, keys.ANALYZE):
            assert await redis.xlen(stream) == 0, f"{stream} keeps acknowledged jobs"
        async with httpx.AsyncClient(base_url=rt.url) as http:
            erased = await http.delete(f"/sessions/{sid}", headers={"Authorization": f"Bearer {outcome.token}"})
        assert erased.status_code == 200 and erased.json()["result_deleted"] is True
        assert [t for t in await traces(redis, sid) if not t.startswith((keys.EVENTS, keys.session_events(sid)))] == []
        await asyncio.sleep(1.5)
        assert await traces(redis, sid) == []
        assert await redis.zscore(keys.ERASED, pseudonym(rt.stream, sid)) is not None


async def test_a_session_can_be_erased_with_its_token_long_expired(settings: Settings, redis: Redis) -> None:
    async with Runtime(settings, workers=False) as rt, httpx.AsyncClient(base_url=rt.url) as http:
        sid = (await http.post("/sessions", json={"size": 10})).json()["session_id"]
        old, _ = issue_token(rt.stream.keyring, sid, 3600, now=0)
        expired = {"Authorization": f"Bearer {old}"}
        assert (await http.get(f"/sessions/{sid}", headers=expired)).status_code == 401
        erased = await http.delete(f"/sessions/{sid}", headers=expired)
        assert erased.status_code == 200 and "meta" in erased.json()["redis_keys_deleted"]
        forged = await http.delete(f"/sessions/{sid}", headers={"Authorization": f"Bearer 0.{'0' * 64}"})
        assert forged.status_code == 403
