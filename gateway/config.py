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
    client_max_sessions: int = setting("DODOLENS_CLIENT_MAX_SESSIONS", 3, "active sessions one client address may "
                                       "hold (0: no quota); requests with an API key are exempt")
    api_keys: tuple[str, ...] = setting("DODOLENS_API_KEYS", (), "comma-separated keys; when set, creating a session "
                                        "needs one in `X-API-Key`", shown="unset → anyone may create",
                                        parse=comma_list, secret=True)
    trusted_proxies: tuple[str, ...] = setting("DODOLENS_TRUSTED_PROXIES", (), "comma-separated addresses or networks "
                                               "whose `X-Forwarded-For` names the client (uvicorn's proxy headers)",
                                               shown="unset → the peer address", parse=comma_list)
    reap_interval_s: float = setting("DODOLENS_REAP_INTERVAL", 5.0, "seconds between each gateway's rounds of reaping "
                                     "idle uploads and trimming `dodo:events`")
    max_json_bytes: int = 16 * 1024
    admin_token: str | None = setting("DODOLENS_ADMIN_TOKEN", None, "dashboard access",
                                      shown="unset → `/admin` closed", secret=True)
    ws_ping_interval_s: float = setting("DODOLENS_WS_PING_INTERVAL", 20.0,
                                        "seconds between WebSocket pings (and the wait for a pong)")
    session_check_interval_s: float = setting("DODOLENS_SESSION_CHECK_INTERVAL", 5.0,
                                              "seconds between checks that a watched session still exists")
    cors_origins: tuple[str, ...] = setting("DODOLENS_CORS_ORIGINS", (), "comma-separated web origins "
                                            "(`https://app.example.com`) whose pages may call the API, e.g. Uppy or "
                                            "tus-js-client in a browser", shown="unset → same origin only",
                                            parse=comma_list)
    max_header_bytes: int = setting("DODOLENS_MAX_HEADER_BYTES", 16 * 1024, "request head size (431 beyond)")
    header_timeout_s: float = setting("DODOLENS_HEADER_TIMEOUT", 10.0, "seconds to send the request head (408 beyond)")
    body_idle_timeout_s: float = setting("DODOLENS_BODY_IDLE_TIMEOUT", 30.0, "longest pause in a request body, "
                                         "seconds, else the connection is closed")
    min_body_rate: int = setting("DODOLENS_MIN_BODY_RATE", 1024, "bytes a second a request body must average over "
                                 "each `DODOLENS_BODY_IDLE_TIMEOUT` window, else the connection is closed")
    max_connections: int = setting("DODOLENS_MAX_CONNECTIONS", 4096, "connections and requests in progress per gateway "
                                   "(503 beyond)")
