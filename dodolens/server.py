"""uvicorn, as every DodoLens server runs it: with limits on what one client can hold.

uvicorn offers a cap on concurrent connections (``limit_concurrency``: 503 beyond it), a keep-alive
timeout and proxy-header handling for trusted proxies; ``h11_max_incomplete_event_size`` bounds
headers only for the h11 parser, not for httptools (the faster one uvicorn picks when installed),
and no parser bounds how long the head, a pause in the body or a trickle of it may take.
:class:`LimitedHttpTools` adds those to uvicorn's httptools protocol, where the bytes arrive.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import Any

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int = 16 * 1024
    """Request line plus headers; beyond it: 431 and the connection closed."""
    header_timeout_s: float = 10.0
    """From a connection's (or request's) first byte to the end of its headers; beyond it: 408, closed."""
    body_idle_timeout_s: float = 30.0
    """Longest pause between two parts of a request body (while the app wants more); beyond it: closed."""
    min_body_rate: int = 1024
    """Bytes a second a body must average over each ``body_idle_timeout_s`` window: a byte every two
    seconds is no pause, and would otherwise hold a connection for ever."""
    max_connections: int = 4096
    """Connections (and requests in progress) at once; beyond it uvicorn answers 503."""
    keep_alive_s: float = 5.0


def _error(status: int, reason: str, code: str, message: str) -> bytes:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n").encode() + body


LINGER_S = 1.0
HEADERS_TOO_LARGE = "the request headers are too large"
HEADERS_TOO_SLOW = "the request headers took too long to arrive"


class LimitedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header size cap, a header deadline and a body idle timeout."""

    def __init__(self, *args: Any, limits: HttpLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.head_bytes = 0
        self.in_head = True
        self.head_timer: asyncio.TimerHandle | None = None
        self.body_timer: asyncio.TimerHandle | None = None
        self.refused = False
        self.body_seen = self.window_start = 0.0
        """When body bytes last arrived, and when the current rate window began: the one body timer
        checks them when it fires, rather than being re-armed for every packet of a 1 MiB chunk."""
        self.window_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if self.in_head:
            self._arm_head()
            self.head_bytes += len(data)
        elif self.body_timer is not None:
            self.body_seen = self.loop.time()
            self.window_bytes += len(data)
        super().data_received(data)
        if self.in_head and self.head_bytes > self.limits.max_header_bytes and not self.transport.is_closing():
            self._refuse(_error(431, "Request Header Fields Too Large", "headers_too_large", HEADERS_TOO_LARGE))

    def on_headers_complete(self) -> None:
        self.in_head = False
        self._cancel_head()
        super().on_headers_complete()
        if self.parser is not None and not self.parser.should_upgrade():
            self._arm_body()

    def on_message_complete(self) -> None:
        self._cancel_body()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self.in_head, self.head_bytes = True, 0
        self._cancel_body()
        super().on_response_complete()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        super().handle_websocket_upgrade()

    def _arm_head(self) -> None:
        if self.head_timer is None:
            self.head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_too_slow)

    def _cancel_head(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _arm_body(self) -> None:
        """Count the body's quiet time and its rate window from now."""
        self._cancel_body()
        self.body_seen = self.window_start = self.loop.time()
        self.window_bytes = 0
        self._body_check(self.limits.body_idle_timeout_s)

    def _body_check(self, delay_s: float) -> None:
        self.body_timer = self.loop.call_later(delay_s, self._body_too_slow)

    def _cancel_body(self) -> None:
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None

    def _disarm(self) -> None:
        self._cancel_head()
        self._cancel_body()

    def _head_too_slow(self) -> None:
        self.head_timer = None
        if not self.in_head or self.transport.is_closing():
            return
        if self.head_bytes == 0:
            self.transport.close()
            return
        self._refuse(_error(408, "Request Timeout", "headers_too_slow", HEADERS_TOO_SLOW))

    def _body_too_slow(self) -> None:
        """The app waits for body bytes that do not come, or come too slowly: close, so it sees a disconnect.
        While uvicorn itself paused reading (the app is busy), nothing counts against the client."""
        self.body_timer = None
        if self.transport.is_closing():
            return
        if self.flow is not None and self.flow.read_paused:
            self._arm_body()
            return
        now, limit = self.loop.time(), self.limits.body_idle_timeout_s
        if now - self.body_seen >= limit:
            self.transport.close()
            return
        if now - self.window_start >= limit:
            if self.window_bytes < self.limits.min_body_rate * (now - self.window_start):
                self.transport.close()
                return
            self.window_start, self.window_bytes = now, 0
        self._body_check(min(limit - (now - self.body_seen), limit - (now - self.window_start)))

    def _refuse(self, response: bytes) -> None:
        """Answer, then keep reading (and dropping) for a moment before closing: closing with unread bytes
        makes the kernel send a reset, which can destroy the answer before the client reads it."""
        self._disarm()
        self.refused = True
        self.transport.write(response)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)


def server_config(app: Any, *, host: str, port: int, limits: HttpLimits, trusted_proxies: tuple[str, ...] = (),
                  **options: Any) -> uvicorn.Config:
    """The uvicorn config of a DodoLens server: httptools with :class:`LimitedHttpTools`, uvicorn's own
    connection cap and keep-alive timeout, and ``X-Forwarded-For`` believed only from ``trusted_proxies``."""
    return uvicorn.Config(
        app, host=host, port=port, http=functools.partial(LimitedHttpTools, limits=limits),  # type: ignore[arg-type]
        limit_concurrency=limits.max_connections, timeout_keep_alive=int(limits.keep_alive_s),
        proxy_headers=bool(trusted_proxies), forwarded_allow_ips=list(trusted_proxies) or None, **options,
    )
