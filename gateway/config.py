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
    max_json_bytes: int = 16 * 1024
    retry_after_s: int = 5
    admin_token: str | None = None
    ws_ping_interval_s: float = 20.0
    session_check_interval_s: float = 5.0
    cors_origins: tuple[str, ...] = ()
    """Web origins whose pages may call the API (a browser tus client such as Uppy on another site)."""
