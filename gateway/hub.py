"""WebSocket fan-out: one tail of ``dodo:events`` per gateway, dispatched to that session's sockets."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import defaultdict
from collections.abc import Awaitable, Callable

import orjson
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.auth import check_token, valid_session_id
from schemas.events import TERMINAL_TYPES, ErrorData, Event, EventType
from streams.connection import RETRYABLE, Redis
from schemas.errors import ErrorCode
from streams import keys
from streams.config import StreamConfig
from streams.events import histories, history, history_tail, last_global_id, publish, stream_id_key, tail
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
        self.cursors: dict[str, str | None] = {}
        """Per watched session, the last event id dispatched: live events are read from the session's
        own stream after it, so two publishers reaching ``dodo:events`` in swapped order cannot
        reorder or drop anything."""
        self.listeners: list[Callable[[list[Event]], Awaitable[None]]] = []
        """Also fed every batch of events read (the gateway's metrics): one tail per gateway."""
        self._tasks: list[asyncio.Task[None]] = []

    async def subscribe(self, sid: str) -> asyncio.Queue[Event | None]:
        """Register before the caller reads the backlog, so nothing falls between backlog and live."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue(QUEUE_LIMIT)
        if sid not in self.cursors:
            self.cursors[sid] = None
            try:
                latest = await history_tail(self.redis, sid)
            except RETRYABLE:
                latest = None
            if latest is not None and self.cursors.get(sid) is None:
                self.cursors[sid] = latest.id
        self.subscribers[sid].add(queue)
        return queue

    def unsubscribe(self, sid: str, queue: asyncio.Queue[Event | None]) -> None:
        self.subscribers[sid].discard(queue)
        if not self.subscribers[sid]:
            del self.subscribers[sid]
            self.cursors.pop(sid, None)

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
                    if await self.redis.exists(keys.meta(sid)) or await is_erased(self.redis, self.stream, sid):
                        continue
                    last = await history_tail(self.redis, sid)
                    if last is not None and _closes(last):
                        continue
                    await publish(self.redis, self.stream, sid, ErrorData(
                        code=ErrorCode.MEDIA_EXPIRED, retryable=True, final=True,
                        message="the session's data is gone (expired or lost in a storage outage); upload again",
                    ))
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
            for sid, session_events in (await self._in_session_order(events)).items():
                for event in session_events:
                    for queue in tuple(self.subscribers.get(sid, ())):
                        _offer(queue, event)
            for listener in self.listeners:
                try:
                    await listener(events)
                except Exception:  # noqa: BLE001 - a listener's bug must not stop the fan-out
                    log.exception("an event listener failed")

    async def _in_session_order(self, events: list[Event]) -> dict[str, list[Event]]:
        """The watched sessions' new events, read from their own streams in one round trip."""
        live: dict[str, list[Event]] = defaultdict(list)
        for event in events:
            if event.session_id in self.subscribers:
                live[event.session_id].append(event)
        if not live:
            return {}
        after = {sid: self.cursors.get(sid) or _before(found[0].id) for sid, found in live.items()}
        try:
            ordered = await histories(self.redis, after)
        except RETRYABLE:
            ordered = dict(live)
        for sid, found in ordered.items():
            if found and sid in self.cursors:
                self.cursors[sid] = found[-1].id
        return ordered


def _offer(queue: "asyncio.Queue[Event | None]", item: Event | None) -> None:
    """Queue without ever blocking the hub: a client too slow to keep up loses its oldest event
    (it can resume from ``last_event_id``), and the disconnect marker always gets in."""
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(item)


async def _until_disconnect(ws: WebSocket, queue: "asyncio.Queue[Event | None]") -> None:
    """Read (and ignore) client messages so a disconnect is noticed; then wake the sender."""
    try:
        while (await ws.receive()).get("type") != "websocket.disconnect":
            pass
    finally:
        _offer(queue, None)


def _before(entry_id: str) -> str:
    """The stream id just below ``entry_id``: an exclusive lower bound that includes it."""
    ms, seq = stream_id_key(entry_id)
    return f"{ms}-{seq - 1}" if seq else f"{ms - 1}-{2**64 - 1}"


async def _send(ws: WebSocket, events: list[Event], after: str | None) -> tuple[str | None, bool]:
    """Send events newer than ``after``; returns the last id sent and whether the socket was closed."""
    for event in events:
        if after and stream_id_key(event.id) <= stream_id_key(after):
            continue
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


EVENT_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")


async def _join_frame(ws: WebSocket) -> dict | None:
    """The join frame of ``/session/{sid}``: a JSON object in a text frame, within 10 s; None otherwise."""
    try:
        message = await asyncio.wait_for(ws.receive(), 10)
        join = orjson.loads(message["text"]) if message.get("text") is not None else None
    except (asyncio.TimeoutError, orjson.JSONDecodeError, WebSocketDisconnect, RuntimeError):
        return None
    return join if isinstance(join, dict) else None


async def _refuse(ws: WebSocket, sid: str, code: str, message: str, *, close: int = 4400) -> None:
    """An ``error`` event first, then the close: a client always learns why."""
    try:
        await ws.send_json({"type": "error", "session_id": sid,
                            "data": {"code": code, "message": message, "retryable": False, "final": True}})
        await ws.close(code=close)
    except (WebSocketDisconnect, RuntimeError):
        pass


async def events_socket(ws: WebSocket) -> None:
    """Replay what the client missed after ``last_event_id``, then stream live until a terminal event."""
    sid = ws.path_params["sid"]
    config = ws.app.state.config
    hub: Hub = ws.app.state.hub
    await ws.accept()
    token = ws.query_params.get("token", "")
    last_id = ws.query_params.get("last_event_id") or None
    if ws.url.path.startswith("/session/") and not token:
        join = await _join_frame(ws)
        if join is None:
            await _refuse(ws, sid, "bad_join", "the first frame must be JSON text: {\"token\": ..., \"last_event_id\"?: ...}")
            return
        token, last_id = str(join.get("token", "")), join.get("last_event_id") or last_id
    problem = "unknown session" if not valid_session_id(sid) else check_token(config.stream.keyring, sid, token)
    if problem:
        await _refuse(ws, sid, "bad_token", problem, close=4401)
        return
    if last_id is not None and not (isinstance(last_id, str) and EVENT_ID.fullmatch(last_id)):
        await _refuse(ws, sid, "bad_last_event_id", "last_event_id is an event id as received, like '1700000000000-0'")
        return
    queue = await hub.subscribe(sid)
    try:
        try:
            backlog = await history(hub.redis, sid, last_id)
        except RETRYABLE:
            backlog = []
        last_id, closed = await _send(ws, backlog, last_id)
        if closed:
            return
        drain = asyncio.create_task(_until_disconnect(ws, queue))
        try:
            while (event := await queue.get()) is not None:
                last_id, closed = await _send(ws, [event], last_id)
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
