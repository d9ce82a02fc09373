"""What a client learns of one analysed upload, from its events: the same over a WebSocket or in-process."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

EventCallback = Callable[[dict[str, Any]], Awaitable[None] | None]


@dataclass
class Outcome:
    session_id: str
    token: str
    events: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    async def take(self, event: dict[str, Any], on_event: EventCallback | None) -> bool:
        """Keep ``event`` (as the API sends it) and pass it on; True when it ends the session's story:
        the result, a final error, or its erasure."""
        self.events.append(event)
        if on_event:
            maybe = on_event(event)
            if asyncio.iscoroutine(maybe):
                await maybe
        if event["type"] == "analysis_complete":
            self.result = event["data"]["result"]
            return True
        if event["type"] == "error" and event["data"].get("final", True):
            self.error = event["data"]
            return True
        return event["type"] == "session_erased"
