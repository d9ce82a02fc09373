"""What the workers need, built by the composition root from the settings."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass, field

from processors.analyzer import AnalyzerConfig
from processors.delivery import DeliveryConfig
from processors.video import DecodeLimits
from streams.config import StreamConfig, part, setting


def default_consumer() -> str:
    """Unique per worker, even for two workers in one process: a consumer name owns pending entries."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class WorkerConfig:
    stream: StreamConfig = field(default_factory=StreamConfig)
    analyzer: AnalyzerConfig = part(AnalyzerConfig)
    limits: DecodeLimits = part(DecodeLimits)
    delivery: DeliveryConfig = part(DeliveryConfig)
    consumer: str = field(default_factory=default_consumer)
    decode_concurrency: int = setting("DODOLENS_DECODE_CONCURRENCY", 2,
                                      "decodes of completed uploads at once, per worker")
    follow_concurrency: int = setting("DODOLENS_FOLLOW_CONCURRENCY", 8,
                                      "uploads decoded while they arrive, per worker (0: off)")
    follow_idle_s: float = setting("DODOLENS_FOLLOW_IDLE", 60.0,
                                   "seconds without a chunk before a decode of an arriving upload gives it back")
    analyze_concurrency: int = 4
    claim_idle_ms: int = setting("DODOLENS_CLAIM_IDLE_MS", 30_000,
                                 "milliseconds a job stays pending before another worker claims it")
    max_deliveries: int = setting("DODOLENS_MAX_DELIVERIES", 3, "attempts before a job goes to `dodo:dead`")
    processing_timeout_s: float = setting("DODOLENS_PROCESSING_TIMEOUT", 300.0,
                                          "seconds per session, decode + analysis")
    block_ms: int = 1000
    sweep_interval_s: float = setting("DODOLENS_SWEEP_INTERVAL", 60.0, "seconds between cleanup sweeps")
