"""``/metrics``: counters follow the events, gauges follow Redis, cleanup latency is measured, one registry per app."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from dodolens.runner import Runtime
from dodolens.settings import Settings
from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.metrics import Metrics
from schemas.events import AnalysisCompleteData
from streams import keys
from streams.events import publish
from streams.jobs import ensure_group
from streams.lifecycle import fail_session
from streams.sessions import State, set_state
from tests.support.results import finished_result

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
CHUNK = 256 * 1024


@pytest.fixture
async def gateway_only(settings: Settings) -> AsyncIterator[Runtime]:
    """A gateway and nothing else: no worker consumes the uploads, events are published by the test."""
    rt = await Runtime(settings, workers=False).start()
    try:
        yield rt
    finally:
        await rt.stop()


async def scrape(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def until(http: httpx.AsyncClient, check: Callable[[Samples], bool], timeout_s: float = 10.0) -> Samples:
    """Scrape until ``check`` holds: counters follow the event stream a moment after the fact."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples = await scrape(http)
        if check(samples) or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.05)


async def new_session(http: httpx.AsyncClient, size: int) -> tuple[str, dict[str, str]]:
    response = await http.post("/sessions", json={"size": size})
    assert response.status_code == 201, response.text
    body = response.json()
    return body["session_id"], {"Authorization": f"Bearer {body['token']}"}


async def test_metrics_follow_activity(gateway_only: Runtime) -> None:
    r, cfg = gateway_only.redis, gateway_only.stream
    assert r is not None and cfg is not None
    async with httpx.AsyncClient(base_url=gateway_only.url, timeout=30) as http:
        before = await scrape(http)
        assert value(before, "dodolens_active_sessions") == 0
        assert value(before, "dodolens_sessions_created_total") == 0
        assert (value(before, "dodolens_redis_used_memory_bytes") or 0) > 0
        assert value(before, "dodolens_redis_maxmemory_bytes") == 0

        done_sid, auth = await new_session(http, CHUNK + 10)
        failed_sid, _ = await new_session(http, 10)
        assert value(await scrape(http), "dodolens_active_sessions") == 2
        put = await http.put(f"/sessions/{done_sid}/chunks/0", content=b"v" * CHUNK,
                             headers={**auth, "Content-Type": "application/octet-stream"})
        assert put.status_code == 200
        put = await http.put(f"/sessions/{done_sid}/chunks/1", content=b"v" * 10,
                             headers={**auth, "Content-Type": "application/octet-stream"})
        assert (await http.post(f"/sessions/{done_sid}/complete", json={"chunks": 2}, headers=auth)).status_code == 202
        await ensure_group(r, keys.JOBS, keys.DECODERS)

        await set_state(r, cfg, done_sid, State.DONE)
        await publish(r, cfg, done_sid, AnalysisCompleteData(result=finished_result(done_sid, total_s=12.5, tokens=900, frames_sent=27, cost_usd=0.0125)))
        await fail_session(r, cfg, failed_sid, "decode_failed", "no video stream")

        after = await until(http, lambda s: value(s, "dodolens_errors_total", code="decode_failed") == 1
                            and value(s, "dodolens_stage_duration_seconds_count", stage="total") == 1)
    assert value(after, "dodolens_sessions_created_total") == 2
    assert value(after, "dodolens_active_sessions") == 0
    assert value(after, "dodolens_sessions_finished_total", outcome="failed") == 1
    assert value(after, "dodolens_chunks_received_total") == 2
    assert value(after, "dodolens_upload_bytes_received_total") == CHUNK + 10
    assert value(after, "dodolens_events_total", type="upload_complete") == 1
    assert value(after, "dodolens_errors_total", code="decode_failed") == 1
    assert value(after, "dodolens_stage_duration_seconds_sum", stage="total") == 12.5
    assert value(after, "dodolens_stage_duration_seconds_sum", stage="decode") == 2.5
    assert value(after, "dodolens_stage_duration_seconds_bucket", stage="total", le="20.0") == 1
    assert value(after, "dodolens_stage_duration_seconds_bucket", stage="total", le="10.0") == 0
    assert value(after, "dodolens_model_tokens_total", model="gpt-4o-mini") == 900
    assert value(after, "dodolens_model_frames_sent_total", model="gpt-4o-mini") == 27
    assert value(after, "dodolens_model_cost_usd_total", model="gpt-4o-mini") == 0.0125
    assert value(after, "dodolens_queue_length", stream=keys.JOBS) == 1
    assert value(after, "dodolens_consumer_group_lag", stream=keys.JOBS, group=keys.DECODERS) == 1
    assert value(after, "dodolens_consumer_group_pending", stream=keys.JOBS, group=keys.DECODERS) == 0
    assert value(after, "dodolens_consumer_group_consumers", stream=keys.JOBS, group=keys.DECODERS) == 0


async def test_cleanup_latency_counts_until_the_media_are_gone(gateway_only: Runtime) -> None:
    r, cfg = gateway_only.redis, gateway_only.stream
    assert r is not None and cfg is not None
    async with httpx.AsyncClient(base_url=gateway_only.url, timeout=30) as http:
        sid, auth = await new_session(http, 10)
        put = await http.put(f"/sessions/{sid}/chunks/0", content=b"v" * 10,
                             headers={**auth, "Content-Type": "application/octet-stream"})
        assert put.status_code == 200
        await set_state(r, cfg, sid, State.DONE)
        await publish(r, cfg, sid, AnalysisCompleteData(result=finished_result(sid, total_s=1.0, tokens=0)))
        lingering = await until(http, lambda s: value(s, "dodolens_events_total", type="analysis_complete") == 1)
        await asyncio.sleep(0.5)
        assert value(lingering, "dodolens_cleanup_latency_seconds_count") == 0
        await r.delete(*keys.media_keys(sid))
        cleaned = await until(http, lambda s: value(s, "dodolens_cleanup_latency_seconds_count") == 1)
    assert value(cleaned, "dodolens_cleanup_latency_seconds_count") == 1
    assert 0.5 <= (value(cleaned, "dodolens_cleanup_latency_seconds_sum") or 0) < 10
    assert value(cleaned, "dodolens_sessions_finished_total", outcome="done") == 1


async def test_a_session_still_running_after_a_retryable_error_is_not_counted_as_ended(gateway_only: Runtime) -> None:
    r, cfg = gateway_only.redis, gateway_only.stream
    assert r is not None and cfg is not None
    async with httpx.AsyncClient(base_url=gateway_only.url, timeout=30) as http:
        sid, auth = await new_session(http, CHUNK * 2)
        missing = await http.post(f"/sessions/{sid}/complete", json={"chunks": 2}, headers=auth)
        assert missing.status_code == 409
        samples = await until(http, lambda s: value(s, "dodolens_errors_total", code="missing_chunks") == 1)
        await asyncio.sleep(0.2)
        samples = await scrape(http)
    assert value(samples, "dodolens_cleanup_latency_seconds_count") == 0
    assert value(samples, "dodolens_sessions_finished_total", outcome="failed") is None


async def test_each_app_has_its_own_registry(redis: Any) -> None:
    first, second = Metrics(), Metrics()
    first.sessions_created.inc()
    assert second.counters()["sessions_created"] == 0
    apps = [create_app(redis, GatewayConfig(), results=None) for _ in range(3)]  # type: ignore[arg-type]
    assert len({id(app.state.metrics.registry) for app in apps}) == 3
    assert REGISTRY.get_sample_value("dodolens_sessions_created_total") is None
