"""A local OpenAI API for tests, driven through the real ``openai`` client over real HTTP.

The chat endpoint answers like a model that follows the request: one catalogue item per image
(the id chosen from the image bytes among the schema's enum), a piano when the transcript talks
about one (excluded when the customer says it stays), an arcade cabinet outside the catalogue
when the transcript mentions one. It refuses what OpenAI refuses (non-strict schemas, images that
are not JPEG data URLs, a wrong key), answers in the real ``chat.completions`` format with
``usage``, and records every request so tests can check what was sent. Faults (status codes with
``Retry-After``, delays, malformed or refused answers) are queued per endpoint.

Also here: :class:`LocalServer`, which serves any ASGI app with uvicorn on a free local port.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import jsonschema
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.fake_speech import Refused, heard_seconds, too_large

IMAGE_TOKENS = 85
CHAT, TRANSCRIPTION = "chat", "transcription"
MODELS = frozenset({"gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-5.4-mini", "gpt-transcribe", "whisper-1",
                    "gpt-4o-transcribe", "gpt-4o-mini-transcribe"})
"""Models ``GET /v1/models/{id}`` knows; any other is a 404 ``model_not_found``."""


class LocalServer:
    """Serve an ASGI app with uvicorn on 127.0.0.1 in a background thread; ``with`` or ``async with``.

    ``app`` may be replaced while the server runs, so one server can serve a fresh fake per test
    (uvicorn needs ~0.2 s to stop; a module of tests need not pay it for every test).
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self._asgi, interface="asgi3", log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    async def _asgi(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    def start(self) -> LocalServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the local test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> LocalServer:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)


@dataclass
class Fault:
    """What to do instead of (or before) a normal answer."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    content: str | None = None
    refusal: str | None = None
    finish_reason: str = "stop"
    body: bytes | None = None
    code: str | None = None


@dataclass
class Received:
    endpoint: str
    at: float
    headers: dict[str, str]
    json: dict[str, Any] | None = None
    form: dict[str, Any] = field(default_factory=dict)


@dataclass
class Upload:
    filename: str | None
    content_type: str
    data: bytes


class FakeOpenAI:
    def __init__(self, *, api_key: str = "sk-test", transcript: str = "") -> None:
        self.api_key = api_key
        self.transcript = transcript
        self.requests: list[Received] = []
        self.answers: list[dict[str, Any]] = []
        self.heard: list[float] = []
        """Seconds of audio in each transcription request answered."""
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/audio/transcriptions", self._transcription, methods=["POST"]),
                Route("/v1/models/{model_id:path}", self._model_info, methods=["GET"]),
            ]
        )

    def inject(self, fault: Fault, *, times: int = 1, endpoint: str = CHAT) -> None:
        self._faults[endpoint].extend(fault for _ in range(times))

    def fail(
        self, status: int, *, times: int = 1, retry_after: str | None = None, code: str | None = None,
        endpoint: str = CHAT,
    ) -> None:
        headers = {} if retry_after is None else {"retry-after": retry_after}
        self.inject(Fault(status=status, headers=headers, code=code), times=times, endpoint=endpoint)

    def received(self, endpoint: str) -> list[Received]:
        return [r for r in self.requests if r.endpoint == endpoint]

    def _next_fault(self, endpoint: str) -> Fault | None:
        queue = self._faults[endpoint]
        return queue.popleft() if queue else None

    async def _chat(self, request: Request) -> Response:
        received = Received(CHAT, time.monotonic(), dict(request.headers), json=orjson.loads(await request.body()))
        self.requests.append(received)
        if denied := self._denied(request):
            return denied
        fault = self._next_fault(CHAT) or Fault()
        await _delay(request, fault.delay_s)
        if fault.status != 200:
            return _error(fault.status, f"injected {fault.status}", headers=fault.headers, code=fault.code)
        if fault.body is not None:
            return Response(fault.body, media_type="application/json")
        body = received.json or {}
        try:
            schema = _strict_schema(body)
            texts, jpegs = _user_parts(body)
        except ValueError as exc:
            return _error(400, str(exc), param="messages")
        answer = _answer(jpegs, " ".join(texts).lower(), schema)
        try:
            jsonschema.validate(answer, schema)
        except jsonschema.ValidationError as exc:
            return _error(400, f"the fake model's answer does not match the request schema: {exc.message}")
        content = fault.content if fault.content is not None else orjson.dumps(answer).decode()
        prompt_tokens = IMAGE_TOKENS * len(jpegs) + sum(len(t) for t in texts) // 4
        completion_tokens = max(1, len(content) // 4)
        completion = {
            "id": f"chatcmpl-fake{len(self.answers)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": f"{body.get('model')}-2024-07-18",
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": None if fault.refusal else content,
                        "refusal": fault.refusal,
                    },
                    "logprobs": None,
                    "finish_reason": fault.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        self.answers.append(completion)
        return JSONResponse(completion)

    async def _transcription(self, request: Request) -> Response:
        raw = await request.body()
        if refused := too_large(raw):
            self.requests.append(Received(TRANSCRIPTION, time.monotonic(), dict(request.headers)))
            return _error(refused.status, str(refused))
        form = _multipart(request.headers.get("content-type", ""), raw)
        self.requests.append(Received(TRANSCRIPTION, time.monotonic(), dict(request.headers), form=form))
        if denied := self._denied(request):
            return denied
        fault = self._next_fault(TRANSCRIPTION) or Fault()
        await _delay(request, fault.delay_s)
        if fault.status != 200:
            return _error(fault.status, f"injected {fault.status}", headers=fault.headers, code=fault.code)
        upload = form.get("file")
        if not isinstance(upload, Upload) or not upload.data or not form.get("model"):
            return _error(400, "'file' and 'model' are required", param="file")
        model = str(form["model"])
        try:
            self.heard.append(await asyncio.to_thread(heard_seconds, upload.filename, upload.data, model))
        except Refused as exc:
            return _error(exc.status, str(exc), param="file", code=exc.code)
        if model.startswith("whisper"):
            usage: dict[str, Any] = {"type": "duration", "seconds": max(1, len(upload.data) // 32_000)}
        else:
            output = max(1, len(self.transcript) // 4)
            usage = {"type": "tokens", "input_tokens": 50, "output_tokens": output, "total_tokens": 50 + output}
        answer = {"text": self.transcript, "usage": usage}
        self.answers.append(answer)
        return JSONResponse(answer)

    async def _model_info(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        name = request.path_params["model_id"]
        if name not in MODELS:
            return _error(404, f"The model `{name}` does not exist or you do not have access to it.",
                          code="model_not_found")
        return JSONResponse({"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "system"})

    def _denied(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.", code="invalid_api_key")
        return None


async def _delay(request: Request, seconds: float) -> None:
    """Stall like a slow model, but stop as soon as the client gives up, so the server can shut down."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not await request.is_disconnected():
        await asyncio.sleep(0.02)


def _error(
    status: int, message: str, *, headers: dict[str, str] | None = None, param: str | None = None,
    code: str | None = None,
) -> JSONResponse:
    kind = "rate_limit_exceeded" if status == 429 else "server_error" if status >= 500 else "invalid_request_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _strict_schema(body: dict[str, Any]) -> dict[str, Any]:
    """The request's JSON schema, refused (like OpenAI does) unless it follows strict structured outputs."""
    response_format = body.get("response_format") or {}
    if response_format.get("type") != "json_schema":
        raise ValueError("this fake only answers json_schema response formats")
    spec = response_format.get("json_schema") or {}
    if spec.get("strict") is not True:
        raise ValueError("the fake expects strict structured outputs")
    _check_strict(spec.get("schema") or {}, "schema")
    return spec["schema"]


def _check_strict(node: Any, path: str) -> None:
    if isinstance(node, dict):
        if node.get("type") == "object":
            properties = node.get("properties") or {}
            if node.get("additionalProperties") is not False:
                raise ValueError(f"Invalid schema: {path}: 'additionalProperties' is required to be false")
            if set(node.get("required") or ()) != set(properties):
                raise ValueError(f"Invalid schema: {path}: 'required' must list every property")
        for key, child in node.items():
            _check_strict(child, f"{path}.{key}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            _check_strict(child, f"{path}[{index}]")


def _user_parts(body: dict[str, Any]) -> tuple[list[str], list[bytes]]:
    """The texts and decoded JPEG images of the user messages (the system prompt is not the customer)."""
    texts: list[str] = []
    jpegs: list[bytes] = []
    for message in body.get("messages") or ():
        if message.get("role") != "user":
            continue
        content = message.get("content")
        for part in [{"type": "text", "text": content}] if isinstance(content, str) else content or ():
            if part.get("type") == "text":
                texts.append(part.get("text") or "")
            elif part.get("type") == "image_url":
                url = (part.get("image_url") or {}).get("url", "")
                prefix = "data:image/jpeg;base64,"
                if not url.startswith(prefix):
                    raise ValueError("Invalid image: expected a base64 JPEG data URL")
                data = base64.b64decode(url[len(prefix):], validate=True)
                if not data.startswith(b"\xff\xd8"):
                    raise ValueError("Invalid image: the data is not a JPEG")
                jpegs.append(data)
    return texts, jpegs


def catalogue_enum(schema: Any) -> list[str]:
    """The longest string enum in the schema: the catalogue ids the model must choose from."""
    found: list[list[str]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("enum"), list):
                found.append([v for v in node["enum"] if isinstance(v, str)])
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(schema)
    return max(found, key=len, default=[])


def item_for(jpeg: bytes, ids: list[str]) -> str:
    """The catalogue id the fake model 'sees' in an image: chosen from the image bytes."""
    return ids[int.from_bytes(hashlib.sha256(jpeg).digest()[:4], "big") % len(ids)]


def _answer(jpegs: list[bytes], spoken: str, schema: dict[str, Any]) -> dict[str, Any]:
    ids = catalogue_enum(schema)
    items = [
        {"catalogue_id": item_for(jpeg, ids), "quantity": 1 + index % 2, "confidence": 0.9, "frames": [index],
         "excluded": False}
        for index, jpeg in enumerate(jpegs)
    ]
    if "piano" in spoken:
        stays = any(word in spoken for word in ("stays", "reste"))
        piano = next(i for i in ids if i.startswith("piano"))
        items.append({"catalogue_id": piano, "quantity": 1, "confidence": 0.7, "frames": [], "excluded": stays})
    others = []
    if "arcade" in spoken:
        others.append({"label": "Borne d'arcade", "quantity": 1, "confidence": 0.6, "frames": [], "excluded": False,
                       "length_m": 0.8, "width_m": 0.7, "height_m": 1.8, "fragile": True})
    return {"rooms": [{"name": "Salon", "items": items, "other_items": others}]}


def _multipart(content_type: str, body: bytes) -> dict[str, Any]:
    """Fields of a multipart/form-data body (files as :class:`Upload`), parsed with the standard library."""
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    form: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            form[name] = Upload(part.get_filename(), part.get_content_type(), data)
        else:
            form[name] = data.decode()
    return form
