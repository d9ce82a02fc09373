"""What the gateway needs, built by the composition root from the settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from streams.config import StreamConfig


class ResultStore(Protocol):
    """Where finished results are read and erased (the processors' result sink)."""

    async def get(self, session_id: str) -> bytes | None: ...

    async def delete(self, session_id: str) -> bool: ...


@dataclass(frozen=True)
class GatewayConfig:
    stream: StreamConfig = field(default_factory=StreamConfig)
    token_ttl_s: int = 3600
    max_sessions: int = 10
    client_max_sessions: int = 3
    """Live sessions one client address may hold (0: no quota); requests with an API key are exempt."""
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    """When set, creating a session needs one of them in ``X-API-Key``."""
    trusted_proxies: tuple[str, ...] = ()
    """Addresses or networks whose ``X-Forwarded-For`` names the client (uvicorn's proxy headers)."""
    reap_interval_s: float = 5.0
    max_json_bytes: int = 16 * 1024
    admin_token: str | None = None
    ws_ping_interval_s: float = 20.0
    session_check_interval_s: float = 5.0
    max_header_bytes: int = 16 * 1024
    header_timeout_s: float = 10.0
    body_idle_timeout_s: float = 30.0
    min_body_rate: int = 1024
    max_connections: int = 4096
