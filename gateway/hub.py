"""WebSocket fan-out: one tail of ``dodo:events`` per gateway, dispatched to that session's sockets."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

import orjson
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.auth import check_token, valid_session_id
from schemas.events import TERMINAL_TYPES, Event, EventType
from streams.connection import RETRYABLE, Redis
from schemas.errors import ErrorCode
from streams import keys
from streams.config import StreamConfig
from streams.events import history, history_tail, last_global_id, publish, stream_id_key, tail
from streams.sessions import is_erased

log = logging.getLogger("dodolens.hub")

QUEUE_LIMIT = 1000


class Hub:
    """Keeps the subscribers of each session and feeds them from the global event stream."""

    def __init__(self, redis: Redis, stream: StreamConfig, check_interval_s: float = 5.0) -> None:
        self.redis = redis
        self.stream = stream
        self.check_interval_s = check_interval_s
        self.subscribers: dict[str, set[asyncio.Queue[Event | None]]] = defaultdict(set)
        self._tasks: list[asyncio.Task[None]] = []

    def subscribe(self, sid: str) -> asyncio.Queue[Event | None]:
        queue: asyncio.Queue[Event | None] = asyncio.Queue(QUEUE_LIMIT)
        self.subscribers[sid].add(queue)
        return queue

    def unsubscribe(self, sid: str, queue: asyncio.Queue[Event | None]) -> None:
        self.subscribers[sid].discard(queue)
        if not self.subscribers[sid]:
            del self.subscribers[sid]

    @property
    def connections(self) -> int:
        return sum(len(s) for s in self.subscribers.values())

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name="dodolens-hub"),
                       asyncio.create_task(self._watch_sessions(), name="dodolens-hub-watch")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _watch_sessions(self) -> None:
        """Tell waiting clients when their session vanished (TTL, or Redis lost its data) so none waits forever."""
        while True:
            await asyncio.sleep(self.check_interval_s)
            try:
                for sid in list(self.subscribers):
                    if await self.redis.exists(keys.meta(sid)) or await is_erased(self.redis, sid):
                        continue
                    last = await history_tail(self.redis, sid)
                    if last is not None and _closes(last):
                        continue
                    await publish(self.redis, self.stream, sid, EventType.ERROR, {
                        "code": ErrorCode.MEDIA_EXPIRED, "retryable": True, "final": True,
                        "message": "the session's data is gone (expired or lost in a storage outage); upload again",
                    })
            except RETRYABLE:
                continue

    async def _run(self) -> None:
        """Tail forever; on an outage wait and go on from the last id seen, so nothing is skipped."""
        last_id: str | None = None
        delay = 0.1
        while True:
            try:
                if last_id is None:
                    last_id = await last_global_id(self.redis)
                last_id, events = await tail(self.redis, last_id)
                delay = 0.1
            except RETRYABLE:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            for event in events:
                for queue in tuple(self.subscribers.get(event.session_id, ())):
                    if queue.full():
                        queue.get_nowait()
                    queue.put_nowait(event)


async def _until_disconnect(ws: WebSocket, queue: "asyncio.Queue[Event | None]") -> None:
    """Read (and ignore) client messages so a disconnect is noticed; then wake the sender."""
    try:
        while (await ws.receive()).get("type") != "websocket.disconnect":
            pass
    finally:
        queue.put_nowait(None)


async def _send_since(ws: WebSocket, redis: Redis, sid: str, after: str | None, live: Event | None) -> tuple[str | None, bool]:
    """Send the session's events after ``after`` from its own stream, oldest first.

    Publishers append to the session stream and then to ``dodo:events``, so two of them can reach
    the global stream in the opposite order; reading the session stream up to the live event sends
    every event exactly once, in order. Returns the last id sent and whether the socket was closed.
    """
    try:
        events = await history(redis, sid, after)
    except RETRYABLE:
        events = [live] if live else []
    for event in events:
        await ws.send_text(event.model_dump_json())
        after = event.id
        if _closes(event):
            await ws.close()
            return after, True
    return after, False


def _closes(event: Event) -> bool:
    if event.type == EventType.ERROR:
        return bool(event.data.get("final", True))
    return event.type in TERMINAL_TYPES


async def events_socket(ws: WebSocket) -> None:
    """Replay what the client missed after ``last_event_id``, then stream live until a terminal event."""
    sid = ws.path_params["sid"]
    config = ws.app.state.config
    hub: Hub = ws.app.state.hub
    await ws.accept()
    token = ws.query_params.get("token", "")
    last_id = ws.query_params.get("last_event_id") or None
    if ws.url.path.startswith("/session/") and not token:
        try:
            join = orjson.loads(await asyncio.wait_for(ws.receive_text(), 10))
            token, last_id = str(join.get("token", "")), join.get("last_event_id") or last_id
        except (asyncio.TimeoutError, orjson.JSONDecodeError, WebSocketDisconnect, AttributeError):
            token = ""
    problem = "unknown session" if not valid_session_id(sid) else check_token(config.stream.keyring, sid, token)
    if problem:
        await ws.send_json({"type": "error", "session_id": sid, "data": {"code": "bad_token", "message": problem, "retryable": False, "final": True}})
        await ws.close(code=4401)
        return
    queue = hub.subscribe(sid)
    try:
        last_id, closed = await _send_since(ws, hub.redis, sid, last_id, None)
        if closed:
            return
        drain = asyncio.create_task(_until_disconnect(ws, queue))
        try:
            while (event := await queue.get()) is not None:
                if last_id and stream_id_key(event.id) <= stream_id_key(last_id):
                    continue
                last_id, closed = await _send_since(ws, hub.redis, sid, last_id, event)
                if closed:
                    return
        finally:
            drain.cancel()
    except WebSocketDisconnect:
        return
    finally:
        hub.unsubscribe(sid, queue)


routes = [
    WebSocketRoute("/sessions/{sid}/events", events_socket),
    WebSocketRoute("/session/{sid}", events_socket),
]
