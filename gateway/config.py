"""What the gateway needs, built by the composition root from the settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from streams.config import StreamConfig, comma_list, setting


class ResultStore(Protocol):
    """Where finished results are read and erased (the processors' result sink)."""

    async def get(self, session_id: str) -> bytes | None: ...

    async def delete(self, session_id: str) -> bool: ...


@dataclass(frozen=True)
class GatewayConfig:
    stream: StreamConfig = field(default_factory=StreamConfig)
    token_ttl_s: int = setting("DODOLENS_TOKEN_TTL", 3600, "seconds an upload token is valid")
    max_sessions: int = setting("DODOLENS_MAX_SESSIONS", 10, "active sessions before `POST /sessions` answers 429")
    max_json_bytes: int = 16 * 1024
    retry_after_s: int = 5
    admin_token: str | None = setting("DODOLENS_ADMIN_TOKEN", None, "dashboard access", shown="unset → `/admin` closed",
                                      secret=True)
    ws_ping_interval_s: float = setting("DODOLENS_WS_PING_INTERVAL", 20.0,
                                        "seconds between WebSocket pings (and the wait for a pong)")
    session_check_interval_s: float = setting("DODOLENS_SESSION_CHECK_INTERVAL", 5.0,
                                              "seconds between checks that a watched session still exists")
    cors_origins: tuple[str, ...] = setting("DODOLENS_CORS_ORIGINS", (), "comma-separated web origins "
                                            "(`https://app.example.com`) whose pages may call the API, e.g. Uppy or "
                                            "tus-js-client in a browser", shown="unset → same origin only", parse=comma_list)
