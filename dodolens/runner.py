"""Runs DodoLens in one process: embedded Redis when needed, gateway on uvicorn, workers as tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dodolens.settings import Settings
from processors.analyze_job import analyze_job
from processors.analyzer import model_client
from processors.control import run_control
from processors.config import WorkerConfig
from processors.decode_jobs import decode_job, follow_job
from processors.delivery import run_delivery
from processors.sinks import ResultSink, open_sink
from processors.sweeper import run_sweeper
from processors.worker import run_group
from streams import keys
from streams.analytics import analytics_hook
from streams.config import StreamConfig
from streams.connection import (
    BlockingRedis,
    Redis,
    connect,
    connect_blocking,
    ensure_ephemeral,
)
from streams.embedded import EmbeddedRedis, free_port
from streams.events import EventHook, add_event_hook, remove_event_hook
from streams.threads import in_thread

if TYPE_CHECKING:
    import openai
    import uvicorn

log = logging.getLogger("dodolens")


async def run_workers(r: Redis, blocking: BlockingRedis, cfg: WorkerConfig, sink: ResultSink,
                      stop: asyncio.Event) -> None:
    """The decoder and analyzer consumer groups, side by side, until ``stop`` is set.

    ``blocking`` is the client decode threads read chunks with (``streams.blocking``).
    """
    model = model_client(cfg.analyzer) if cfg.analyzer.enabled else None
    try:
        await _run_groups(r, blocking, cfg, sink, stop, model)
    finally:
        if model is not None:
            await model.close()


async def _run_groups(r: Redis, blocking: BlockingRedis, cfg: WorkerConfig, sink: ResultSink, stop: asyncio.Event,
                      model: openai.AsyncOpenAI | None) -> None:
    common = dict(consumer=cfg.consumer, claim_idle_ms=cfg.claim_idle_ms, max_deliveries=cfg.max_deliveries,
                  block_ms=cfg.block_ms, stop=stop)
    followers = [
        run_group(r, cfg.stream, stream=keys.FOLLOW, group=keys.FOLLOWERS, concurrency=cfg.follow_concurrency,
                  handler=lambda job: follow_job(r, blocking, cfg, job), **common),
    ] if cfg.follow_concurrency > 0 else []
    groups = [
        run_group(r, cfg.stream, stream=keys.JOBS, group=keys.DECODERS, concurrency=cfg.decode_concurrency,
                  handler=lambda job: decode_job(r, blocking, cfg, job), **common),
        *followers,
        run_group(r, cfg.stream, stream=keys.ANALYZE, group=keys.ANALYZERS, concurrency=cfg.analyze_concurrency,
                  handler=lambda job: analyze_job(r, cfg, sink, job, model), **common),
        run_sweeper(r, cfg.stream, cfg.sweep_interval_s, stop),
        run_control(r, cfg, stop),
        run_delivery(r, cfg.stream, cfg.delivery, sink, stop),
    ]
    async with asyncio.TaskGroup() as running:  # unlike gather, a stop waits until every group has wound down
        for group in groups:
            running.create_task(group)


def check_can_listen(host: str, port: int) -> None:
    """Refuse before starting anything when the gateway's address is taken (one clear error)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None


@dataclass
class Runtime:
    """What one ``dodolens`` process runs; ``url`` is the gateway's address once started.

    ``embedded``, when given, is a Redis already launched for it (used when ``REDIS_URL`` is unset)."""

    settings: Settings
    gateway: bool = True
    workers: bool = True
    host: str = "127.0.0.1"
    port: int = 0
    redis_url: str = ""
    stream: StreamConfig | None = None
    embedded: EmbeddedRedis | None = None
    redis: Redis | None = None
    blocking: BlockingRedis | None = None
    sink: ResultSink | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    server: uvicorn.Server | None = None
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    hooks: list[EventHook] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> "Runtime":
        s = self.settings
        if self.gateway and self.port:
            check_can_listen(self.host, self.port)
        if s.redis_url:
            self.redis_url = s.redis_url
        else:
            self.embedded = await in_thread((self.embedded or EmbeddedRedis()).start)
            self.redis_url = self.embedded.url
        self.redis = connect(self.redis_url, cluster=s.redis_cluster)
        await ensure_ephemeral(self.redis, allow_persistent=s.allow_persistent_redis)
        self.stream = s.stream_config(s.keyring())
        self.sink = open_sink(s.sink)
        self.hooks = [analytics_hook]
        for hook in self.hooks:
            add_event_hook(hook)
        if self.workers:
            self.blocking = connect_blocking(self.redis_url, cluster=s.redis_cluster)
            self.tasks.append(asyncio.create_task(run_workers(self.redis, self.blocking, s.worker_config(self.stream), self.sink,
                                                              self.stop_event)))
        if self.gateway:
            import uvicorn  # here: the in-process ``analyze`` runs no gateway

            from dodolens.server import HttpLimits, server_config
            from gateway.app import create_app

            self.port = self.port or free_port()
            gateway_config = s.gateway_config(self.stream)
            app = create_app(self.redis, gateway_config, self.sink)
            limits = HttpLimits(max_header_bytes=gateway_config.max_header_bytes,
                                header_timeout_s=gateway_config.header_timeout_s,
                                body_idle_timeout_s=gateway_config.body_idle_timeout_s,
                                min_body_rate=gateway_config.min_body_rate,
                                max_connections=gateway_config.max_connections)
            config = server_config(app, host=self.host, port=self.port, limits=limits,
                                   trusted_proxies=gateway_config.trusted_proxies, log_level="warning", lifespan="on",
                                   ws_ping_interval=gateway_config.ws_ping_interval_s,
                                   ws_ping_timeout=gateway_config.ws_ping_interval_s)
            self.server = uvicorn.Server(config)
            self.tasks.append(asyncio.create_task(self.server.serve()))
            while not self.server.started:
                if self.tasks[-1].done():
                    await self.stop()  # uvicorn exits (SystemExit) when it cannot listen: stop the rest too
                    raise OSError(f"the gateway could not listen on {self.host}:{self.port}")
                await asyncio.sleep(0.02)
        return self

    async def __aenter__(self) -> "Runtime":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait(self) -> None:
        await asyncio.gather(*self.tasks)

    async def stop(self) -> None:
        self.stop_event.set()
        if self.server:
            self.server.should_exit = True
        if self.workers and self.tasks:
            self.tasks[0].cancel()  # its jobs are cancelled either way; this spares the wait for a blocked read
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), 10)
        for task in self.tasks:
            task.cancel()
        for hook in self.hooks:
            remove_event_hook(hook)
        self.hooks = []
        if self.sink:
            await self.sink.close()
        if self.redis:
            await self.redis.aclose()
        if self.blocking:
            await in_thread(self.blocking.close)
        if self.embedded:
            await in_thread(self.embedded.stop)

