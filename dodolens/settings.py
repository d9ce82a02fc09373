"""Settings, read once from the environment (``DODOLENS_*`` plus the ecosystem's own names)."""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from gateway.config import GatewayConfig
from processors.analyzer import AnalyzerConfig
from processors.config import WorkerConfig
from processors.delivery import DeliveryConfig
from processors.usage import parse_prices
from processors.video import DecodeLimits
from streams.config import MiB, StreamConfig
from streams.crypto import Keyring


class SettingsError(ValueError):
    """A setting that cannot be used as given."""


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _secret(env: Mapping[str, str]) -> bytes | None:
    """The master secret from ``DODOLENS_MASTER_SECRET`` (hex or base64) or ``..._FILE``."""
    raw = env.get("DODOLENS_MASTER_SECRET", "")
    path = env.get("DODOLENS_MASTER_SECRET_FILE", "")
    if not raw and path:
        raw = Path(path).read_text().strip()
    if not raw:
        return None
    try:
        secret = bytes.fromhex(raw)
    except ValueError:
        secret = base64.b64decode(raw + "=" * (-len(raw) % 4))
    if len(secret) < 32:
        raise SettingsError("DODOLENS_MASTER_SECRET must hold at least 32 bytes (64 hex characters)")
    return secret


@dataclass(frozen=True)
class Settings:
    redis_url: str | None = None
    redis_cluster: bool = False
    allow_persistent_redis: bool = False
    master_secret: bytes | None = field(default=None, repr=False)
    chunk_size: int = MiB
    max_size: int = 512 * MiB
    chunk_ttl_s: int = 300
    session_ttl_s: int = 600
    max_sessions: int = 10
    token_ttl_s: int = 3600
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str | None = None
    vision_model: str = "gpt-5.4-mini"
    transcription_model: str = "gpt-transcribe"
    transcription_language: str | None = None
    transcript_piece_s: float = 90.0
    openai_timeout_s: float = 180.0
    openai_max_retries: int = 3
    image_detail: str = "low"
    max_output_tokens: int = 16_384
    reasoning_effort: str = "low"
    batch_frames: int = 12
    batch_concurrency: int = 4
    batch_retries: int = 1
    prices: str = ""
    airtable_api_key: str | None = field(default=None, repr=False)
    airtable_base_id: str | None = None
    airtable_table: str = "results"
    airtable_endpoint: str | None = None
    airtable_lock_s: float = 30.0
    result_hold_s: int = 86_400
    results_db: str = "dodolens-results.sqlite3"
    max_frames: int = 150
    max_deliveries: int = 3
    processing_timeout_s: float = 300.0
    decode_concurrency: int = 2
    decode_threads: int = 2
    follow_concurrency: int = 8
    follow_idle_s: float = 60.0
    claim_idle_ms: int = 30_000
    sweep_interval_s: float = 60.0
    analytics_days: int = 30
    audit_days: int = 90
    ws_ping_interval_s: float = 20.0
    session_check_interval_s: float = 5.0
    admin_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        d = cls()

        def get(name: str, default: object) -> str:
            return env.get(f"DODOLENS_{name}", str(default))

        return cls(
            redis_url=env.get("REDIS_URL") or None,
            redis_cluster=_bool(get("REDIS_CLUSTER", "0")),
            allow_persistent_redis=_bool(get("ALLOW_PERSISTENT_REDIS", "0")),
            master_secret=_secret(env),
            chunk_size=int(get("CHUNK_SIZE", d.chunk_size)),
            max_size=int(get("MAX_SIZE", d.max_size)),
            chunk_ttl_s=int(get("CHUNK_TTL", d.chunk_ttl_s)),
            session_ttl_s=int(get("SESSION_TTL", d.session_ttl_s)),
            max_sessions=int(get("MAX_SESSIONS", d.max_sessions)),
            token_ttl_s=int(get("TOKEN_TTL", d.token_ttl_s)),
            openai_api_key=env.get("OPENAI_API_KEY") or None,
            openai_base_url=env.get("OPENAI_BASE_URL") or None,
            vision_model=get("VISION_MODEL", d.vision_model),
            transcription_model=get("TRANSCRIPTION_MODEL", d.transcription_model),
            transcription_language=env.get("DODOLENS_TRANSCRIPTION_LANGUAGE") or None,
            transcript_piece_s=float(get("TRANSCRIPT_PIECE", d.transcript_piece_s)),
            openai_timeout_s=float(get("OPENAI_TIMEOUT", d.openai_timeout_s)),
            openai_max_retries=int(get("OPENAI_MAX_RETRIES", d.openai_max_retries)),
            image_detail=get("IMAGE_DETAIL", d.image_detail),
            max_output_tokens=int(get("MAX_OUTPUT_TOKENS", d.max_output_tokens)),
            reasoning_effort=get("REASONING_EFFORT", d.reasoning_effort),
            batch_frames=int(get("BATCH_FRAMES", d.batch_frames)),
            batch_concurrency=int(get("BATCH_CONCURRENCY", d.batch_concurrency)),
            batch_retries=int(get("BATCH_RETRIES", d.batch_retries)),
            prices=get("PRICES", d.prices),
            airtable_api_key=env.get("AIRTABLE_API_KEY") or None,
            airtable_base_id=env.get("DODOLENS_AIRTABLE_BASE_ID") or None,
            airtable_table=get("AIRTABLE_TABLE", d.airtable_table),
            airtable_endpoint=env.get("DODOLENS_AIRTABLE_ENDPOINT") or None,
            airtable_lock_s=float(get("AIRTABLE_LOCK", d.airtable_lock_s)),
            result_hold_s=int(get("RESULT_HOLD", d.result_hold_s)),
            results_db=get("RESULTS_DB", d.results_db),
            max_frames=int(get("MAX_FRAMES", d.max_frames)),
            max_deliveries=int(get("MAX_DELIVERIES", d.max_deliveries)),
            processing_timeout_s=float(get("PROCESSING_TIMEOUT", d.processing_timeout_s)),
            decode_concurrency=int(get("DECODE_CONCURRENCY", d.decode_concurrency)),
            decode_threads=int(get("DECODE_THREADS", d.decode_threads)),
            follow_concurrency=int(get("FOLLOW_CONCURRENCY", d.follow_concurrency)),
            follow_idle_s=float(get("FOLLOW_IDLE", d.follow_idle_s)),
            claim_idle_ms=int(get("CLAIM_IDLE_MS", d.claim_idle_ms)),
            sweep_interval_s=float(get("SWEEP_INTERVAL", d.sweep_interval_s)),
            analytics_days=int(get("ANALYTICS_DAYS", d.analytics_days)),
            audit_days=int(get("AUDIT_DAYS", d.audit_days)),
            admin_token=env.get("DODOLENS_ADMIN_TOKEN") or None,
        )

    def with_overrides(self, **changes: object) -> "Settings":
        return replace(self, **changes)

    def keyring(self) -> Keyring:
        """The configured secret, or a random in-memory one (embedded mode: one process tree)."""
        return Keyring(self.master_secret) if self.master_secret else Keyring.generate()

    def stream_config(self, keyring: Keyring) -> StreamConfig:
        return StreamConfig(
            keyring=keyring,
            chunk_size=self.chunk_size,
            max_size=self.max_size,
            chunk_ttl_s=self.chunk_ttl_s,
            session_ttl_s=self.session_ttl_s,
            analytics_days=self.analytics_days,
            audit_days=self.audit_days,
        )

    def gateway_config(self, stream: StreamConfig) -> GatewayConfig:
        return GatewayConfig(stream=stream, token_ttl_s=self.token_ttl_s, max_sessions=self.max_sessions,
                             admin_token=self.admin_token, ws_ping_interval_s=self.ws_ping_interval_s,
                             session_check_interval_s=self.session_check_interval_s)

    def worker_config(self, stream: StreamConfig) -> WorkerConfig:
        return WorkerConfig(
            stream=stream,
            analyzer=AnalyzerConfig(
                base_url=self.openai_base_url,
                api_key=self.openai_api_key,
                vision_model=self.vision_model,
                transcription_model=self.transcription_model,
                transcription_language=self.transcription_language,
                transcript_piece_s=self.transcript_piece_s,
                timeout_s=self.openai_timeout_s,
                max_retries=self.openai_max_retries,
                image_detail=self.image_detail,
                max_output_tokens=self.max_output_tokens,
                reasoning_effort=self.reasoning_effort or None,
                batch_frames=self.batch_frames,
                batch_concurrency=self.batch_concurrency,
                batch_retries=self.batch_retries,
                prices=parse_prices(self.prices),
            ),
            limits=DecodeLimits(max_frames=self.max_frames, threads=self.decode_threads),
            delivery=DeliveryConfig(hold_s=self.result_hold_s),
            decode_concurrency=self.decode_concurrency,
            follow_concurrency=self.follow_concurrency,
            follow_idle_s=self.follow_idle_s,
            max_deliveries=self.max_deliveries,
            processing_timeout_s=self.processing_timeout_s,
            claim_idle_ms=self.claim_idle_ms,
            sweep_interval_s=self.sweep_interval_s,
        )
