"""How the operators' commands find the Redis of a ``dodolens up`` running for the same user.

``up`` writes its Redis URL (and, when it made its master secret up in memory, that secret, which
``erase`` needs for the tombstone and audit pseudonyms) to a file only its user can read, in the
user's runtime directory, and removes it on exit. ``lag``, ``report``, ``replay`` and ``erase``
read it when ``REDIS_URL`` is unset.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import orjson

from dodolens.settings import Settings, SettingsError

DEFAULT_RESULTS_DB = Settings().sink.results_db


class NoRedis(SettingsError):
    """No ``REDIS_URL`` and no ``dodolens up`` of this user to take it from."""


def runtime_file() -> Path:
    """``$XDG_RUNTIME_DIR/dodolens/up.json``, else a directory of the user's own under the temp dir."""
    base = os.environ.get("XDG_RUNTIME_DIR") or str(Path(tempfile.gettempdir()) / f"dodolens-{os.getuid()}")
    return Path(base) / "dodolens" / "up.json"


def announce(redis_url: str, *, cluster: bool, results_db: str, master_secret: bytes | None) -> Path:
    """Write the file for this process (0600 in a 0700 directory); returns where."""
    path = runtime_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    record = {"pid": os.getpid(), "redis_url": redis_url, "redis_cluster": cluster,
              "results_db": str(Path(results_db).resolve())}
    if master_secret is not None:
        record["master_secret"] = master_secret.hex()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        os.fchmod(file.fileno(), 0o600)
        file.write(orjson.dumps(record))
    return path


def withdraw(path: Path) -> None:
    """Remove the file if it is still this process's (a later ``up`` may have replaced it)."""
    try:
        if orjson.loads(path.read_bytes()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def running_up() -> dict[str, object] | None:
    """The record of a ``dodolens up`` that is still running for this user, if any."""
    path = runtime_file()
    try:
        info = path.stat()
        record = orjson.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise SettingsError(f"{path} is not private to this user (owner or mode changed): not using it")
    try:
        os.kill(int(record["pid"]), 0)
    except (OSError, KeyError, ValueError):
        return None
    return record


def with_local_up(settings: Settings, command: str) -> Settings:
    """``settings`` with the Redis of a running ``dodolens up`` when ``REDIS_URL`` is unset, and its
    made-up master secret when ``REDIS_URL`` names that same Redis (the export line ``up`` prints)."""
    if settings.redis_url:
        try:
            record = running_up()
        except SettingsError:
            return settings
        if record is None or record["redis_url"] != settings.redis_url:
            return settings
    else:
        record = running_up()
        if record is None:
            raise NoRedis(f"{command} needs the Redis DodoLens runs on: start `dodolens up` on this machine, "
                          "or export REDIS_URL (and DODOLENS_REDIS_CLUSTER=1 for a cluster)")
    secret = record.get("master_secret")
    return settings.with_overrides(
        redis_url=str(record["redis_url"]),
        redis_cluster=bool(record.get("redis_cluster")),
        master_secret=settings.master_secret or (bytes.fromhex(str(secret)) if secret else None),
        results_db=str(record["results_db"]) if settings.sink.results_db == DEFAULT_RESULTS_DB
        else settings.sink.results_db,
    )
