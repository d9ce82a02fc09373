"""What the workers need, built by the composition root from the settings."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass, field

from processors.analyzer import AnalyzerConfig
from processors.delivery import DeliveryConfig
from processors.video import DecodeLimits
from streams.config import StreamConfig


def default_consumer() -> str:
    """Unique per worker, even for two workers in one process: a consumer name owns pending entries."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class WorkerConfig:
    stream: StreamConfig = field(default_factory=StreamConfig)
    analyzer: AnalyzerConfig = field(default_factory=lambda: AnalyzerConfig(base_url=None, api_key=None))
    limits: DecodeLimits = field(default_factory=DecodeLimits)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    consumer: str = field(default_factory=default_consumer)
    decode_concurrency: int = 2
    follow_concurrency: int = 8
    follow_idle_s: float = 60.0
    analyze_concurrency: int = 4
    claim_idle_ms: int = 30_000
    max_deliveries: int = 3
    processing_timeout_s: float = 300.0
    block_ms: int = 1000
    sweep_interval_s: float = 60.0
