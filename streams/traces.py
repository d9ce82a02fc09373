"""Where a session id still appears in Redis: key names, and values of every key type.

A check, not a hot path: it reads the whole keyspace. Erasure tests and the erasure benchmark use it
to show that nothing but the tombstone's pseudonym is left.
"""

from __future__ import annotations

from streams.connection import Redis


async def traces(r: Redis, needle: str) -> list[str]:
    """Every place ``needle`` occurs: ``key`` for a key name, ``key[field or entry id]`` for a value."""
    found: list[str] = []
    raw = needle.encode()
    async for key in r.scan_iter(count=1000):
        name = key.decode()
        if raw in key:
            found.append(name)
        kind = (await r.type(key)).decode()
        if kind == "string":
            values = {"": await r.get(key) or b""}
        elif kind == "hash":
            values = {f.decode(errors="replace"): f + v for f, v in (await r.hgetall(key)).items()}
        elif kind == "zset":
            values = {m.decode(errors="replace"): m for m in await r.zrange(key, 0, -1)}
        elif kind == "set":
            values = {m.decode(errors="replace"): m for m in await r.smembers(key)}
        elif kind == "list":
            values = {str(i): v for i, v in enumerate(await r.lrange(key, 0, -1))}
        elif kind == "stream":
            values = {e.decode(): b"".join(k + v for k, v in fields.items()) for e, fields in await r.xrange(key)}
        else:
            values = {}
        found += [f"{name}[{where}]" for where, value in values.items() if raw in value]
    return found
