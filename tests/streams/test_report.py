"""Reports: percentiles, the pure summary over known events, and ``dodolens report`` over real streams."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis as sync_redis
from hypothesis import given
from hypothesis import strategies as st

from dodolens.cli import main
from schemas.analytics import AnalyticsEvent
from schemas.events import AnalysisCompleteData, ErrorData, SessionCreatedData
from streams import keys
from streams.analytics import analytics_hook
from streams.audit import audit
from streams.config import StreamConfig
from streams.connection import Redis
from streams.embedded import EmbeddedRedis
from streams.events import add_event_hook, publish, remove_event_hook
from streams.report import build_report, percentile, summarize
from tests.support.results import finished_result

T0 = datetime(2025, 1, 31, 8, tzinfo=timezone.utc)


def analytics(kind: str, session: int, **data: Any) -> AnalyticsEvent:
    defaults: dict[str, dict[str, Any]] = {
        "session_created": {"size": 100, "chunks": 1},
        "upload_complete": {"size": 100, "chunks": 1},
        "error": {"code": "decode_failed", "retryable": False},
        "session_erased": {"keys_deleted": 1},
    }
    return AnalyticsEvent(type=kind, session=f"{session:020x}", timestamp=T0, data={**defaults.get(kind, {}), **data})


def complete(session: int, total: float, tokens: int, model: str = "gpt-4o-mini", **usage: Any) -> AnalyticsEvent:
    timings = {"upload_s": total / 4, "queue_s": 0.0, "decode_s": total / 4, "analysis_s": total / 2, "total_s": total}
    return analytics("analysis_complete", session, status="complete", model=model, tokens=tokens, timings=timings,
                     **usage)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([], 50, None), ([7.0], 95, 7.0), ([1, 2, 3, 4], 50, 2.5), ([1, 2, 3, 4, 5], 50, 3.0),
     (list(range(1, 101)), 95, 95.05), ([10, 1], 0, 1.0), ([10, 1], 100, 10.0)],
)
def test_percentile(values: list[float], q: float, expected: float | None) -> None:
    assert percentile(values, q) == expected


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=50))
def test_percentiles_stay_within_the_values_and_in_order(values: list[float]) -> None:
    p50, p95 = percentile(values, 50), percentile(values, 95)
    assert p50 is not None and p95 is not None
    assert min(values) - 1e-3 <= p50 <= p95 <= max(values) + 1e-3


def test_summary_of_a_known_day() -> None:
    events = [
        *(analytics("session_created", i) for i in range(6)),
        *(analytics("upload_complete", i) for i in range(5)),
        complete(0, 10.0, 1000), complete(1, 20.0, 3000), complete(2, 30.0, 500, model="other-model"),
        analytics("error", 3, code="missing_chunks", retryable=True, final=False, missing=2),
        complete(3, 40.0, 0),
        analytics("error", 4, code="decode_failed"),
        analytics("error", 4, code="decode_failed"),
        analytics("session_erased", 5),
    ]
    audit_records = [
        {"action": "session_erased", "session": "x"}, {"action": "result_erased", "deleted": True},
        {"action": "result_erased", "deleted": False}, {"action": "ttl_expired"}, {"action": "ttl_expired"},
        {"action": "failed_cleanup", "keys_deleted": 2}, {"action": "media_access", "stage": "decode"},
    ]
    rep = summarize(events, audit_records, period="daily", start=T0 - timedelta(days=1), end=T0)
    perf, cost, comp = rep["performance"], rep["cost"], rep["compliance"]
    assert (perf["sessions"], perf["uploads_completed"], perf["analyses_completed"]) == (6, 5, 4)
    assert perf["error_rate"] == {"ended": 5, "failed": 1, "rate": 0.2}
    assert perf["errors_by_code"] == {"decode_failed": 2, "missing_chunks": 1}
    assert perf["durations_s"]["total"] == {"count": 4, "p50": 25.0, "p95": 38.5}
    assert perf["durations_s"]["analysis"]["p50"] == 12.5
    assert cost == {"model_tokens": 4500, "tokens_by_model": {"gpt-4o-mini": 4000, "other-model": 500},
                    "tokens_per_analysis": 1125.0, "analyses_by_status": {"complete": 4},
                    "frames_sent": 0, "input_tokens": 0, "image_tokens": 0, "text_tokens": 0, "output_tokens": 0,
                    "estimated_usd": 0,
                    "estimated_usd_by_model": {}, "estimated_usd_per_analysis": None, "unpriced_analyses": 4}
    assert (comp["erasures"], comp["results_erased"], comp["ttl_expiries"], comp["failed_cleanups"],
            comp["media_accesses"]) == (1, 1, 2, 1, 1)


def test_the_cost_sums_frames_tokens_and_the_estimates_the_results_carry() -> None:
    events = [
        complete(0, 10.0, 31_000, model="gpt-5.4-mini-2026-03-17", frames_sent=40, input_tokens=30_000,
                 image_tokens=28_000, text_tokens=2_000, output_tokens=1_000, cost_usd=0.0270),
        complete(1, 10.0, 12_000, model="gpt-5.4-mini-2026-03-17", frames_sent=14, input_tokens=11_000,
                 output_tokens=1_000, cost_usd=0.01275),
        complete(2, 10.0, 500, model="local-model", frames_sent=2, input_tokens=400, output_tokens=100),
    ]
    cost = summarize(events, [], period="daily", start=T0 - timedelta(days=1), end=T0)["cost"]
    assert (cost["frames_sent"], cost["input_tokens"], cost["output_tokens"]) == (56, 41_400, 2_100)
    assert (cost["image_tokens"], cost["text_tokens"]) == (28_000, 2_000)
    assert cost["estimated_usd"] == 0.0398
    assert cost["estimated_usd_by_model"] == {"gpt-5.4-mini-2026-03-17": 0.0398}
    assert cost["estimated_usd_per_analysis"] == 0.0199
    assert cost["unpriced_analyses"] == 1


def test_an_empty_period_reports_zeroes_not_errors() -> None:
    rep = summarize([], [], period="weekly", start=T0 - timedelta(days=7), end=T0)
    assert rep["performance"]["error_rate"] == {"ended": 0, "failed": 0, "rate": None}
    assert rep["performance"]["durations_s"]["total"] == {"count": 0, "p50": None, "p95": None}
    assert rep["cost"]["tokens_per_analysis"] is None


async def test_report_reads_analytics_and_audit(redis: Redis, stream_cfg: StreamConfig) -> None:
    add_event_hook(analytics_hook)
    try:
        result = finished_result("a" * 32, total_s=6, tokens=700, upload_s=1, queue_s=0, decode_s=2, analysis_s=3, model="m")
        await publish(redis, stream_cfg, "a" * 32, SessionCreatedData(size=1, chunks=1))
        await publish(redis, stream_cfg, "a" * 32, AnalysisCompleteData(result=result))
        await publish(redis, stream_cfg, "b" * 32, SessionCreatedData(size=1, chunks=1))
        await publish(redis, stream_cfg, "b" * 32, ErrorData(code="too_long", message="m"))
    finally:
        remove_event_hook(analytics_hook)
    await audit(redis, stream_cfg, "session_erased", "c" * 32, keys_deleted=2)
    await audit(redis, stream_cfg, "ttl_expired", "d" * 32)
    rep = await build_report(redis, "daily")
    assert rep["performance"]["sessions"] == 2
    assert rep["performance"]["error_rate"]["rate"] == 0.5
    assert rep["performance"]["durations_s"]["total"]["p50"] == 6.0
    assert rep["cost"]["model_tokens"] == 700
    assert (rep["compliance"]["erasures"], rep["compliance"]["ttl_expiries"]) == (1, 1)
    tomorrow = await build_report(redis, "daily", now=datetime.now(timezone.utc) + timedelta(days=2))
    assert tomorrow["records"] == {"events": 0, "audit": 0, "invalid_events": 0}
    with pytest.raises(ValueError):
        await build_report(redis, "yearly")


def test_cli_report_json_and_tables(redis_server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    client = sync_redis.Redis(port=redis_server.port)
    try:
        client.xadd(keys.AUDIT, {"r": json.dumps({"action": "failed_cleanup", "at": 1, "session": "x"})})
    finally:
        client.close()
    assert main(["report", "monthly", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["period"] == "monthly" and rep["compliance"]["failed_cleanups"] == 1
    assert main(["report", "weekly"]) == 0
    text = capsys.readouterr().out
    assert "weekly report" in text and "failed cleanups" in text and "p95" in text
