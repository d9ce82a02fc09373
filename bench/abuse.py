"""Issue 13: abuse resistance and complete erasure, against real gateway and worker processes.

- lockout: with the default settings, one client creates sessions as fast as it can and uploads nothing,
  while a second client creates one a second (and erases it): how long the first holds any slot, how many
  at once, and how many of the second's requests get 201.
- race: 40 creations at once, split over two gateways, against a cap of 10.
- erasure: a session analyzed end to end, then erased: where its id is still found in Redis.
- restart: Redis restarted under a gateway: requests that fail once ``/readyz`` says ready.

The two clients of the lockout are told apart by their source address (127.0.0.2 and 127.0.0.3 are this
machine too), as two users' phones would be, with no proxy header and no setting changed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import redis.asyncio as aioredis

from bench import clips
from bench.harness import Goal, deployment, stream_config
from dodolens.client import analyze_bytes
from streams import keys
from streams.audit import pseudonym
from streams.embedded import EmbeddedRedis
from streams.threads import in_thread
from streams.traces import traces

LOCKOUT_S = 50.0
"""Past the default idle time (30 s) plus a reaper round (5 s): every early session must have been reaped."""
HOLD_TARGET_S = 60.0
DEFAULT_QUOTA = 3
RACERS, RACE_CAP, RACE_ROUNDS = 40, 10, 5
RESTARTS, RESTART_REQUESTS = 4, 12
RETENTION_WAIT_S = 36.0
"""The default ``dodo:events`` retention (30 s) plus a housekeeping round (5 s)."""


@asynccontextmanager
async def client_from(address: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(transport=transport, timeout=30) as http:
        yield http


def lockout() -> Goal:
    with deployment(DODOLENS_MAX_SESSIONS=10, DODOLENS_CLIENT_MAX_SESSIONS=DEFAULT_QUOTA) as (redis, processes):
        base = processes.gateway()
        greedy_client = pseudonym(stream_config(), "client:127.0.0.2")
        stats = asyncio.run(_lockout(base, redis.url, greedy_client))
    passed = stats["max_hold_s"] <= HOLD_TARGET_S and stats["max_held"] <= DEFAULT_QUOTA and \
        stats["other_ok"] == stats["other_sent"] > 0
    return Goal(
        "lockout", "Issue 13: one client creating sessions it never uploads to",
        f"no slot held > {HOLD_TARGET_S:.0f} s, never > quota ({DEFAULT_QUOTA}), a second client always gets 201",
        "n/a (absolute target, default settings)",
        f"longest hold {stats['max_hold_s']:.1f} s, at most {stats['max_held']} held; second client "
        f"{stats['other_ok']}/{stats['other_sent']} x 201",
        f"{stats['max_hold_s']:.1f} s vs {HOLD_TARGET_S:.0f} s", passed,
        [
            f"{LOCKOUT_S:.0f} s run; one gateway process with the default settings (DODOLENS_MAX_SESSIONS=10, "
            f"per-client quota {DEFAULT_QUOTA}, DODOLENS_UPLOAD_IDLE=30 s, reaper every 5 s); no proxy, no API key",
            f"greedy client (from 127.0.0.2, POST /sessions in a tight loop): {stats['greedy_sent']} requests, "
            f"{stats['greedy_ok']} x 201, {stats['greedy_429']} x 429 (all with Retry-After: "
            f"{stats['retry_after_ok']}), other {stats['greedy_other']}",
            f"its sessions held a slot for at most {stats['max_hold_s']:.1f} s (slot age sampled every 0.25 s in "
            f"Redis); reaped with an upload_idle error: {stats['reaped']}",
            f"second client (from 127.0.0.3, one POST /sessions a second, then DELETE): {stats['other_ok']}/"
            f"{stats['other_sent']} x 201",
        ],
    )


async def _lockout(base: str, redis_url: str, greedy_client: str) -> dict:
    r = aioredis.Redis.from_url(redis_url)
    stats = {f"{who}_{what}": 0 for who in ("greedy", "other") for what in ("sent", "ok", "429", "other")}
    stats.update(retry_after_ok=True, max_held=0, max_hold_s=0.0)
    greedy_sids: list[str] = []
    deadline = time.monotonic() + LOCKOUT_S

    async def create(http: httpx.AsyncClient, who: str) -> dict | None:
        """One POST /sessions, counted under ``who``; the body when it was admitted."""
        answer = await http.post(f"{base}/sessions", json={"size": 10_000_000})
        stats[f"{who}_sent"] += 1
        outcome = {201: "ok", 429: "429"}.get(answer.status_code, "other")
        stats[f"{who}_{outcome}"] += 1
        if answer.status_code == 429:
            stats["retry_after_ok"] &= int(answer.headers.get("retry-after", "0")) >= 1
        return answer.json() if answer.status_code == 201 else None

    async def greedy() -> None:
        async with client_from("127.0.0.2") as http:
            while time.monotonic() < deadline:
                if body := await create(http, "greedy"):
                    greedy_sids.append(body["session_id"])

    async def other() -> None:
        async with client_from("127.0.0.3") as http:
            while time.monotonic() < deadline:
                if body := await create(http, "other"):
                    await http.delete(f"{base}/sessions/{body['session_id']}",
                                      headers={"Authorization": f"Bearer {body['token']}"})
                await asyncio.sleep(1.0)

    async def watch() -> None:
        while time.monotonic() < deadline:
            held = await r.zrange(keys.client_sessions(greedy_client), 0, -1, withscores=True)
            now = time.time()
            stats["max_held"] = max(stats["max_held"], len(held))
            stats["max_hold_s"] = max([stats["max_hold_s"], *(now - created for _sid, created in held)])
            await asyncio.sleep(0.25)

    try:
        await asyncio.gather(greedy(), other(), watch())
        stats["reaped"] = 0
        for sid in greedy_sids:
            meta = await r.hmget(keys.meta(sid), ["error_code"])
            stats["reaped"] += meta[0] == b"upload_idle"
        stats["reaped"] = f"{stats['reaped']} of {len(greedy_sids)} (the rest were still within their idle time)"
    finally:
        await r.aclose()
    return stats


def race() -> Goal:
    admitted: list[int] = []
    with deployment(DODOLENS_MAX_SESSIONS=RACE_CAP, DODOLENS_CLIENT_MAX_SESSIONS=0) as (redis, processes):
        bases = [processes.gateway(), processes.gateway()]
        admitted = asyncio.run(_race(bases, redis.url))
    worst = max(admitted)
    return Goal(
        "race", f"Issue 13: {RACERS} racing creations against a cap of {RACE_CAP}",
        f"at most {RACE_CAP} admitted", "n/a (absolute target)",
        f"at most {worst} admitted in {RACE_ROUNDS} rounds", f"{worst} vs {RACE_CAP}", worst <= RACE_CAP,
        [f"two gateway processes on one Redis, DODOLENS_MAX_SESSIONS={RACE_CAP}, per-client quota off; each round "
         f"fires {RACERS} POST /sessions at once, half to each gateway, then erases what was admitted",
         f"admitted per round: {', '.join(map(str, admitted))}"],
    )


async def _race(bases: list[str], redis_url: str) -> list[int]:
    r = aioredis.Redis.from_url(redis_url)
    admitted: list[int] = []
    try:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=RACERS)) as http:
            for _ in range(RACE_ROUNDS):
                answers = await asyncio.gather(*(http.post(f"{bases[i % 2]}/sessions", json={"size": 10})
                                                 for i in range(RACERS)))
                created = [a.json() for a in answers if a.status_code == 201]
                admitted.append(max(len(created), await r.zcard(keys.ACTIVE)))
                await asyncio.gather(*(http.delete(f"{bases[0]}/sessions/{c['session_id']}",
                                                   headers={"Authorization": f"Bearer {c['token']}"}) for c in created))
    finally:
        await r.aclose()
    return admitted


def erasure() -> Goal:
    with deployment() as (redis, processes):
        base = processes.gateway()
        processes.worker()
        found_now, found_later, tombstone, result_deleted = asyncio.run(_erasure(base, redis.url))
    passed = not found_later and tombstone and result_deleted
    return Goal(
        "erasure", "Issue 13: what Redis holds of a session after it is erased",
        "no key or stream entry contains the session id; only the tombstone's pseudonym", "n/a (absolute target)",
        f"{len(found_later)} places after {RETENTION_WAIT_S:.0f} s ({len(found_now)} right after: the "
        "session_erased notice)", "n/a", passed,
        [
            "a 5 s clip analyzed end to end (one gateway, one worker, analysis skipped: no model), result stored, then "
            "DELETE /sessions/{sid}; every key of the Redis scanned (names, and values of strings, hashes, sets, "
            "sorted sets, lists and every stream entry) for the 32-character id",
            f"right after the erasure: {', '.join(found_now) or 'nothing'}",
            f"after the live-event retention (default 30 s) and a housekeeping round: {', '.join(found_later) or 'nothing'}",
            f"tombstone holds the keyed pseudonym (HMAC of the id with a key derived from the master secret): "
            f"{tombstone}; result deleted from the sink: {result_deleted}",
        ],
    )


async def _erasure(base: str, redis_url: str) -> tuple[list[str], list[str], bool, bool]:
    r = aioredis.Redis.from_url(redis_url)
    try:
        outcome = await analyze_bytes(base, clips.small_clip(0), timeout_s=120)
        if outcome.result is None:
            raise RuntimeError(f"the session did not complete: {outcome.error}")
        sid = outcome.session_id
        async with httpx.AsyncClient(timeout=30) as http:
            receipt = (await http.delete(f"{base}/sessions/{sid}",
                                         headers={"Authorization": f"Bearer {outcome.token}"})).json()
        found_now = await traces(r, sid)
        await asyncio.sleep(RETENTION_WAIT_S)
        found_later = await traces(r, sid)
        tombstone = await r.zscore(keys.ERASED, pseudonym(stream_config(), sid)) is not None
        return found_now, found_later, tombstone, bool(receipt.get("result_deleted"))
    finally:
        await r.aclose()


def restart() -> Goal:
    failures: list[int] = []
    with deployment(DODOLENS_CLIENT_MAX_SESSIONS=0) as (redis, processes):
        base = processes.gateway()
        failures = asyncio.run(_restart(base, redis))
    total = sum(failures)
    return Goal(
        "restart", "Issue 13: requests after a Redis restart, once /readyz says ready",
        "0 requests fail", "n/a (absolute target)",
        f"{total} of {RESTARTS * RESTART_REQUESTS * 2} failed", f"{total} vs 0", total == 0,
        [f"{RESTARTS} restarts of the gateway's redis-server (stopped, started on the same port, memory lost); after "
         f"each, /readyz polled every 50 ms until 200, then {RESTART_REQUESTS} POST /sessions and "
         f"{RESTART_REQUESTS} GET /sessions/{{sid}} at once on connections pooled before the restart",
         f"failed per restart: {', '.join(map(str, failures))}"],
    )


async def _restart(base: str, redis: EmbeddedRedis) -> list[int]:
    failures: list[int] = []
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=RESTART_REQUESTS * 2)) as http:
        for _ in range(RESTARTS):
            await asyncio.gather(*(http.post(f"{base}/sessions", json={"size": 10}) for _ in range(RESTART_REQUESTS)))
            await in_thread(redis.stop)
            await in_thread(redis.start)
            while (await http.get(f"{base}/readyz")).status_code != 200:
                await asyncio.sleep(0.05)
            created = await asyncio.gather(*(http.post(f"{base}/sessions", json={"size": 10})
                                             for _ in range(RESTART_REQUESTS)))
            sids = [(c.json()["session_id"], c.json()["token"]) for c in created if c.status_code == 201]
            looked = await asyncio.gather(*(http.get(f"{base}/sessions/{sid}", headers={"Authorization": f"Bearer {t}"})
                                            for sid, t in sids))
            failures.append(sum(c.status_code != 201 for c in created) + sum(g.status_code != 200 for g in looked))
    return failures
