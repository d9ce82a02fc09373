"""Settings, read once from the environment: the composition of every package's own config.

Each setting is declared once, on the config dataclass that uses it (``streams.config.setting``);
this module only puts the configs together. ``python -m dodolens.settings --markdown`` prints the
README's table of them.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from gateway.config import GatewayConfig
from processors.config import WorkerConfig, default_consumer
from processors.sinks import SinkConfig
from streams.config import Declared, SettingsError, StreamConfig, declared, from_env, overridden, part, setting
from streams.crypto import Keyring


def parse_secret(raw: str) -> bytes:
    """A master secret written as hex or base64, at least 32 bytes."""
    try:
        secret = bytes.fromhex(raw)
    except ValueError:
        try:
            secret = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
        except ValueError:
            raise SettingsError("DODOLENS_MASTER_SECRET is neither hex nor base64") from None
    if len(secret) < 32:
        raise SettingsError("DODOLENS_MASTER_SECRET must hold at least 32 bytes (64 hex characters)")
    return secret


@dataclass(frozen=True)
class Settings:
    redis_url: str | None = setting("REDIS_URL", None, "Redis to use", shown="unset → private `redis-server`")
    redis_cluster: bool = setting("DODOLENS_REDIS_CLUSTER", False, "`1`: the Redis at `REDIS_URL` is a cluster")
    allow_persistent_redis: bool = setting("DODOLENS_ALLOW_PERSISTENT_REDIS", False,
                                           "`1`: accept a Redis with RDB/AOF on (refused otherwise)")
    master_secret: bytes | None = setting("DODOLENS_MASTER_SECRET", None,
                                          "≥ 32 bytes (hex or base64): seals media, signs tokens",
                                          shown="random in memory", parse=parse_secret, secret=True)
    master_secret_file: str | None = setting("DODOLENS_MASTER_SECRET_FILE", None,
                                             "file holding the master secret, when the variable is unset")
    stream: StreamConfig = part(StreamConfig)
    gateway: GatewayConfig = part(GatewayConfig)
    worker: WorkerConfig = part(WorkerConfig)
    sink: SinkConfig = part(SinkConfig)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        settings = from_env(cls, os.environ if env is None else env)
        path = settings.master_secret_file
        if settings.master_secret is None and path:
            try:
                raw = Path(path).read_text().strip()
            except OSError as exc:
                raise SettingsError(f"cannot read DODOLENS_MASTER_SECRET_FILE {path}: {exc.strerror}") from None
            settings = replace(settings, master_secret=parse_secret(raw))
        return settings

    def with_overrides(self, **changes: object) -> "Settings":
        """These settings with some replaced by name (``chunk_size=...``), wherever they are declared."""
        return overridden(self, changes)

    def keyring(self) -> Keyring:
        """The configured secret, or a random in-memory one (embedded mode: one process tree)."""
        return Keyring(self.master_secret) if self.master_secret else Keyring.generate()

    def stream_config(self, keyring: Keyring) -> StreamConfig:
        return replace(self.stream, keyring=keyring)

    def gateway_config(self, stream: StreamConfig) -> GatewayConfig:
        return replace(self.gateway, stream=stream)

    def worker_config(self, stream: StreamConfig) -> WorkerConfig:
        """A consumer name of its own for each worker: two workers of one process must not share one."""
        return replace(self.worker, stream=stream, consumer=default_consumer())


def _shown(d: Declared) -> str:
    if d.shown is not None:
        return d.shown
    if d.default is None:
        return "unset"
    if isinstance(d.default, bool):
        return f"`{int(d.default)}`"
    if isinstance(d.default, str):
        return f"`{d.default}`"
    if isinstance(d.default, float) and d.default.is_integer():
        return str(int(d.default))
    return str(d.default)


def markdown_table() -> str:
    """The README's settings table, one row per declared setting."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{d.env}` | {_shown(d)} | {d.meaning} |" for d in declared(Settings)]
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dodolens.settings", description=__doc__)
    p.add_argument("--markdown", action="store_true", help="print the README's table of settings")
    args = p.parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown_table())
    else:
        for d in declared(Settings):
            sys.stdout.write(f"{d.env}\t{'.'.join(d.path)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
