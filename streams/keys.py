"""Every Redis key DodoLens uses, in one place.

Per-session keys carry the hash tag ``{sid}`` so that a whole session lives on one
Redis Cluster slot; global streams are single keys.
"""

from __future__ import annotations

PREFIX = "dodo"

JOBS = f"{PREFIX}:jobs"
FOLLOW = f"{PREFIX}:follow"
"""Sessions whose upload has begun: a worker may decode a streamable container while chunks arrive."""
ANALYZE = f"{PREFIX}:analyze"
EVENTS = f"{PREFIX}:events"
ANALYTICS = f"{PREFIX}:analytics"
AUDIT = f"{PREFIX}:audit"
DEAD = f"{PREFIX}:dead"
ACTIVE = f"{PREFIX}:active"
"""Sorted set of live session ids scored by creation time (backpressure and sweeping)."""
ERASED = f"{PREFIX}:erased"
"""Sorted set of erased session ids scored by erasure time, so late workers write nothing."""
ALERTS = f"{PREFIX}:alerts"
SINK_QUEUE = f"{PREFIX}:sink"
"""Sorted set of session ids whose result the sink has yet to confirm (or erase), scored by when to try next."""

DECODERS = "decoders"
FOLLOWERS = "followers"
ANALYZERS = "analyzers"

GROUPS: dict[str, str] = {JOBS: DECODERS, FOLLOW: FOLLOWERS, ANALYZE: ANALYZERS}
"""Work stream -> its consumer group."""

RESERVED = frozenset({JOBS, FOLLOW, ANALYZE, EVENTS, ANALYTICS, AUDIT, DEAD, ACTIVE, ERASED, ALERTS, SINK_QUEUE})
"""Global keys DodoLens reads or writes: never a target for an operator's copy (replay --publish)."""


def _session(sid: str, what: str) -> str:
    return f"{PREFIX}:{{{sid}}}:{what}"


def meta(sid: str) -> str:
    return _session(sid, "meta")


def chunks(sid: str) -> str:
    return _session(sid, "chunks")


def frames(sid: str) -> str:
    return _session(sid, "frames")


def audio(sid: str) -> str:
    return _session(sid, "audio")


def session_events(sid: str) -> str:
    return _session(sid, "events")


def tus(sid: str) -> str:
    """Hash of a tus upload's protocol state (offset, length, metadata)."""
    return _session(sid, "tus")


def tus_tail(sid: str) -> str:
    """Encrypted bytes of a tus upload past its last whole chunk (PATCH bodies end anywhere)."""
    return _session(sid, "tus_tail")


def tus_lock(sid: str) -> str:
    """Short-lived lock held by the gateway writing a tus upload, so PATCHes never interleave."""
    return _session(sid, "tus_lock")


def result(sid: str) -> str:
    """The sealed result, kept from the model's answer until the sink confirms it (never media)."""
    return _session(sid, "result")


def media_keys(sid: str) -> tuple[str, ...]:
    """Keys that hold media bytes: none of them may outlive the session."""
    return (chunks(sid), frames(sid), audio(sid), tus_tail(sid))


def session_keys(sid: str) -> tuple[str, ...]:
    """Every key of a session, media and bookkeeping."""
    return (*media_keys(sid), meta(sid), session_events(sid), tus(sid), tus_lock(sid), result(sid))


def session_id_of(key: str) -> str | None:
    """The session id inside a per-session key, or None for a global key."""
    start, end = key.find("{"), key.find("}")
    if start == -1 or end <= start:
        return None
    return key[start + 1 : end]
