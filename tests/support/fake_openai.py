"""A local OpenAI API for tests, driven through the real ``openai`` client over real HTTP.

The chat endpoint answers like a model that follows the request: one catalogue item per image
(the id chosen from the image bytes among the schema's enum) or, given eyes (``sees``, e.g.
:func:`tour_sight`), one line per object it reads in the frames, with those frames and its room;
a piano when the transcript talks about one (excluded when the customer says it stays), an
arcade cabinet outside the catalogue when the transcript mentions one. It refuses what OpenAI refuses (non-strict schemas, images that
are not JPEG data URLs, a wrong key), answers in the real ``chat.completions`` format with
``usage``, and records every request so tests can check what was sent. Faults (status codes with
``Retry-After``, delays, malformed or refused answers) are queued per endpoint.

It is as strict as the documented API about models and budgets: only the models of :data:`MODELS`
exist, and one past its shutdown date answers 404 ``model_not_found`` like an unknown one
(``GET /v1/models/{id}`` too); images cost what the model's documented accounting says (tiles
for the gpt-4o / gpt-4.1 / gpt-5 class, 32-px patches times a multiplier for the mini and nano
patch models); a prompt past the context window, ``max_completion_tokens`` past the model's
output limit, ``max_tokens`` or ``reasoning_effort`` where the model refuses them are 400s; an
answer (reasoning included) longer than ``max_completion_tokens`` is cut there with
``finish_reason: "length"``; a transcription upload over 25 MiB is a 413.

Also here: :class:`LocalServer`, which serves any ASGI app with uvicorn on a free local port.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import math
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import jsonschema
import orjson
import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.fake_speech import Refused, heard_seconds, too_large
from tests.support.tour import Tour, read_codes

CHAT, TRANSCRIPTION = "chat", "transcription"
Sight = Callable[[bytes], list[tuple[str, int]]]
MAX_IMAGES_PER_REQUEST = 500
CHARS_PER_TOKEN = 4
REASONING_TOKENS = {"none": 0, "minimal": 16, "low": 64, "medium": 256, "high": 1024, "xhigh": 2048}


@dataclass(frozen=True)
class Model:
    """What the fake knows of a model: its snapshot, image accounting, limits and shutdown date."""

    snapshot: str
    kind: str = CHAT
    tiles: tuple[int, int] | None = None
    patch_multiplier: float | None = None
    reasoning: bool = False
    max_output: int = 16_384
    context: int = 128_000
    shutdown: date | None = None

    def image_tokens(self, width: int, height: int, detail: str) -> int:
        """The documented cost of one image (Images and vision guide, "Calculating costs")."""
        if self.patch_multiplier is not None:
            return math.ceil(_patches(width, height) * self.patch_multiplier)
        assert self.tiles is not None, "a chat model costs images by tiles or by patches"
        base, per_tile = self.tiles
        if detail == "low":
            return base
        scale = min(1.0, 2048 / max(width, height))
        width, height = width * scale, height * scale
        scale = min(1.0, 768 / min(width, height))
        width, height = width * scale, height * scale
        return base + per_tile * math.ceil(width / 512) * math.ceil(height / 512)


def _patches(width: int, height: int, cap: int = 1536) -> int:
    patches = math.ceil(width / 32) * math.ceil(height / 32)
    if patches <= cap:
        return patches
    shrink = math.sqrt(32 * 32 * cap / (width * height))
    width_s, height_s = width * shrink, height * shrink
    shrink *= min(math.floor(width_s / 32) / (width_s / 32), math.floor(height_s / 32) / (height_s / 32))
    return min(cap, math.ceil(width * shrink / 32) * math.ceil(height * shrink / 32))


_SHUT_2027_01 = date(2027, 1, 14)
_SHUT_2026_12 = date(2026, 12, 11)
_SHUT_2026_10 = date(2026, 10, 23)
_TRANSCRIBE_SHUT = date(2027, 2, 26)
MODELS: dict[str, Model] = {
    "gpt-4o-mini": Model("gpt-4o-mini-2024-07-18", tiles=(2833, 5667), shutdown=_SHUT_2027_01),
    "gpt-4o": Model("gpt-4o-2024-08-06", tiles=(85, 170), shutdown=_SHUT_2027_01),
    "gpt-4.1": Model("gpt-4.1-2025-04-14", tiles=(85, 170), max_output=32_768, context=1_047_576,
                     shutdown=_SHUT_2027_01),
    "gpt-4.1-mini": Model("gpt-4.1-mini-2025-04-14", patch_multiplier=1.62, max_output=32_768, context=1_047_576,
                          shutdown=_SHUT_2027_01),
    "gpt-4.1-nano": Model("gpt-4.1-nano-2025-04-14", patch_multiplier=2.46, max_output=32_768, context=1_047_576,
                          shutdown=_SHUT_2026_10),
    "o1-mini": Model("o1-mini-2024-09-12", tiles=(75, 150), reasoning=True, max_output=65_536,
                     shutdown=date(2025, 10, 27)),
    "gpt-5": Model("gpt-5-2025-08-07", tiles=(70, 140), reasoning=True, max_output=128_000, context=400_000,
                   shutdown=_SHUT_2026_12),
    "gpt-5-mini": Model("gpt-5-mini-2025-08-07", patch_multiplier=1.62, reasoning=True, max_output=128_000,
                        context=400_000, shutdown=_SHUT_2026_12),
    "gpt-5.4": Model("gpt-5.4-2026-03-05", patch_multiplier=1.2, reasoning=True, max_output=128_000,
                     context=1_050_000),
    "gpt-5.4-mini": Model("gpt-5.4-mini-2026-03-17", patch_multiplier=1.62, reasoning=True, max_output=128_000,
                          context=400_000),
    "gpt-5.5": Model("gpt-5.5-2026-04-23", patch_multiplier=1.2, reasoning=True, max_output=128_000,
                     context=1_050_000),
    **{name: Model(name, kind=TRANSCRIPTION, shutdown=_TRANSCRIBE_SHUT)
       for name in ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-4o-mini-transcribe-2025-12-15",
                    "gpt-4o-transcribe-diarize")},
    "gpt-transcribe": Model("gpt-transcribe", kind=TRANSCRIPTION),
}


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
    def __init__(self, *, api_key: str = "sk-test", transcript: str = "", models: dict[str, Model] | None = None,
                 today: date | None = None, sees: Sight | None = None,
                 hears: Callable[[bytes], str] | None = None) -> None:
        self.api_key = api_key
        self.transcript = transcript
        self.hears = hears
        """When set, what each transcription request's audio says (e.g. ``fake_speech.tone_words``)."""
        self.sees = sees
        self.models = dict(MODELS if models is None else models)
        self.today = today or datetime.now(timezone.utc).date()
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

    def model(self, name: str) -> Model | None:
        """The model ``name`` (an alias or a snapshot) names, unless unknown or shut down."""
        found = self.models.get(name) or next((m for m in self.models.values() if m.snapshot == name), None)
        if found is None or (found.shutdown is not None and found.shutdown <= self.today):
            return None
        return found

    async def _model_info(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        name = request.path_params["model_id"]
        if (found := self.model(name)) is None:
            return _model_not_found(name)
        return JSONResponse({"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "system",
                             "shutdown_date": found.shutdown.isoformat() if found.shutdown else None})

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
        model = self.model(str(body.get("model")))
        if model is None or model.kind != CHAT:
            return _model_not_found(str(body.get("model")))
        try:
            limit = _output_limit(body, model)
            schema = _strict_schema(body)
            texts, jpegs = _user_parts(body)
            text_tokens, image_tokens = _prompt_tokens(body, model)
        except ValueError as exc:
            return _error(400, str(exc), param="messages", code=getattr(exc, "code", None))
        answer = _answer(jpegs, " ".join(texts).lower(), schema, self.sees)
        try:
            jsonschema.validate(answer, schema)
        except jsonschema.ValidationError as exc:
            return _error(400, f"the fake model's answer does not match the request schema: {exc.message}")
        content = fault.content if fault.content is not None else orjson.dumps(answer).decode()
        reasoning = REASONING_TOKENS[body.get("reasoning_effort") or "medium"] if model.reasoning else 0
        finish_reason = fault.finish_reason
        if reasoning + _tokens(content) > limit:
            content, finish_reason = content[:max(0, limit - reasoning) * CHARS_PER_TOKEN], "length"
        completion_tokens = min(limit, reasoning + _tokens(content))
        prompt_tokens = text_tokens + image_tokens
        completion = {
            "id": f"chatcmpl-fake{len(self.answers)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model.snapshot,
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
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0, "image_tokens": image_tokens,
                                          "text_tokens": text_tokens},
                "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
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
        if (known := self.model(model)) is None or known.kind != TRANSCRIPTION:
            return _model_not_found(model)
        try:
            self.heard.append(await asyncio.to_thread(heard_seconds, upload.filename, upload.data, model))
        except Refused as exc:
            return _error(exc.status, str(exc), param="file", code=exc.code)
        if model.startswith("whisper"):
            usage: dict[str, Any] = {"type": "duration", "seconds": max(1, len(upload.data) // 32_000)}
        else:
            output = max(1, len(self.transcript) // 4)
            usage = {"type": "tokens", "input_tokens": 50, "output_tokens": output, "total_tokens": 50 + output}
        text = self.transcript if self.hears is None else await asyncio.to_thread(self.hears, upload.data)
        answer = {"text": text, "usage": usage}
        self.answers.append(answer)
        return JSONResponse(answer)

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


def _model_not_found(name: str) -> JSONResponse:
    return _error(404, f"The model `{name}` does not exist or you do not have access to it.", code="model_not_found")


class _Refused(ValueError):
    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


def _tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _output_limit(body: dict[str, Any], model: Model) -> int:
    """The request's completion token cap, refused where the API refuses it."""
    if model.reasoning and "max_tokens" in body:
        raise _Refused("Unsupported parameter: 'max_tokens' is not supported with this model. "
                       "Use 'max_completion_tokens' instead.", "unsupported_parameter")
    if not model.reasoning and "reasoning_effort" in body:
        raise _Refused("Unrecognized request argument supplied: reasoning_effort", "unsupported_parameter")
    if "reasoning_effort" in body and body["reasoning_effort"] not in REASONING_TOKENS:
        raise _Refused(f"Invalid value for 'reasoning_effort': {body['reasoning_effort']!r}", "invalid_value")
    limit = body.get("max_completion_tokens", body.get("max_tokens", model.max_output))
    if not isinstance(limit, int) or limit < 1:
        raise _Refused("max_completion_tokens must be a positive integer", "invalid_value")
    if limit > model.max_output:
        raise _Refused(f"max_tokens is too large: {limit}. This model supports at most {model.max_output} "
                       f"completion tokens, whereas you provided {limit}.", "invalid_value")
    return limit


def _prompt_tokens(body: dict[str, Any], model: Model) -> tuple[int, int]:
    """(text, image) tokens: every message's text by length, every image by the model's accounting;
    refused past the context window."""
    text = 0
    images = 0
    for message in body.get("messages") or ():
        content = message.get("content")
        for part in [{"type": "text", "text": content}] if isinstance(content, str) else content or ():
            if part.get("type") == "text":
                text += _tokens(part.get("text") or "")
            elif part.get("type") == "image_url":
                image = part.get("image_url") or {}
                data = base64.b64decode(image["url"].split(",", 1)[1])
                with Image.open(io.BytesIO(data)) as picture:
                    images += model.image_tokens(*picture.size, image.get("detail") or "auto")
    total = text + images
    if total > model.context:
        raise _Refused(f"This model's maximum context length is {model.context} tokens. However, your messages "
                       f"resulted in {total} tokens.", "context_length_exceeded")
    return text, images


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
    if len(jpegs) > MAX_IMAGES_PER_REQUEST:
        raise ValueError(f"Too many images: at most {MAX_IMAGES_PER_REQUEST} per request")
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


def sent_jpegs(body: dict[str, Any]) -> list[bytes]:
    """The JPEG frames of a recorded chat request, in the order they were sent."""
    _, jpegs = _user_parts(body)
    return jpegs


def object_item(number: int, ids: list[str]) -> str:
    """The catalogue id the fake model gives the object whose code is ``number`` (distinct for distinct codes)."""
    return ids[number % len(ids)]


def tour_sight(tour: Tour) -> Sight:
    """A fake model's eyes for a generated tour: the codes it reads in a frame, in the rooms the tour puts them."""
    rooms = {thing.id: thing.room for thing in tour.objects}
    return lambda jpeg: [(rooms[code], code) for code in sorted(read_codes(jpeg)) if code in rooms]


def _answer(jpegs: list[bytes], spoken: str, schema: dict[str, Any], sees: Sight | None) -> dict[str, Any]:
    """With eyes (``sees``), one line per object in the frames it is read in; without, one line per image."""
    ids = catalogue_enum(schema)
    rooms: dict[str, list[dict[str, Any]]] = {}
    if sees is None:
        rooms["Salon"] = [
            {"catalogue_id": item_for(jpeg, ids), "quantity": 1 + index % 2, "confidence": 0.9, "frames": [index],
             "excluded": False}
            for index, jpeg in enumerate(jpegs)
        ]
    else:
        seen: dict[str, dict[int, list[int]]] = {}
        for index, jpeg in enumerate(jpegs):
            for room, number in sees(jpeg):
                seen.setdefault(room, {}).setdefault(number, []).append(index)
        for room, objects in seen.items():
            rooms[room] = [{"catalogue_id": object_item(number, ids), "quantity": 1, "confidence": 0.9,
                            "frames": frames, "excluded": False} for number, frames in objects.items()]
    items = rooms.setdefault(next(iter(rooms), "Salon"), [])
    if "piano" in spoken:
        stays = any(word in spoken for word in ("stays", "reste"))
        piano = next(i for i in ids if i.startswith("piano"))
        items.append({"catalogue_id": piano, "quantity": 1, "confidence": 0.7, "frames": [], "excluded": stays})
    others = []
    if "arcade" in spoken:
        others.append({"label": "Borne d'arcade", "quantity": 1, "confidence": 0.6, "frames": [], "excluded": False,
                       "length_m": 0.8, "width_m": 0.7, "height_m": 1.8, "fragile": True})
    first = next(iter(rooms))
    return {"rooms": [{"name": name, "items": lines, "other_items": others if name == first else []}
                      for name, lines in rooms.items()]}


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
