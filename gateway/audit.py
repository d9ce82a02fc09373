"""Request audit: one record per HTTP request — route, status, duration — and nothing about the person.

Refused requests (4xx) are counted instead, per route and status, and written as one ``requests_refused``
record a minute per gateway: anyone can send thousands of 404s, and each would otherwise be kept 90 days.
"""

from __future__ import annotations

import time
from collections import Counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from streams.audit import audit
from streams.config import StreamConfig
from streams.connection import Redis

REFUSED_FLUSH_S = 60.0
MAX_REFUSED_ROUTES = 50
"""Distinct (method, route, status) rows per record; route templates are few, so this only bounds the odd."""


class RefusedRequests:
    """Counts of refused requests since the last record, per (method, route, status)."""

    def __init__(self, flush_s: float = REFUSED_FLUSH_S) -> None:
        self.counts: Counter[tuple[str, str, int]] = Counter()
        self.flush_s = flush_s
        self.since = time.monotonic()

    def add(self, method: str, route: str, status: int) -> bool:
        """Count one; True when a record is due."""
        self.counts[(method, route, status)] += 1
        return time.monotonic() - self.since >= self.flush_s

    async def flush(self, r: Redis, cfg: StreamConfig) -> None:
        if not self.counts:
            return
        rows = [{"method": m, "route": route, "status": s, "count": n}
                for (m, route, s), n in self.counts.most_common(MAX_REFUSED_ROUTES)]
        total, seconds = sum(self.counts.values()), round(time.monotonic() - self.since, 1)
        self.counts.clear()
        self.since = time.monotonic()
        await audit(r, cfg, "requests_refused", total=total, seconds=seconds, routes=rows)


class RequestAudit:
    """Pure ASGI middleware, so it sees every response, streaming or not, without buffering bodies.

    The client address is never read; a session id in the path is recorded only as a pseudonym.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            state = scope["app"].state
            route = getattr(scope.get("route"), "path", "unmatched")
            if 400 <= status < 500:
                if state.refused.add(scope["method"], route, status):
                    await state.refused.flush(state.redis, state.config.stream)
            else:
                sid = scope.get("path_params", {}).get("sid")
                await audit(state.redis, state.config.stream, "request",
                            sid if isinstance(sid, str) and len(sid) == 32 else None,
                            method=scope["method"], route=route, status=status,
                            ms=round((time.perf_counter() - started) * 1000, 1))
