"""What the Redis layer needs to know, and how every package declares its settings.

A setting is a field of the config dataclass that uses it, declared once with ``setting``: its
environment variable, its default and what it means. ``from_env`` fills a config from the variables
that are set; ``dodolens.settings`` composes the configs and prints the README's table from them.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from streams.crypto import Keyring

MiB = 1024 * 1024

ENV = "env"
PART = "part"
UNSET: Any = object()
"""``blank`` of a setting whose empty value means the same as leaving it unset."""

C = TypeVar("C")


@dataclass(frozen=True)
class Declared:
    """One setting as its config declares it; ``path`` is where it lives in the composed settings."""

    path: tuple[str, ...]
    env: str
    default: object
    meaning: str
    shown: str | None
    parse: Callable[[str], object] | None
    blank: object = UNSET

    @property
    def name(self) -> str:
        return self.path[-1]


def setting(env: str, default: Any, meaning: str, *, shown: str | None = None,
            parse: Callable[[str], object] | None = None, secret: bool = False, blank: Any = UNSET,
            factory: Callable[[], Any] | None = None) -> Any:
    """A config field read from ``env`` when set; ``shown`` replaces the default in the README.

    ``blank`` is the value of the variable set to an empty string, when that means something other
    than unset; ``factory`` makes a default that must not be shared (a table), in place of ``default``.
    """
    declared = {ENV: Declared((), env, default, meaning, shown, parse, blank)}
    if factory is not None:
        return field(default_factory=factory, repr=not secret, metadata=declared)
    return field(default=default, repr=not secret, metadata=declared)


def part(config: Callable[[], C]) -> C:
    """A nested config whose own settings are read too (an injected config is a plain field)."""
    return field(default_factory=config, metadata={PART: True})  # type: ignore[return-value]


class SettingsError(ValueError):
    """A setting that cannot be used as given."""


def parse_bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def comma_list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _parser(hint: object) -> Callable[[str], object]:
    """How an environment string becomes a value of the field's type (``X | None`` parses as ``X``)."""
    options = [arg for arg in typing.get_args(hint) if arg is not type(None)] or [hint]
    kind = options[0]
    if kind is bool:
        return parse_bool
    if kind in (int, float, str):
        return kind  # type: ignore[return-value]
    raise TypeError(f"no parser for a setting of type {hint!r}: give one with parse=")


def _parsed(d: Declared, hint: object, raw: str) -> object:
    """``raw`` as the setting's value; a value that does not parse names its variable."""
    try:
        return (d.parse or _parser(hint))(raw)
    except SettingsError:
        raise
    except ValueError as exc:
        if d.parse is not None:
            raise SettingsError(f"{d.env}: {exc}") from None
        raise SettingsError(f"{d.env}={raw!r} is not a valid {getattr(hint, '__name__', hint)}") from None


def declared(config: type, path: tuple[str, ...] = ()) -> Iterator[Declared]:
    """Every setting of ``config`` and of its parts, in declaration order."""
    for f in dataclasses.fields(config):
        if ENV in f.metadata:
            yield dataclasses.replace(f.metadata[ENV], path=(*path, f.name))
        elif f.metadata.get(PART):
            yield from declared(typing.get_type_hints(config)[f.name], (*path, f.name))


def from_env(config: type[C], env: Mapping[str, str]) -> C:
    """``config`` with each setting whose variable is set (and not empty) read from ``env``."""
    hints = typing.get_type_hints(config)
    values: dict[str, object] = {}
    for f in dataclasses.fields(config):  # type: ignore[arg-type]
        if ENV in f.metadata:
            d: Declared = f.metadata[ENV]
            raw = env.get(d.env, "")
            if raw:
                values[f.name] = _parsed(d, hints[f.name], raw)
            elif d.env in env and d.blank is not UNSET:
                values[f.name] = d.blank
        elif f.metadata.get(PART):
            values[f.name] = from_env(hints[f.name], env)
    try:
        return config(**values)
    except SettingsError:
        raise
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def overridden(config: C, changes: Mapping[str, object]) -> C:
    """``config`` with settings replaced by name, wherever in its parts they are declared."""
    paths = settings_by_name(type(config))
    unknown = set(changes) - set(paths)
    if unknown:
        raise TypeError(f"not a setting: {', '.join(sorted(unknown))}")
    for name, value in changes.items():
        config = _replace_at(config, paths[name], value)
    return config


def settings_by_name(config: type) -> dict[str, tuple[str, ...]]:
    """Each setting's path by its name; two settings of one name would make overrides ambiguous."""
    paths: dict[str, tuple[str, ...]] = {}
    for d in declared(config):
        if d.name in paths:
            raise TypeError(f"setting {d.name!r} is declared twice: {paths[d.name]} and {d.path}")
        paths[d.name] = d.path
    return paths


def _replace_at(config: Any, path: tuple[str, ...], value: object) -> Any:
    head, *rest = path
    inner = _replace_at(getattr(config, head), tuple(rest), value) if rest else value
    return dataclasses.replace(config, **{head: inner})


@dataclass(frozen=True)
class StreamConfig:
    keyring: Keyring = field(default_factory=Keyring.generate, repr=False)
    chunk_size: int = setting("DODOLENS_CHUNK_SIZE", MiB, "upload chunk size in bytes")
    max_size: int = setting("DODOLENS_MAX_SIZE", 512 * MiB, "largest video accepted (413 beyond)")
    chunk_ttl_s: int = setting("DODOLENS_CHUNK_TTL", 300, "seconds a sealed chunk lives in Redis")
    session_ttl_s: int = setting("DODOLENS_SESSION_TTL", 600, "seconds a session lives in Redis")
    upload_idle_s: float = setting("DODOLENS_UPLOAD_IDLE", 30.0, "seconds without a chunk (after creation or the last "
                                   "chunk) before an upload is reaped (`upload_idle`)")
    session_events_maxlen: int = 200
    global_maxlen: int = 10_000
    events_retention_s: int = setting("DODOLENS_EVENTS_RETENTION", 30, "seconds `dodo:events` (live fan-out only; "
                                      "the session streams keep history) keeps an entry")
    analytics_days: int = setting("DODOLENS_ANALYTICS_DAYS", 30, "retention of `dodo:analytics`, days")
    audit_days: int = setting("DODOLENS_AUDIT_DAYS", 90, "retention of `dodo:audit`, days")

    @property
    def max_chunks(self) -> int:
        return -(-self.max_size // self.chunk_size)
