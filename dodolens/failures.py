"""Exit statuses of ``dodolens`` for what goes wrong around the program, not in it: a setting that cannot
be used, a Redis or file that is not there. Each is one line on stderr and its own status, never a traceback."""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    """Statuses from ``sysexits.h`` where one fits, so they stay clear of each command's own (0, 1, 3, 4...)."""

    USAGE = 2
    """argparse's own: a bad command line."""
    NO_INPUT = 66
    """An input file is missing or unreadable."""
    NO_REDIS = 68
    """No Redis to talk to: ``REDIS_URL`` unset and no ``dodolens up`` running for this user."""
    UNAVAILABLE = 69
    """Redis (or the gateway, for ``upload``) does not answer."""
    OS_ERROR = 71
    """The system refused: a port in use, a directory that cannot be written."""
    NO_SERVER_BINARY = 72
    """``redis-server`` is not installed, for an embedded Redis."""
    CONFIG = 78
    """A setting that cannot be used as given (malformed secret, a number that is not one, persistence on)."""


def failure_of(exc: BaseException) -> tuple[Exit, str] | None:
    """The status and one-line message for an outside problem; None for a bug (let it show)."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisClusterException
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from dodolens.local import NoRedis
    from dodolens.settings import SettingsError
    from streams.connection import PersistentRedisError
    from streams.embedded import EmbeddedRedisError

    if isinstance(exc, NoRedis):
        return Exit.NO_REDIS, str(exc)
    if isinstance(exc, (SettingsError, PersistentRedisError)):
        return Exit.CONFIG, str(exc)
    if isinstance(exc, EmbeddedRedisError):
        return Exit.NO_SERVER_BINARY, str(exc)
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError, RedisClusterException)):
        return Exit.UNAVAILABLE, f"cannot reach Redis: {one_line(exc)}"
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)) and exc.filename:
        return Exit.NO_INPUT, f"cannot read {exc.filename}: {exc.strerror}"
    if isinstance(exc, OSError):
        return Exit.OS_ERROR, exc.strerror if exc.strerror and not exc.filename else one_line(exc)
    return None


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
