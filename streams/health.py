"""What ops watch live, and the design's alert thresholds.

Alerts (design note, "Monitoring Dashboard"): memory above 80 % (Redis of its maxmemory, or the
host), a session processing for more than 3 minutes, a failed cleanup (the sweeper records them in
``dodo:alerts``), and more than 5 % of sessions failing over 15 minutes. :func:`evaluate_alerts` is pure.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from schemas.analytics import ANALYTICS_VERSION, AnalyticsEvent
from schemas.events import EventType
from streams import keys
from streams.analytics import read_window
from streams.audit import pseudonym
from streams.config import StreamConfig
from streams.connection import Redis
from streams.lag import LagTracker, as_dict
from streams.replay import validate
from streams.report import durations, error_rate
from streams.sessions import active_sessions, decode_hash

MEMORY_LIMIT = 0.8
PROCESSING_LIMIT_S = 180.0
ERROR_RATE_LIMIT = 0.05
ERROR_WINDOW_S = 900.0
RECORDED_ALERT_WINDOW_S = 3600.0
IN_PROGRESS = ("queued", "processing", "analyzing", "storing")
OUTCOME_TYPES = frozenset({EventType.ANALYSIS_COMPLETE.value, EventType.ERROR.value})


@dataclass(frozen=True)
class Alert:
    level: str
    kind: str
    message: str


def parse_meminfo(text: str) -> dict[str, Any] | None:
    """Host memory from ``/proc/meminfo`` text: total, available and the fraction in use."""
    values = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if rest.strip():
            values[name] = int(rest.split()[0]) * 1024
    total, available = values.get("MemTotal"), values.get("MemAvailable")
    if not total or available is None:
        return None
    return {"total_bytes": total, "available_bytes": available, "fraction": round(1 - available / total, 4)}


def host_memory(path: Path = Path("/proc/meminfo")) -> dict[str, Any] | None:
    try:
        return parse_meminfo(path.read_text())
    except OSError:
        return None


async def redis_memory(r: Redis) -> dict[str, Any]:
    info = await r.info("memory")
    used, maximum = int(info["used_memory"]), int(info.get("maxmemory", 0))
    return {"used_bytes": used, "max_bytes": maximum, "fraction": round(used / maximum, 4) if maximum else None}


async def in_progress(r: Redis, cfg: StreamConfig, now: float | None = None) -> list[dict[str, Any]]:
    """Live sessions past upload, with how long since the upload completed (pseudonymous)."""
    now = time.time() if now is None else now
    out = []
    for raw in await r.zrange(keys.ACTIVE, 0, -1):
        sid = raw.decode() if isinstance(raw, bytes) else raw
        meta = decode_hash(await r.hgetall(keys.meta(sid)))
        if meta.get("state") in IN_PROGRESS and "uploaded_at" in meta:
            out.append({"session": pseudonym(cfg, sid), "state": meta["state"],
                        "seconds": round(now - float(meta["uploaded_at"]), 1)})
    return sorted(out, key=lambda s: -s["seconds"])


async def recorded_alerts(r: Redis, since_s: float, now: float | None = None, count: int = 200) -> list[dict[str, Any]]:
    """Alerts other components wrote to ``dodo:alerts`` in the last ``since_s`` seconds, newest first."""
    now = time.time() if now is None else now
    rows = await r.xrevrange(keys.ALERTS, max="+", min=f"{int((now - since_s) * 1000)}-0", count=count)
    out = []
    for entry_id, fields in rows:
        record = decode_hash(fields)
        record["id"] = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        out.append(record)
    return out


async def recent_events(r: Redis, window_s: float, types: frozenset[str] = OUTCOME_TYPES,
                        now: float | None = None) -> list[AnalyticsEvent]:
    """Valid analytics events of ``types`` recorded in the last ``window_s`` (others are skipped unparsed)."""
    now = time.time() if now is None else now
    out = []
    for _entry, raw in await read_window(r, f"{int((now - window_s) * 1000)}-0", "+"):
        if raw.get("v") == ANALYTICS_VERSION and raw.get("type") not in types:
            continue
        try:
            event = validate(raw)
        except ValueError:
            continue
        if event.type.value in types:
            out.append(event)
    return out


async def gather(r: Redis, cfg: StreamConfig, tracker: LagTracker) -> dict[str, Any]:
    """The live figures, cheap enough for every scrape: sessions, queues, memory, slow sessions, alerts."""
    groups = await tracker.observe(r)
    return {
        "at": time.time(),
        "active_sessions": await active_sessions(r, cfg),
        "queues": {stream: int(await r.xlen(stream)) for stream in keys.GROUPS},
        "groups": [as_dict(sample, verdict) for sample, verdict in groups],
        "redis_memory": await redis_memory(r),
        "host_memory": host_memory(),
        "in_progress": await in_progress(r, cfg),
        "recorded_alerts": await recorded_alerts(r, RECORDED_ALERT_WINDOW_S),
    }


async def recent_outcomes(r: Redis, window_s: float = ERROR_WINDOW_S) -> dict[str, Any]:
    """Error rate and stage durations over the last ``window_s``, from every process's analytics."""
    events = await recent_events(r, window_s)
    return {"window_s": window_s, "error_rate": error_rate(events), "durations_s": durations(events)}


def evaluate_alerts(figures: dict[str, Any], outcomes: dict[str, Any], *, memory_limit: float = MEMORY_LIMIT,
                    processing_limit_s: float = PROCESSING_LIMIT_S,
                    error_rate_limit: float = ERROR_RATE_LIMIT) -> list[Alert]:
    """The design's thresholds applied to :func:`gather` and :func:`recent_outcomes` results."""
    alerts = []
    for name, figure in (("Redis", figures.get("redis_memory")), ("host", figures.get("host_memory"))):
        fraction = (figure or {}).get("fraction")
        if fraction is not None and fraction > memory_limit:
            alerts.append(Alert("critical", "high_memory", f"{name} memory at {fraction:.0%} (limit {memory_limit:.0%})"))
    slow = [s for s in figures.get("in_progress", []) if s["seconds"] > processing_limit_s]
    if slow:
        worst = slow[0]
        alerts.append(Alert("warning", "long_processing", f"{len(slow)} session(s) processing for over "
                            f"{processing_limit_s / 60:.0f} min (longest {worst['seconds']:.0f} s, {worst['state']})"))
    recorded: dict[str, int] = {}
    for record in figures.get("recorded_alerts", []):
        recorded[record.get("type", "unknown")] = recorded.get(record.get("type", "unknown"), 0) + 1
    if "failed_cleanup" in recorded:
        alerts.append(Alert("critical", "failed_cleanup", f"{recorded.pop('failed_cleanup')} failed cleanup(s) in the "
                            "last hour: media keys outlived their session and were swept"))
    for kind, count in sorted(recorded.items()):
        alerts.append(Alert("warning", kind, f"{count} '{kind}' alert(s) recorded in the last hour"))
    rate = outcomes.get("error_rate", {})
    if rate.get("rate") is not None and rate["rate"] > error_rate_limit:
        minutes = outcomes.get("window_s", ERROR_WINDOW_S) / 60
        alerts.append(Alert("critical", "error_rate", f"{rate['rate']:.0%} of sessions failed over {minutes:.0f} min "
                            f"({rate['failed']} of {rate['ended']}; limit {error_rate_limit:.0%})"))
    for group in figures.get("groups", []):
        if group["status"] != "OK":
            level = "critical" if group["status"] == "STALLED" else "warning"
            alerts.append(Alert(level, "consumer_lag", f"{group['stream']}/{group['group']} {group['status']}: {group['reason']}"))
    return alerts


def alerts_as_dicts(alerts: list[Alert]) -> list[dict[str, str]]:
    return [asdict(a) for a in alerts]
