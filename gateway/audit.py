"""Request audit: one record per HTTP request — route, status, duration — and nothing about the person."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from streams.audit import audit


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
            route = scope.get("route")
            sid = scope.get("path_params", {}).get("sid")
            await audit(state.redis, state.config.stream, "request", sid if isinstance(sid, str) and len(sid) == 32 else None,
                        method=scope["method"], route=getattr(route, "path", "unmatched"), status=status,
                        ms=round((time.perf_counter() - started) * 1000, 1))
