"""Daily, weekly and monthly reports from the analytics and audit streams.

Performance (sessions, p50/p95 durations, error rate), cost (model tokens, frames sent, the
estimated dollars each result carries from the price table) and compliance
(erasures, TTL expiries, failed cleanups). :func:`summarize` is pure; :func:`build_report` reads.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from schemas.analytics import AnalyticsEvent
from schemas.events import EventType
from streams import keys
from streams.connection import Redis, as_str
from streams.replay import REGISTRY, Upcasters, replay

PERIODS: dict[str, timedelta] = {"daily": timedelta(days=1), "weekly": timedelta(days=7), "monthly": timedelta(days=30)}
STAGES = ("upload", "queue", "decode", "analysis", "total")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation between ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (rank - low), 3)


def outcomes(events: Iterable[AnalyticsEvent]) -> tuple[set[str], set[str]]:
    """(sessions that ended with an inventory, sessions that ended failed), by pseudonym.

    An error that is not ``final`` (missing chunks: the client sends them and completes again) ends nothing.
    """
    done: set[str] = set()
    failed: set[str] = set()
    for e in events:
        if e.type == EventType.ANALYSIS_COMPLETE:
            done.add(e.session)
        elif e.type == EventType.ERROR and e.data.get("final", True):
            failed.add(e.session)
    return done, failed - done


def error_rate(events: Iterable[AnalyticsEvent]) -> dict[str, Any]:
    done, failed = outcomes(events)
    ended = len(done) + len(failed)
    return {"ended": ended, "failed": len(failed), "rate": round(len(failed) / ended, 4) if ended else None}


def durations(events: Iterable[AnalyticsEvent]) -> dict[str, dict[str, Any]]:
    """p50/p95 of each stage over the finished analyses."""
    per_stage: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for e in events:
        if e.type == EventType.ANALYSIS_COMPLETE:
            for stage in STAGES:
                per_stage[stage].append(float(e.data["timings"][f"{stage}_s"]))
    return {stage: {"count": len(v), "p50": percentile(v, 50), "p95": percentile(v, 95)} for stage, v in per_stage.items()}


def summarize(events: Sequence[AnalyticsEvent], audit: Sequence[dict[str, Any]], *, period: str,
              start: datetime, end: datetime, invalid: int = 0) -> dict[str, Any]:
    """The report over already-windowed analytics events and audit records."""
    by_type = Counter(e.type.value for e in events)
    created = {e.session for e in events if e.type == EventType.SESSION_CREATED}
    errors = Counter(str(e.data.get("code")) for e in events if e.type == EventType.ERROR)
    analyses = [e for e in events if e.type == EventType.ANALYSIS_COMPLETE]
    tokens_by_model: Counter[str] = Counter()
    cost_by_model: Counter[str] = Counter()
    for e in analyses:
        tokens_by_model[e.data.get("model") or "none"] += int(e.data.get("tokens", 0))
        if e.data.get("cost_usd") is not None:
            cost_by_model[e.data.get("model") or "none"] += float(e.data["cost_usd"])
    tokens = sum(tokens_by_model.values())
    cost = sum(cost_by_model.values())
    priced = sum(1 for e in analyses if e.data.get("cost_usd") is not None)
    actions = Counter(str(a.get("action")) for a in audit)
    results_erased = sum(1 for a in audit if a.get("action") == "result_erased" and a.get("deleted"))
    return {
        "period": period,
        "from": start.isoformat(),
        "until": end.isoformat(),
        "performance": {
            "sessions": len(created),
            "uploads_completed": by_type[EventType.UPLOAD_COMPLETE.value],
            "analyses_completed": len(analyses),
            "error_rate": error_rate(events),
            "errors_by_code": dict(errors.most_common()),
            "durations_s": durations(events),
        },
        "cost": {
            "model_tokens": tokens,
            "tokens_by_model": dict(tokens_by_model.most_common()),
            "tokens_per_analysis": round(tokens / len(analyses), 1) if analyses else None,
            "frames_sent": sum(int(e.data.get("frames_sent", 0)) for e in analyses),
            "input_tokens": sum(int(e.data.get("input_tokens", 0)) for e in analyses),
            "image_tokens": sum(int(e.data.get("image_tokens", 0)) for e in analyses),
            "text_tokens": sum(int(e.data.get("text_tokens", 0)) for e in analyses),
            "output_tokens": sum(int(e.data.get("output_tokens", 0)) for e in analyses),
            "estimated_usd": round(cost, 4),
            "estimated_usd_by_model": {model: round(usd, 4) for model, usd in cost_by_model.most_common()},
            "estimated_usd_per_analysis": round(cost / priced, 4) if priced else None,
            "unpriced_analyses": len(analyses) - priced,
            "analyses_by_status": dict(Counter(str(e.data.get("status")) for e in analyses)),
        },
        "compliance": {
            "erasures": actions["session_erased"],
            "results_erased": results_erased,
            "ttl_expiries": actions["ttl_expired"],
            "failed_cleanups": actions["failed_cleanup"],
            "media_accesses": actions["media_access"],
            "audit_actions": dict(actions.most_common()),
        },
        "records": {"events": len(events), "audit": len(audit), "invalid_events": invalid},
    }


async def read_audit(r: Redis, start: datetime, end: datetime, page: int = 1000) -> list[dict[str, Any]]:
    """Audit records written in [start, end)."""
    out: list[dict[str, Any]] = []
    low, high = f"{math.ceil(start.timestamp() * 1000)}-0", f"({math.ceil(end.timestamp() * 1000)}-0"
    while True:
        rows = await r.xrange(keys.AUDIT, min=low, max=high, count=page)
        for _entry_id, fields in rows:
            try:
                out.append(orjson.loads(fields[b"r"]))
            except (KeyError, orjson.JSONDecodeError):
                continue
        if len(rows) < page:
            return out
        last = rows[-1][0]
        low = f"({as_str(last)}"


async def build_report(r: Redis, period: str, now: datetime | None = None,
                       upcasters: Upcasters = REGISTRY) -> dict[str, Any]:
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}")
    end = now or datetime.now(timezone.utc)
    start = end - PERIODS[period]
    events: list[AnalyticsEvent] = []

    async def keep(_entry_id: str, event: AnalyticsEvent) -> None:
        events.append(event)

    stats = await replay(r, keep, since=start, until=end, upcasters=upcasters)
    audit = await read_audit(r, start, end)
    return summarize(events, audit, period=period, start=start, end=end, invalid=len(stats.invalid))
