"""The OpenAPI 3.1 contract at ``/openapi.json``, built from the pydantic models the routes answer with.

Every status a route can answer is listed, with the JSON error body for each failure, so a
contract tester can hold the gateway to it. The WebSocket and the page are described in prose.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.config import GatewayConfig
from gateway.tus import CHECKSUMS, EXTENSIONS, OFFSET_TYPE, TUS_VERSION
from schemas.api import (
    Accepted,
    ChunkStored,
    Complete,
    CreateSession,
    ErasureReceipt,
    ErrorResponse,
    SessionCreated,
    SessionStatus,
)
from schemas.result import Result

REF = "#/components/schemas/{model}"
REQUESTS: tuple[type[BaseModel], ...] = (CreateSession, Complete)
RESPONSES: tuple[type[BaseModel], ...] = (SessionCreated, ChunkStored, Accepted, SessionStatus, ErasureReceipt,
                                          ErrorResponse, Result)
ERRORS = {
    400: "Malformed request (bad header, index or body)",
    401: "Missing or expired session token",
    403: "Token not valid for this session, or operation not allowed",
    404: "No such session or upload (never created, expired or erased)",
    409: "Conflict with the session's state (missing chunks, wrong offset, not ready)",
    410: "The uploaded bytes expired before the upload finished",
    412: f"Tus-Resumable is not {TUS_VERSION}",
    413: "Too large (video, chunk or body)",
    415: "Wrong Content-Type",
    422: "Body does not validate, or the chunk count or size does not match the upload",
    423: "Another request is writing this tus upload",
    429: "Too many active sessions (overall or for this client); retry after Retry-After seconds",
    460: "Upload-Checksum does not match the body (nothing was stored)",
    503: "Storage unreachable; retry after Retry-After seconds",
}
SESSION_ID = {"name": "sid", "in": "path", "required": True, "description": "Session id",
              "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}
UPLOAD_ID = {"name": "upload", "in": "path", "required": True,
             "description": "The last segment of the upload's Location, `<session id>-<secret>`: it authorizes "
                            "by itself. A bare session id works too, with the session token as Bearer.",
             "schema": {"type": "string", "pattern": "^[0-9a-f]{32}(-[0-9a-f]{32})?$"}}
UPLOAD_SECURITY = [{}, {"bearer": []}]
TUS_RESUMABLE = {"name": "Tus-Resumable", "in": "header", "required": True,
                 "schema": {"type": "string", "const": TUS_VERSION}}
INTEGER_TEXT = {"type": "string", "pattern": "^[0-9]{1,19}$"}
BEARER = [{"bearer": []}]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int, body: bool = True) -> dict[str, Any]:
    """Error responses; HEAD answers carry no body, so theirs are documented without one."""
    out: dict[str, Any] = {}
    for code in codes:
        response = _json(_ref(ErrorResponse), ERRORS[code]) if body else {"description": ERRORS[code]}
        if code in (429, 503):
            response["headers"] = {"Retry-After": {"schema": INTEGER_TEXT, "required": True}}
        out[str(code)] = response
    return out


def _tus_headers(**extra: dict[str, Any]) -> dict[str, Any]:
    return {"Tus-Resumable": {"schema": {"type": "string", "const": TUS_VERSION}, "required": True}, **extra}


def _tus_errors(*codes: int, body: bool = True) -> dict[str, Any]:
    out = _errors(*codes, body=body)
    for response in out.values():
        response["headers"] = {**_tus_headers(), **response.get("headers", {})}
    return out


def components() -> dict[str, Any]:
    pairs = [(m, "validation") for m in REQUESTS] + [(m, "serialization") for m in RESPONSES]
    _keys, top = models_json_schema(pairs, ref_template=REF)
    return top.get("$defs", {})


API_KEY = {"name": "X-API-Key", "in": "header", "required": False, "schema": {"type": "string"},
           "description": "Needed to create a session when the server is configured with API keys"}


def session_paths() -> dict[str, Any]:
    created = _json(_ref(SessionCreated), "Session created; send its chunks with the token")
    return {
        "/sessions": {"post": {
            "operationId": "createSession", "summary": "Create an upload session",
            "description": "When the server has API keys (DODOLENS_API_KEYS), send one in X-API-Key.",
            "parameters": [API_KEY],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(CreateSession)}}},
            "responses": {"201": created, **_errors(400, 401, 403, 413, 415, 422, 429, 503)},
        }},
        "/sessions/{sid}": {
            "parameters": [SESSION_ID],
            "get": {"operationId": "getSession", "summary": "State and upload progress (missing_chunks to resume)",
                    "security": BEARER,
                    "responses": {"200": _json(_ref(SessionStatus), "Session state"), **_errors(401, 403, 404, 503)}},
            "delete": {"operationId": "eraseSession", "summary": "Erase everything of the session (GDPR art. 17)",
                       "security": BEARER,
                       "responses": {"200": _json(_ref(ErasureReceipt), "Erasure receipt"),
                                     **_errors(401, 403, 404, 503)}},
        },
        "/sessions/{sid}/chunks/{index}": {"put": {
            "operationId": "putChunk", "summary": "Upload chunk `index` (idempotent, any order, in parallel)",
            "description": "An MP4 whose index (`moov`) comes after its media (`mdat`), as phones write it, is "
                           "decoded while it arrives when the chunks from the end of its first `mdat` to the end "
                           "of the file are stored before chunk 0 is sent; otherwise it is decoded after `complete`.",
            "security": BEARER,
            "parameters": [SESSION_ID, {"name": "index", "in": "path", "required": True,
                                        "schema": {"type": "integer", "minimum": 0}}],
            "requestBody": {"required": True, "content": {"application/octet-stream": {
                "schema": {"type": "string", "format": "binary"}}}},
            "responses": {"200": _json(_ref(ChunkStored), "Chunk stored (or already stored)"),
                          **_errors(400, 401, 403, 404, 409, 410, 413, 503)},
        }},
        "/sessions/{sid}/complete": {"post": {
            "operationId": "completeSession", "summary": "Declare the upload complete; queues the decoding",
            "security": BEARER, "parameters": [SESSION_ID],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(Complete)}}},
            "responses": {"202": _json(_ref(Accepted), "Queued (or already past uploading)"),
                          **_errors(400, 401, 403, 404, 409, 410, 413, 415, 422, 503)},
        }},
        "/sessions/{sid}/result": {"get": {
            "operationId": "getResult", "summary": "The inventory once analysis_complete was sent",
            "security": BEARER, "parameters": [SESSION_ID],
            "responses": {"200": _json(_ref(Result), "The structured result (< 5 KB)"),
                          **_errors(401, 403, 404, 409, 503)},
        }},
    }


def tus_paths() -> dict[str, Any]:
    options = {"summary": "tus capabilities", "responses": {"204": {"description": "Capabilities", "headers": {
        "Tus-Version": {"schema": {"type": "string"}, "required": True},
        "Tus-Extension": {"schema": {"type": "string"}, "required": True},
        "Tus-Max-Size": {"schema": INTEGER_TEXT, "required": True},
        "Tus-Checksum-Algorithm": {"schema": {"type": "string"}, "required": True},
    }}}}
    offset = {"schema": INTEGER_TEXT, "required": True}
    expires = {"schema": {"type": "string"}, "description": "HTTP date after which an unfinished upload is gone"}
    body = {"content": {OFFSET_TYPE: {"schema": {"type": "string", "format": "binary"}}}}
    checksum = {"name": "Upload-Checksum", "in": "header", "required": False,
                "description": f"'<algorithm> <base64 digest>' of the body; algorithms: {', '.join(CHECKSUMS)}",
                "schema": {"type": "string"}}
    return {
        "/files/": {
            "options": {**options, "operationId": "tusOptions"},
            "post": {
                "operationId": "tusCreate",
                "summary": "Create a tus upload (a session); may carry the first bytes (creation-with-upload)",
                "description": "`Location` is the upload URL, which is its own authorization (keep it secret); "
                               "the session id and token (for the WebSocket and the session API) come back in "
                               "`Upload-Session-Id` and `Upload-Token`. `Upload-Concat: partial` creates a partial "
                               "upload; `Upload-Concat: final;<url> <url>` concatenates finished partial uploads "
                               "into a session (bare `/files/<session id>` URLs need `Bearer <t1>,<t2>,...`).",
                "security": [{}, {"bearer": []}],
                "parameters": [
                    TUS_RESUMABLE,
                    {"name": "Upload-Length", "in": "header", "required": False, "schema": INTEGER_TEXT,
                     "description": "Size in bytes; required unless Upload-Concat is final"},
                    {"name": "Upload-Metadata", "in": "header", "required": False, "schema": {"type": "string"}},
                    {"name": "Upload-Concat", "in": "header", "required": False, "schema": {"type": "string"}},
                    checksum,
                    API_KEY,
                ],
                "requestBody": {"required": False, **body},
                "responses": {
                    "201": {"description": "Upload created", "headers": _tus_headers(
                        Location={"schema": {"type": "string"}, "required": True},
                        **{"Upload-Token": {"schema": {"type": "string"}, "required": True},
                           "Upload-Session-Id": {"schema": {"type": "string"}, "required": True},
                           "Upload-Offset": offset, "Upload-Expires": expires})},
                    **_tus_errors(400, 401, 403, 404, 410, 412, 413, 415, 423, 429, 460, 503),
                },
            },
        },
        "/files/{upload}": {
            "parameters": [UPLOAD_ID],
            "options": {**options, "operationId": "tusUploadOptions",
                        "responses": {**options["responses"], **_tus_errors(404)}},
            "head": {
                "operationId": "tusOffset", "summary": "Where to resume: Upload-Offset of the upload",
                "security": UPLOAD_SECURITY, "parameters": [TUS_RESUMABLE],
                "responses": {
                    "200": {"description": "Upload state", "headers": _tus_headers(
                        **{"Upload-Offset": offset, "Upload-Length": {"schema": INTEGER_TEXT, "required": True},
                           "Upload-Expires": expires, "Upload-Metadata": {"schema": {"type": "string"}},
                           "Upload-Concat": {"schema": {"type": "string"}}})},
                    **_tus_errors(401, 403, 404, 412, 503, body=False),
                },
            },
            "patch": {
                "operationId": "tusPatch", "summary": "Append bytes at Upload-Offset",
                "security": UPLOAD_SECURITY,
                "parameters": [TUS_RESUMABLE, {"name": "Upload-Offset", "in": "header", "required": True,
                                               "schema": INTEGER_TEXT}, checksum],
                "requestBody": {"required": True, **body},
                "responses": {
                    "204": {"description": "Bytes stored", "headers": _tus_headers(
                        **{"Upload-Offset": offset, "Upload-Expires": expires})},
                    **_tus_errors(400, 401, 403, 404, 409, 410, 412, 413, 415, 422, 423, 460, 503),
                },
            },
            "delete": {
                "operationId": "tusTerminate", "summary": "Terminate the upload: erases the session",
                "security": UPLOAD_SECURITY, "parameters": [TUS_RESUMABLE],
                "responses": {"204": {"description": "Erased", "headers": _tus_headers()},
                              **_tus_errors(401, 403, 404, 412, 503)},
            },
        },
    }


def health_paths() -> dict[str, Any]:
    label = {"type": "object", "required": ["fr", "en"], "properties": {"fr": {"type": "string"},
                                                                        "en": {"type": "string"}}}
    names = {"type": "object", "required": ["version", "items"], "properties": {
        "version": {"type": "string"}, "items": {"type": "object", "additionalProperties": label}}}
    status = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"},
                                                                       "redis": {"type": "string"}}}
    return {
        "/healthz": {"get": {"operationId": "healthz", "summary": "The process is up",
                             "responses": {"200": _json(status, "Alive")}}},
        "/readyz": {"get": {"operationId": "readyz", "summary": "Redis is reachable",
                            "responses": {"200": _json(status, "Ready"), "503": {
                                **_json(status, "Redis unreachable"),
                                "headers": {"Retry-After": {"schema": INTEGER_TEXT, "required": True}}}}}},
        "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document",
                                  "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")}}},
        "/catalogue.json": {"get": {"operationId": "catalogue", "summary": "Item names by catalogue id (fr, en)",
                                    "responses": {"200": _json(names, "The movers' catalogue names")}}},
        "/": {"get": {"operationId": "page", "summary": "The upload page",
                      "responses": {"200": {"description": "HTML", "content": {"text/html": {
                          "schema": {"type": "string"}}}}}}},
    }


def _admin_errors() -> dict[str, Any]:
    described = {
        401: "No admin token (send 'Authorization: Bearer <DODOLENS_ADMIN_TOKEN>' or sign in at /admin), or a wrong one",
        403: "The dashboard is off (no DODOLENS_ADMIN_TOKEN), or a cross-site request",
        429: "Too many wrong admin tokens from this address (or overall); retry after Retry-After seconds",
        503: ERRORS[503],
    }
    out = {str(code): _json(_ref(ErrorResponse), text) for code, text in described.items()}
    for code in ("429", "503"):
        out[code]["headers"] = {"Retry-After": {"schema": INTEGER_TEXT, "required": True}}
    return out


def admin_paths() -> dict[str, Any]:
    count = {"type": "integer", "minimum": 0}
    size = {"type": ["integer", "null"], "minimum": 0}
    process = {"type": "object", "required": ["role", "name", "pid", "objects_collected", "heap_trimmed", "rss_before",
                                              "rss_after", "freed_bytes"], "properties": {
        "role": {"enum": ["gateway", "worker"]}, "name": {"type": "string"}, "pid": count, "objects_collected": count,
        "heap_trimmed": {"type": "boolean"}, "rss_before": size, "rss_after": size, "freed_bytes": count}}
    sweep_fields = ("orphan_keys", "orphan_bytes", "expired_sessions", "pressure_failed", "consumers_forgotten")
    sweep = {"type": ["object", "null"], "required": list(sweep_fields),
             "properties": {name: count for name in sweep_fields}}
    freed_fields = ("keys", "key_bytes", "redis_bytes", "process_bytes")
    report = {"type": "object", "required": ["freed", "sweep", "workers_answered", "processes", "redis", "note"],
              "properties": {
                  "freed": {"type": "object", "required": list(freed_fields),
                            "properties": {name: count for name in freed_fields}},
                  "sweep": sweep, "workers_answered": count, "processes": {"type": "array", "items": process},
                  "redis": {"type": "object", "required": ["used_before", "used_after"],
                            "properties": {"used_before": count, "used_after": count}},
                  "note": {"type": ["string", "null"]}}}
    overview = {"type": "object", "required": ["at", "active_sessions", "groups", "counters", "outcomes", "alerts",
                                               "timeline"]}
    return {
        "/admin/api/overview": {"get": {
            "operationId": "adminOverview", "security": [{"admin": []}],
            "summary": "What the dashboard shows: live figures, counters, outcomes, alerts, the last hour per minute",
            "responses": {"200": _json(overview, "The figures (counts and pseudonyms only)"), **_admin_errors()}}},
        "/admin/api/gc": {"post": {
            "operationId": "adminGc", "security": [{"admin": []}],
            "summary": "Run the cleanup sweep now and collect the gateway's and every worker's memory",
            "description": "The design note's `POST /api/admin/gc`. Workers are asked over `dodo:control`; the first "
                           "to claim it sweeps (orphaned media keys, expired sessions), each collects its garbage and "
                           "gives freed heap back to the system. Waits up to 5 s for the workers; `note` says when none "
                           "answered (then nothing was swept).",
            "responses": {"200": _json(report, "What was freed: keys and bytes"), **_admin_errors()}}},
    }


def build_spec(config: GatewayConfig) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "DodoLens gateway",
            "version": "1",
            "description": "Phone video in, moving inventory out; no media kept. Errors are always "
                           '`{"error": {"code", "message"}}`. Events: WebSocket `/sessions/{sid}/events?token=...'
                           "&last_event_id=...` (not expressible in OpenAPI). tus "
                           f"{TUS_VERSION} at `/files/` with {EXTENSIONS}.",
        },
        "paths": {**session_paths(), **tus_paths(), **health_paths(), **admin_paths()},
        "components": {
            "schemas": components(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "The session token from creation"},
                                "admin": {"type": "http", "scheme": "bearer",
                                          "description": "DODOLENS_ADMIN_TOKEN (browsers: the cookie the sign-in "
                                                         "form at /admin/sign-in sets)"}},
        },
        "x-limits": {"max_size": config.stream.max_size, "chunk_size": config.stream.chunk_size,
                     "max_json_bytes": config.max_json_bytes},
    }


async def openapi(request: Request) -> JSONResponse:
    app = request.app
    if getattr(app.state, "openapi", None) is None:
        app.state.openapi = build_spec(app.state.config)
    return JSONResponse(app.state.openapi)


routes = [Route("/openapi.json", openapi, methods=["GET"])]
