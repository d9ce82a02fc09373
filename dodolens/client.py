"""The HTTP + WebSocket client of the session API: parallel chunk upload, resume, live events."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from collections.abc import Callable
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from dodolens.outcome import EventCallback, Outcome
from processors.video import HEAD_BYTES, leading_chunks
from streams.threads import in_thread

ProgressCallback = Callable[[int, int], None]
ChunkCallback = Callable[[int, bool], None]
"""Called once per acknowledged chunk: (index, newly stored — False when the server already had it)."""
TERMINAL = {"analysis_complete", "session_erased"}
RETRY_STATUS = {429, 500, 502, 503, 504}


class UploadError(RuntimeError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


def _error_of(response: httpx.Response) -> UploadError:
    try:
        body = response.json()["error"]
        return UploadError(body.get("code", str(response.status_code)), body.get("message", ""))
    except (ValueError, KeyError, TypeError):
        return UploadError(str(response.status_code), response.text[:200])


async def request(client: httpx.AsyncClient, method: str, url: str, *, retries: int = 6, **kwargs: Any) -> httpx.Response:
    """One API call with retries on 429/5xx/transport errors, honouring Retry-After, with jittered backoff."""
    delay = 0.2
    for attempt in range(retries + 1):
        try:
            response = await client.request(method, url, **kwargs)
        except httpx.TransportError:
            if attempt == retries:
                raise
        else:
            if response.status_code not in RETRY_STATUS or attempt == retries:
                return response
            header = response.headers.get("retry-after", "")
            if header.isdigit():
                delay = float(header)
        await asyncio.sleep(delay * (0.75 + random.random() / 2))
        delay = min(delay * 2, 10.0)
    raise AssertionError("unreachable")


async def create(client: httpx.AsyncClient, size: int, content_type: str) -> dict[str, Any]:
    response = await request(client, "POST", "/sessions", json={"size": size, "content_type": content_type})
    if response.status_code != 201:
        raise _error_of(response)
    return response.json()


async def session_status(client: httpx.AsyncClient, sid: str, token: str) -> dict[str, Any]:
    """``GET /sessions/{sid}``: state, sizes and ``missing_chunks`` (what a resume must send)."""
    response = await request(client, "GET", f"/sessions/{sid}", headers={"Authorization": f"Bearer {token}"})
    if response.status_code != 200:
        raise _error_of(response)
    return response.json()


async def send_chunks(client: httpx.AsyncClient, sid: str, token: str, data: memoryview, chunk_size: int,
                      indexes: list[int], parallel: int = 3, on_progress: ProgressCallback | None = None,
                      on_chunk: ChunkCallback | None = None, *, index_first: bool = True) -> None:
    """PUT the given chunks, ``parallel`` at a time; each retried on its own.

    ``data`` is anything sliceable with a length: a memoryview, or a file read chunk by chunk.
    The chunks holding an MP4's index at the end go first, and are stored before any other is sent:
    the server can then decode the video while the rest arrives (``processors.video.sniff.leading_chunks``).
    ``index_first=False`` sends them in plain order, as a client unaware of this would.
    """
    slots = asyncio.Semaphore(parallel)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"}

    async def put(i: int) -> None:
        async with slots:
            body = bytes(data[i * chunk_size : (i + 1) * chunk_size])
            response = await request(client, "PUT", f"/sessions/{sid}/chunks/{i}", content=body, headers=headers)
            if response.status_code != 200:
                raise _error_of(response)
            if on_chunk:
                on_chunk(i, bool(response.json().get("stored", True)))
            if on_progress:
                on_progress(len(body), len(data))

    lead = set(leading_chunks(data[:HEAD_BYTES], len(data), chunk_size)) if index_first and len(indexes) > 1 else set()
    await asyncio.gather(*(put(i) for i in indexes if i in lead))
    await asyncio.gather(*(put(i) for i in indexes if i not in lead))


async def complete(client: httpx.AsyncClient, sid: str, token: str, data: memoryview, chunk_size: int,
                   sha256: str | None, parallel: int = 3, on_progress: ProgressCallback | None = None,
                   on_chunk: ChunkCallback | None = None) -> httpx.Response:
    """``POST complete``; when the server answers 409 with missing chunks, send those and complete again."""
    count = max(1, -(-len(data) // chunk_size))
    headers = {"Authorization": f"Bearer {token}"}
    body: dict[str, Any] = {"chunks": count, **({"sha256": sha256} if sha256 else {})}
    for _ in range(3):
        response = await request(client, "POST", f"/sessions/{sid}/complete", json=body, headers=headers)
        if response.status_code != 409 or "missing" not in response.json()["error"]:
            return response
        missing = response.json()["error"]["missing"]
        await send_chunks(client, sid, token, data, chunk_size, missing, parallel, on_progress, on_chunk)
    return response


async def follow_events(base_url: str, sid: str, token: str, on_event: EventCallback | None, outcome: Outcome,
                        ready: asyncio.Event) -> None:
    """Receive events until a terminal one; reconnect with ``last_event_id`` if the socket drops."""
    ws_url = base_url.replace("http", "ws", 1) + f"/sessions/{sid}/events?token={token}"
    last_id = ""
    for _attempt in range(20):
        url = ws_url + (f"&last_event_id={last_id}" if last_id else "")
        try:
            async with ws_connect(url, max_size=2**22, open_timeout=10) as ws:
                ready.set()
                async for message in ws:
                    event = orjson.loads(message)
                    last_id = event.get("id", last_id)
                    if await outcome.take(event, on_event):
                        return
        except (ConnectionClosed, OSError, asyncio.TimeoutError):
            pass
        ready.set()
        await asyncio.sleep(0.5)
    raise UploadError("events_lost", "could not keep a WebSocket to the gateway")


async def analyze_bytes(base_url: str, data: bytes | memoryview, *, content_type: str = "video/mp4",
                        parallel: int = 3, on_event: EventCallback | None = None,
                        on_progress: ProgressCallback | None = None, timeout_s: float = 900.0,
                        index_first: bool = True) -> Outcome:
    """Create a session, upload ``data`` in parallel chunks, complete it and wait for the outcome.

    The SHA-256 is computed while the chunks go out (hashlib leaves the GIL), not after the last one.
    """
    view = memoryview(data)
    async with httpx.AsyncClient(base_url=base_url, timeout=60.0) as client:
        session = await create(client, len(view), content_type)
        sid, token, chunk_size = session["session_id"], session["token"], session["chunk_size"]
        outcome = Outcome(sid, token)
        ready = asyncio.Event()
        follower = asyncio.create_task(follow_events(base_url, sid, token, on_event, outcome, ready))
        digest = asyncio.create_task(in_thread(lambda: hashlib.sha256(view).hexdigest()))
        try:
            await asyncio.wait_for(ready.wait(), 10)
            count = max(1, -(-len(view) // chunk_size))
            await send_chunks(client, sid, token, view, chunk_size, list(range(count)), parallel, on_progress,
                              index_first=index_first)
            response = await complete(client, sid, token, view, chunk_size, await digest, parallel, on_progress)
            if response.status_code != 202:
                error = _error_of(response)
                outcome.error = {"code": error.code, "message": error.message}
                return outcome
            await asyncio.wait_for(asyncio.shield(follower), timeout_s)
        finally:
            await asyncio.gather(digest, return_exceptions=True)
            view.release()
            if not follower.done():
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError, UploadError):
                    await follower
        return outcome
