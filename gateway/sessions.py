"""The session API: create, upload chunks, complete, status, result, erase."""

from __future__ import annotations

import re
from typing import TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.admission import admit_request
from gateway.auth import check_token, valid_session_id
from gateway.config import GatewayConfig
from gateway.errors import ApiError
from gateway.lifecycle import begin_upload, check_size, complete_upload, erase_upload, store_chunk
from schemas.api import Accepted, ChunkStored, Complete, CreateSession, SessionCreated, SessionStatus
from schemas.lifecycle import UPLOADABLE
from schemas.result import decode_result
from streams.admission import Heartbeat
from streams.chunks import KIND, SealedBuffers
from streams.connection import Redis
from streams.crypto import sealed_size
from streams.results import kept_result
from streams.sessions import (
    State,
    chunk_map,
    expected_chunks,
    expected_length,
    get_fields,
    get_meta,
    missing_chunks,
)

M = TypeVar("M", bound=BaseModel)
CHUNK_INDEX = re.compile(r"[0-9]{1,9}")


def _cfg(request: Request) -> GatewayConfig:
    return request.app.state.config


def _redis(request: Request) -> Redis:
    return request.app.state.redis


def json_response(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json(), status_code=status, media_type="application/json")


async def small_body(request: Request, media_type: str, limit: int, what: str) -> bytes:
    """The whole body of a small request, read no further than ``limit`` bytes; 415 or 413 otherwise."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != media_type:
        raise ApiError(415, "unsupported_media_type", f"send the body as {media_type}")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise ApiError(413, "body_too_large", f"{what} are limited to {limit} bytes")
    return bytes(body)


async def read_json(request: Request, model: type[M]) -> M:
    """Parse a bounded JSON body into ``model``; every way it can be wrong is a 4xx."""
    body = await small_body(request, "application/json", _cfg(request).max_json_bytes, "JSON bodies")
    try:
        return model.model_validate(orjson.loads(body or b"{}"))
    except orjson.JSONDecodeError:
        raise ApiError(400, "malformed_json", "the body is not valid JSON") from None
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()]
        raise ApiError(422, "invalid_body", "; ".join(problems)) from None


def session_id(request: Request) -> str:
    sid = request.path_params["sid"]
    if not valid_session_id(sid):
        raise ApiError(404, "unknown_session", "no such session")
    return sid


def authorize(request: Request, sid: str, *, allow_expired: bool = False) -> None:
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else request.query_params.get("token", "")
    if not token:
        raise ApiError(401, "missing_token", "send the session token as 'Authorization: Bearer <token>'")
    problem = check_token(_cfg(request).stream.keyring, sid, token, allow_expired=allow_expired)
    if problem:
        raise ApiError(403 if problem != "token expired" else 401, "bad_token", problem)


async def session_meta(request: Request, sid: str, *fields: str) -> dict[str, str]:
    """The session's meta hash, or only ``fields`` of it (and its state) when named."""
    meta = await (get_fields(_redis(request), sid, *fields) if fields else get_meta(_redis(request), sid))
    if meta is None:
        raise ApiError(404, "unknown_session", "no such session (expired, erased or never created)")
    return meta


async def create(request: Request) -> Response:
    cfg, r = _cfg(request), _redis(request)
    body = await read_json(request, CreateSession)
    check_size(cfg, body.size)
    admitted = await admit_request(request)
    sid, token, expires = await begin_upload(r, cfg, admitted, body.size, body.content_type or "application/octet-stream")
    count = expected_chunks(body.size, cfg.stream.chunk_size)
    out = SessionCreated(session_id=sid, token=token, chunk_size=cfg.stream.chunk_size, max_chunks=count, expires_at=expires)
    return json_response(out, 201)


async def put_chunk(request: Request) -> Response:
    cfg, r = _cfg(request), _redis(request)
    sid = session_id(request)
    authorize(request, sid)
    raw_index = request.path_params["index"]
    if not CHUNK_INDEX.fullmatch(raw_index):
        raise ApiError(400, "bad_index", "the chunk index must be a non-negative integer in ASCII digits")
    index = int(raw_index)
    meta = await session_meta(request, sid, "size", "chunk_size", "protocol")
    size, chunk_size = int(meta["size"]), int(meta["chunk_size"])
    count = expected_chunks(size, chunk_size)
    if not 0 <= index < count:
        raise ApiError(400, "index_out_of_range", f"chunk index must be in [0, {count - 1}]")
    if meta["state"] not in UPLOADABLE:
        raise ApiError(409, "upload_closed", f"the session is {meta['state']}; it takes no more chunks")
    if meta.get("protocol", "").startswith("tus"):
        raise ApiError(409, "tus_upload", "this session is a tus upload; send its bytes with PATCH /files/{id}")
    want = expected_length(size, chunk_size, index)
    buffers: SealedBuffers = request.app.state.sealed_buffers
    buffer = buffers.take(sealed_size(chunk_size))
    epoch, sealing = cfg.stream.keyring.sealing(sid, KIND, index, memoryview(buffer)[: sealed_size(want)], want)
    got, heartbeat = 0, Heartbeat(r, cfg.stream, sid)
    try:
        async for part in request.stream():
            await heartbeat.beat()
            got += len(part)
            if got > chunk_size:
                raise ApiError(413, "chunk_too_large", f"chunks are at most {chunk_size} bytes")
            if got <= want:
                sealing.update(part)
    except (ApiError, ClientDisconnect):
        buffers.give(buffer)
        raise
    if got != want:
        buffers.give(buffer)
        if not got:
            raise ApiError(400, "empty_chunk", "the chunk body is empty")
        raise ApiError(400, "bad_chunk_length", f"chunk {index} must be {want} bytes, got {got}")
    try:
        stored = await store_chunk(r, cfg, sid, index, want, epoch, sealing.finish(), count)
    finally:
        buffers.give(buffer)
    return json_response(ChunkStored(session_id=sid, index=index, stored=stored))


async def complete(request: Request) -> Response:
    sid = session_id(request)
    authorize(request, sid)
    body = await read_json(request, Complete)
    meta = await session_meta(request, sid)
    state = await complete_upload(_redis(request), _cfg(request), sid, meta, chunks=body.chunks, sha256=body.sha256)
    return json_response(Accepted(session_id=sid, state=state), 202)


async def status(request: Request) -> Response:
    sid = session_id(request)
    authorize(request, sid)
    meta = await session_meta(request, sid)
    size, chunk_size = int(meta["size"]), int(meta["chunk_size"])
    error = {"code": meta["error_code"], "message": meta.get("error", "")} if "error_code" in meta else None
    out = SessionStatus(
        session_id=sid,
        state=meta["state"],
        size=size,
        chunk_size=chunk_size,
        expected_chunks=expected_chunks(size, chunk_size),
        received_chunks=len(chunk_map(meta)),
        received_bytes=int(meta.get("bytes", 0)),
        missing_chunks=missing_chunks(meta) if meta["state"] in UPLOADABLE else [],
        created_at=float(meta["created_at"]),
        updated_at=float(meta["updated_at"]),
        error=error,
    )
    return json_response(out)


async def result(request: Request) -> Response:
    sid = session_id(request)
    authorize(request, sid)
    kept = await kept_result(_redis(request), _cfg(request).stream, sid)
    meta = None if kept is not None else await get_meta(_redis(request), sid)
    blob = kept
    if blob is None and (meta is None or meta["state"] == State.DONE):
        blob = await request.app.state.results.get(sid)
    if blob is not None:
        return Response(decode_result(blob).model_dump_json(), media_type="application/json")
    if meta is None:
        raise ApiError(404, "unknown_session", "no result for this session (expired, erased or never created)")
    if meta["state"] == State.FAILED:
        raise ApiError(409, "session_failed", meta.get("error", "processing failed"), reason=meta.get("error_code"))
    raise ApiError(409, "not_ready", f"the session is {meta['state']}; the result is not ready yet")


async def erase(request: Request) -> Response:
    sid = session_id(request)
    authorize(request, sid, allow_expired=True)
    return json_response(await erase_upload(_redis(request), _cfg(request), request.app.state.results, sid))


routes = [
    Route("/sessions", create, methods=["POST"]),
    Route("/sessions/{sid}", status, methods=["GET"]),
    Route("/sessions/{sid}", erase, methods=["DELETE"]),
    Route("/sessions/{sid}/chunks/{index}", put_chunk, methods=["PUT"]),
    Route("/sessions/{sid}/complete", complete, methods=["POST"]),
    Route("/sessions/{sid}/result", result, methods=["GET"]),
]
