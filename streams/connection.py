"""Connections to Redis: a single server or a Redis Cluster, and the no-persistence check."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union

import redis
import redis.asyncio as aioredis
import redis.cluster
from redis.asyncio.cluster import RedisCluster
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, ResponseError, TimeoutError
from redis.asyncio.retry import Retry as AsyncRetry
from redis.retry import Retry

Redis = Union[aioredis.Redis, RedisCluster]
BlockingRedis = Union[redis.Redis, redis.cluster.RedisCluster]

RETRYABLE = (ConnectionError, TimeoutError, OSError)
"""Errors that mean "Redis is not reachable right now", as opposed to a bad command."""


class PersistentRedisError(RuntimeError):
    """The configured Redis writes to disk and persistence was not explicitly allowed."""


def as_str(value: Any) -> str:
    """A Redis reply as text: our clients answer bytes, a reply read elsewhere may be text already."""
    return value.decode() if isinstance(value, bytes) else str(value)


def str_fields(raw: Mapping[Any, Any]) -> dict[str, str]:
    """A hash as HGETALL answers it (bytes to bytes), as text."""
    return {as_str(k): as_str(v) for k, v in raw.items()}


def connect(url: str, *, cluster: bool = False, timeout_s: float = 5.0) -> Redis:
    """A client with short timeouts so an outage surfaces fast instead of hanging requests.

    It needs ``redis.asyncio.retry.Retry``: the blocking ``Retry`` hands back the coroutine unawaited, so
    with it a dropped connection was never retried at all."""
    options = {**_options(timeout_s), "retry": AsyncRetry(_backoff(), retries=RETRIES)}
    if cluster:
        return RedisCluster.from_url(url, **options)
    return aioredis.Redis.from_url(url, retry_on_error=[ConnectionError, TimeoutError], **options)


def connect_blocking(url: str, *, cluster: bool = False, timeout_s: float = 5.0) -> BlockingRedis:
    """A thread-safe blocking client, for the reads a decode thread makes itself (see ``streams.blocking``)."""
    options = {**_options(timeout_s), "retry": Retry(_backoff(), retries=RETRIES)}
    if cluster:
        return redis.cluster.RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, retry_on_error=[ConnectionError, TimeoutError], **options)


RETRIES = 1
"""A command that meets a dropped connection is sent once more, on a fresh one. After a Redis restart every
pooled connection is dead without knowing it: the command sent on it never reached a server, so sending it
again is safe. (A PING health check before every reuse would cost a round trip on the hot path.)"""
HEALTH_CHECK_S = 15


def _backoff() -> ExponentialBackoff:
    return ExponentialBackoff(cap=0.5, base=0.05)


def _options(timeout_s: float) -> dict:
    return {"socket_timeout": timeout_s, "socket_connect_timeout": min(timeout_s, 2.0),
            "health_check_interval": HEALTH_CHECK_S}


async def persistence_problems(client: Redis) -> list[str]:
    """What makes this Redis write to disk (RDB snapshots, AOF); empty when it is memory-only.

    Managed Redis often forbids CONFIG: that is reported as a problem too, since it cannot be checked.
    A cluster client sends CONFIG GET to one node unless told otherwise, so every node (replicas hold
    copies of the media too) is asked.
    """
    nodes = {"target_nodes": RedisCluster.ALL_NODES} if isinstance(client, RedisCluster) else {}
    try:
        save = await client.config_get("save", **nodes)
        aof = await client.config_get("appendonly", **nodes)
    except ResponseError as exc:
        return [f"cannot check persistence (CONFIG GET refused: {exc})"]
    problems = []
    saves = {v for v in _values(save, "save") if v}
    if saves:
        problems.append(f"RDB snapshots are on (save {' / '.join(sorted(saves))})")
    if "yes" in _values(aof, "appendonly"):
        problems.append("AOF is on (appendonly yes)")
    return problems


async def info_per_node(client: Redis, section: str) -> list[dict]:
    """INFO ``section`` of every primary of a cluster (a cluster client asks one node unless told), or of
    the one server: memory pressure on any node is pressure on the sessions stored there."""
    if isinstance(client, RedisCluster):
        return list((await client.info(section, target_nodes=RedisCluster.PRIMARIES)).values())
    return [await client.info(section)]


def _values(reply: dict, name: str) -> list[str]:
    """CONFIG GET answers per node in cluster mode; flatten to the values."""
    out: list[str] = []
    for key, value in reply.items():
        if isinstance(value, dict):
            out.extend(str(v) for v in value.values())
        elif str(key) == name:
            out.append(str(value))
    return out


async def ensure_ephemeral(client: Redis, *, allow_persistent: bool) -> None:
    problems = await persistence_problems(client)
    if problems and not allow_persistent:
        raise PersistentRedisError(
            "refusing to keep media in a Redis that persists to disk: "
            + "; ".join(problems)
            + ". Run it with --save \"\" --appendonly no, or set DODOLENS_ALLOW_PERSISTENT_REDIS=1."
        )
