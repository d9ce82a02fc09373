"""What the Redis layer needs to know, shared by gateway and processors."""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.crypto import Keyring

MiB = 1024 * 1024


@dataclass(frozen=True)
class StreamConfig:
    keyring: Keyring = field(default_factory=Keyring.generate, repr=False)
    chunk_size: int = MiB
    max_size: int = 512 * MiB
    chunk_ttl_s: int = 300
    session_ttl_s: int = 600
    upload_idle_s: float = 30.0
    """A session that receives no chunk for this long (after creation or its last chunk) is reaped."""
    session_events_maxlen: int = 200
    global_maxlen: int = 10_000
    events_retention_s: int = 30
    """How long ``dodo:events`` (live fan-out only; the session streams keep history) keeps an entry."""
    analytics_days: int = 30
    audit_days: int = 90

    @property
    def max_chunks(self) -> int:
        return -(-self.max_size // self.chunk_size)
