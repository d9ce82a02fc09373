"""Prometheus ``/metrics``: counters fed from the event stream, gauges read from Redis at scrape time.

Each gateway tails ``dodo:events``, where every process (gateway or worker) publishes, so its
counters include the workers' events (durations, tokens) even when they run elsewhere. With
several gateways, aggregate with ``max`` rather than ``sum``. Every app has its own registry.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.timeline import Timeline
from schemas.events import Event, EventType
from schemas.lifecycle import FINISHED
from streams import keys
from streams.connection import RETRYABLE, Redis, as_str
from streams.health import gather

log = logging.getLogger("dodolens.metrics")

DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 180, 300, 600)
CLEANUP_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 15, 30, 60, 120, 300)
STAGES = ("upload", "queue", "decode", "analysis", "total")
OUTCOMES = {EventType.ANALYSIS_COMPLETE: "done", EventType.ERROR: "failed", EventType.SESSION_ERASED: "erased"}
ENDED = tuple(OUTCOMES)
CLEANUP_GIVE_UP_S = 3600.0
STATUS_CODES = {"OK": 0, "WARN": 1, "STALLED": 2}


class Metrics:
    """The gateway's metrics in a registry of its own (many apps may live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter("dodolens_events", "Events seen on dodo:events", ["type"], registry=r)
        self.sessions_created = Counter("dodolens_sessions_created", "Sessions created", registry=r)
        self.chunks = Counter("dodolens_chunks_received", "Chunks stored", registry=r)
        self.upload_bytes = Counter("dodolens_upload_bytes_received", "Request body bytes of uploads (PUT/PATCH)",
                                    registry=r)
        self.finished = Counter("dodolens_sessions_finished", "Sessions ended, by outcome", ["outcome"], registry=r)
        self.errors = Counter("dodolens_errors", "Error events, by code", ["code"], registry=r)
        self.tokens = Counter("dodolens_model_tokens", "Model tokens used by analyses", ["model"], registry=r)
        self.frames_sent = Counter("dodolens_model_frames_sent", "Frames sent to the vision model", ["model"],
                                   registry=r)
        self.cost = Counter("dodolens_model_cost_usd", "Estimated cost of the vision requests (price table)", ["model"],
                            registry=r)
        self.stage = Histogram("dodolens_stage_duration_seconds", "Duration of each stage of finished sessions",
                               ["stage"], buckets=DURATION_BUCKETS, registry=r)
        self.cleanup = Histogram("dodolens_cleanup_latency_seconds",
                                 "From a session's end until no media key of it is left", buckets=CLEANUP_BUCKETS,
                                 registry=r)
        self.active = Gauge("dodolens_active_sessions", "Sessions live in Redis", registry=r)
        self.websockets = Gauge("dodolens_websocket_connections", "Open event WebSockets on this gateway", registry=r)
        self.queue = Gauge("dodolens_queue_length", "Entries in a work stream", ["stream"], registry=r)
        self.lag = Gauge("dodolens_consumer_group_lag", "Entries not yet delivered to the group", ["stream", "group"],
                         registry=r)
        self.pending = Gauge("dodolens_consumer_group_pending", "Entries delivered, not acknowledged",
                             ["stream", "group"], registry=r)
        self.consumers = Gauge("dodolens_consumer_group_consumers", "Consumers in the group", ["stream", "group"],
                               registry=r)
        self.oldest_idle = Gauge("dodolens_consumer_group_oldest_pending_idle_seconds",
                                 "Idle time of the oldest pending entry", ["stream", "group"], registry=r)
        self.group_status = Gauge("dodolens_consumer_group_status", "0 OK, 1 WARN (lag growing), 2 STALLED",
                                  ["stream", "group"], registry=r)
        self.redis_used = Gauge("dodolens_redis_used_memory_bytes", "Redis INFO used_memory", registry=r)
        self.redis_max = Gauge("dodolens_redis_maxmemory_bytes", "Redis maxmemory (0: unlimited)", registry=r)
        self.recorded_alerts = Gauge("dodolens_recorded_alerts", "Alerts in dodo:alerts over the last hour", ["type"],
                                     registry=r)
        self.cleanup_recent: deque[float] = deque(maxlen=200)
        self.timeline = Timeline()
        self._ended: dict[str, tuple[float, str]] = {}
        """Session id -> (time it ended, outcome), until its media keys are seen gone."""

    def observe(self, event: Event) -> None:
        """Count one event; pure bookkeeping, no I/O."""
        self.events.labels(event.type.value).inc()
        self.timeline.observe(event)
        data = event.data
        if event.type == EventType.SESSION_CREATED:
            self.sessions_created.inc()
        elif event.type == EventType.CHUNK_RECEIVED:
            self.chunks.inc()
        elif event.type == EventType.ERROR:
            self.errors.labels(str(data.get("code", "unknown"))).inc()
        elif event.type == EventType.ANALYSIS_COMPLETE:
            result = data.get("result") or {}
            timings = result.get("timings") or {}
            for stage in STAGES:
                if isinstance(timings.get(f"{stage}_s"), (int, float)):
                    self.stage.labels(stage).observe(max(0.0, float(timings[f"{stage}_s"])))
            analysis = result.get("analysis") or {}
            model = str(analysis.get("model") or "unknown")
            if analysis.get("tokens"):
                self.tokens.labels(model).inc(int(analysis["tokens"]))
            if analysis.get("frames_sent"):
                self.frames_sent.labels(model).inc(int(analysis["frames_sent"]))
            if isinstance(analysis.get("cost_usd"), (int, float)) and analysis["cost_usd"] > 0:
                self.cost.labels(model).inc(float(analysis["cost_usd"]))
        if event.type in ENDED and data.get("final", True):
            self._ended[event.session_id] = (event.timestamp.timestamp(), OUTCOMES[event.type])

    async def check_cleanup(self, r: Redis, now: float | None = None) -> None:
        """Time from each session's end until its media keys are gone; sessions still going are dropped."""
        if not self._ended:
            return
        sids = list(self._ended)[:200]
        async with r.pipeline(transaction=False) as pipe:
            for sid in sids:
                pipe.exists(*keys.media_keys(sid))
                pipe.hget(keys.meta(sid), "state")
            replies = await pipe.execute()
        now = time.time() if now is None else now
        for i, sid in enumerate(sids):
            left, state = replies[2 * i], replies[2 * i + 1]
            state = as_str(state)
            ended_at, outcome = self._ended[sid]
            if state is not None and state not in FINISHED:
                del self._ended[sid]
            elif not left:
                latency = max(0.0, now - ended_at)
                self.cleanup.observe(latency)
                self.cleanup_recent.append(latency)
                self.finished.labels(outcome).inc()
                del self._ended[sid]
            elif now - ended_at > CLEANUP_GIVE_UP_S:
                del self._ended[sid]

    def refresh(self, figures: dict[str, Any], websockets: int) -> None:
        """Set the gauges from :func:`streams.health.gather` figures (read at scrape time)."""
        self.active.set(figures["active_sessions"])
        self.websockets.set(websockets)
        for stream, length in figures["queues"].items():
            self.queue.labels(stream).set(length)
        for g in figures["groups"]:
            labels = (g["stream"], g["group"])
            self.lag.labels(*labels).set(g["lag"] if g["lag"] is not None else float("nan"))
            self.pending.labels(*labels).set(g["pending"])
            self.consumers.labels(*labels).set(g["consumers"])
            self.oldest_idle.labels(*labels).set((g["oldest_pending_idle_ms"] or 0) / 1000)
            self.group_status.labels(*labels).set(STATUS_CODES[g["status"]])
        self.redis_used.set(figures["redis_memory"]["used_bytes"])
        self.redis_max.set(figures["redis_memory"]["max_bytes"])
        counts: dict[str, int] = {}
        for record in figures["recorded_alerts"]:
            counts[record.get("type", "unknown")] = counts.get(record.get("type", "unknown"), 0) + 1
        self.recorded_alerts.clear()
        for kind, count in counts.items():
            self.recorded_alerts.labels(kind).set(count)

    def counters(self) -> dict[str, Any]:
        """Counter values for the dashboard (since this gateway started)."""

        def by_label(counter: Counter) -> dict[str, float]:
            return {s.labels[next(iter(s.labels))]: s.value for m in counter.collect() for s in m.samples
                    if s.name.endswith("_total")}

        def single(counter: Counter) -> float:
            return next(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total"))

        recent = sorted(self.cleanup_recent)
        return {
            "sessions_created": single(self.sessions_created),
            "chunks_received": single(self.chunks),
            "upload_bytes_received": single(self.upload_bytes),
            "events": by_label(self.events),
            "errors_by_code": by_label(self.errors),
            "tokens_by_model": by_label(self.tokens),
            "sessions_finished": by_label(self.finished),
            "cleanup_latency_s": {
                "count": len(recent),
                "p50": recent[len(recent) // 2] if recent else None,
                "max": recent[-1] if recent else None,
            },
        }

    async def on_events(self, r: Redis, events: list[Event]) -> None:
        """Listener of the hub's tail of ``dodo:events`` (one tail per gateway, not one per reader)."""
        for event in events:
            self.observe(event)
        with contextlib.suppress(*RETRYABLE):
            await self.check_cleanup(r)


class UploadBytes:
    """ASGI middleware counting request body bytes of uploads (chunk PUTs, tus PATCHes) as they arrive."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("PUT", "PATCH"):
            await self.app(scope, receive, send)
            return

        async def counting() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.metrics.upload_bytes.inc(len(message.get("body", b"")))
            return message

        await self.app(scope, counting, send)


async def metrics_endpoint(request: Request) -> Response:
    app = request.app
    metrics: Metrics = app.state.metrics
    figures = await gather(app.state.redis, app.state.config.stream, app.state.lag)
    metrics.refresh(figures, app.state.hub.connections)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics_endpoint)]
