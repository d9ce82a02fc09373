"""tus 1.0.0 resumable uploads at ``/files/``: a finished tus upload is a session like any other.

Extensions: creation, creation-with-upload, termination, expiration, checksum, concatenation.
As with tusd, the upload URL in ``Location`` is the capability: ``/files/<session id>-<128-bit
secret>``, so stock clients (tus-js-client, Uppy, tuspy) work with no header of their own. The
session id and the session token (for the WebSocket and the session API) come back at creation
in ``Upload-Session-Id`` and ``Upload-Token``. A final concatenation lists its partial uploads'
URLs. The bare ``/files/<session id>`` with ``Authorization: Bearer <token>`` (and, for a final
concatenation, ``Bearer <t1>,<t2>,...``) is still accepted.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.admission import admit_request
from gateway.auth import check_token, session_of_upload, upload_id_of, valid_session_id
from gateway.config import GatewayConfig
from gateway.errors import ApiError
from gateway.lifecycle import begin_upload, complete_upload, erase_upload
from gateway.sessions import authorize
from schemas.events import ChunkReceivedData
from schemas.lifecycle import UPLOADABLE
from streams import keys
from streams.chunks import MediaGone, SessionGone, read_chunk
from streams.connection import RETRYABLE, Redis
from streams.events import publish
from streams.lifecycle import fail_session
from streams.sessions import (
    State,
    chunk_map,
    expected_chunks,
    get_meta,
    set_state,
)
from streams.tus import (
    ChunkWriter,
    TusUpload,
    UploadLocked,
    create_upload,
    discard,
    get_upload,
    load_tail,
    locked,
    upload_metadata,
    wait_unlocked,
)

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,termination,expiration,checksum,concatenation"
CHECKSUMS: dict[str, Callable[..., Any]] = {
    "sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512, "md5": hashlib.md5,
}
OFFSET_TYPE = "application/offset+octet-stream"
MAX_METADATA = 4096
PROTOCOL, PARTIAL = "tus", "tus-partial"
MIME = re.compile(r"^[\w.+-]{1,50}/[\w.+-]{1,50}$")
DIGITS = re.compile(r"^[0-9]{1,19}$")
BASE_HEADERS = {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store"}

Handler = Callable[[Request], Awaitable[Response]]


def tus_endpoint(handler: Handler) -> Handler:
    """Check ``Tus-Resumable`` and put the tus headers on every answer, errors included."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            if request.method != "OPTIONS" and request.headers.get("tus-resumable") != TUS_VERSION:
                raise ApiError(412, "unsupported_tus_version", f"this server speaks tus {TUS_VERSION} only; send "
                               f"'Tus-Resumable: {TUS_VERSION}'", headers={"Tus-Version": TUS_VERSION})
            response = await handler(request)
        except ApiError as exc:
            exc.headers = {**BASE_HEADERS, **exc.headers}
            raise
        except RETRYABLE:
            raise ApiError(503, "unavailable", "storage is unreachable; retry shortly",
                           headers={**BASE_HEADERS, "Retry-After": "2"}) from None
        response.headers.update(BASE_HEADERS)
        return response

    return endpoint


def _cfg(request: Request) -> GatewayConfig:
    return request.app.state.config


def _redis(request: Request) -> Redis:
    return request.app.state.redis


def http_date(ts: float) -> str:
    return formatdate(ts, usegmt=True)


def int_header(request: Request, name: str) -> int | None:
    raw = request.headers.get(name)
    if raw is None:
        return None
    if not DIGITS.match(raw.strip()):
        raise ApiError(400, "bad_header", f"{name} must be a non-negative integer")
    return int(raw)


def parse_metadata(header: str | None) -> dict[str, bytes | None]:
    """Decoded ``Upload-Metadata`` pairs: ``key base64value`` or a bare ``key``, comma-separated,
    keys unique and free of spaces and commas (tus 1.0.0, creation extension)."""
    if not header or not header.strip():
        return {}
    if len(header) > MAX_METADATA:
        raise ApiError(400, "bad_metadata", f"Upload-Metadata is limited to {MAX_METADATA} characters")
    pairs: dict[str, bytes | None] = {}
    for item in header.split(","):
        parts = item.strip().split(" ")
        key = parts[0]
        if len(parts) > 2 or not key or not key.isprintable() or key in pairs:
            raise ApiError(400, "bad_metadata", "Upload-Metadata is 'key base64value' pairs separated by commas, "
                           "keys unique")
        value = None
        if len(parts) == 2:
            try:
                value = base64.b64decode(parts[1], validate=True)
            except (binascii.Error, ValueError):
                raise ApiError(400, "bad_metadata", f"the value of metadata key {key!r} is not base64") from None
        pairs[key] = value
    return pairs


def content_type_of(metadata: dict[str, bytes | None]) -> str:
    raw = metadata.get("filetype") or metadata.get("content_type") or b""
    value = raw.decode("ascii", "replace").strip().lower()
    return value if MIME.match(value) else "application/octet-stream"


def parse_checksum(header: str | None) -> tuple[str, bytes] | None:
    if header is None:
        return None
    name, _, encoded = header.strip().partition(" ")
    if name.lower() not in CHECKSUMS:
        raise ApiError(400, "unsupported_checksum", f"Upload-Checksum algorithms: {', '.join(CHECKSUMS)}")
    try:
        return name.lower(), base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "bad_checksum", "Upload-Checksum is '<algorithm> <base64 digest>'") from None


def bearer_tokens(request: Request) -> list[str]:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        return []
    return [t for t in re.split(r"[\s,]+", header[7:].strip()) if t]


def requested_session(request: Request) -> str | None:
    """The session a ``/files/{upload}`` URL names, whether or not it carries the capability."""
    raw = request.path_params["upload"]
    return session_of_upload(_cfg(request).stream.keyring, raw) or (raw if valid_session_id(raw) else None)


def authorized_session(request: Request) -> str:
    """The session of the upload URL: its capability, or the bare session id with its token."""
    sid = requested_session(request)
    if sid is None:
        raise ApiError(404, "unknown_upload", "no such upload")
    if sid == request.path_params["upload"]:
        authorize(request, sid)
    return sid


def created_headers(request: Request, sid: str, token: str) -> dict[str, str]:
    upload = upload_id_of(_cfg(request).stream.keyring, sid)
    return {"Location": f"/files/{upload}", "Upload-Session-Id": sid, "Upload-Token": token}


async def existing_upload(request: Request, sid: str) -> TusUpload:
    upload = await get_upload(_redis(request), sid)
    if upload is None or await get_meta(_redis(request), sid) is None:
        raise ApiError(404, "unknown_upload", "no such upload (expired, terminated or never created)")
    return upload


def upload_headers(upload: TusUpload, offset: int | None = None, expires_at: float | None = None) -> dict[str, str]:
    offset = upload.offset if offset is None else offset
    headers = {"Upload-Offset": str(offset)}
    if offset < upload.length:
        headers["Upload-Expires"] = http_date(expires_at or upload.expires_at)
    return headers


async def announce(request: Request, sid: str, count: int, stored: list[tuple[int, bool]]) -> None:
    cfg, r = _cfg(request), _redis(request)
    for index, new in stored:
        if new:
            received = int(await r.hget(keys.meta(sid), "received") or 0)
            await publish(r, cfg.stream, sid, ChunkReceivedData(index=index, received=received, chunks=count))


async def receive(request: Request, upload: TusUpload) -> tuple[int, float]:
    """Store the request body at the upload's offset; returns the new offset and expiry.

    Whole chunks are kept as they fill and, when the client goes away mid-body, the rest is
    kept as the tail: the client resumes from what HEAD says. A body with ``Upload-Checksum`` is
    staged chunk by chunk while it is hashed, and kept only if the checksum holds.
    """
    cfg, r, sid = _cfg(request), _redis(request), upload.sid
    checksum = parse_checksum(request.headers.get("upload-checksum"))
    room = upload.length - upload.offset
    declared = int_header(request, "content-length")
    if declared is not None and declared > room:
        raise ApiError(413, "exceeds_upload_length", f"the body would go past Upload-Length: {room} bytes remain")
    meta = await get_meta(r, sid)
    if meta is None:
        raise ApiError(404, "unknown_upload", "no such upload (expired, terminated or never created)")
    if meta["state"] == State.FAILED:
        raise ApiError(410, "upload_failed", meta.get("error", "the upload failed; start again"))
    if meta["state"] not in UPLOADABLE:
        raise ApiError(409, "upload_closed", f"the session is {meta['state']}; it takes no more bytes")
    chunk_size = int(meta["chunk_size"])
    count = expected_chunks(upload.length, chunk_size)
    tail = await load_tail(r, cfg.stream, sid, upload.offset)
    digest = CHECKSUMS[checksum[0]]() if checksum else None
    writer = ChunkWriter(r, cfg.stream, sid, size=upload.length, chunk_size=chunk_size, offset=upload.offset, tail=tail,
                         staged=digest is not None)
    overflow = disconnected = False
    try:
        try:
            async for part in request.stream():
                if writer.offset + len(part) > upload.length:
                    part, overflow = part[: upload.length - writer.offset], True
                if digest is not None:
                    digest.update(part)
                await announce(request, sid, count, await writer.write(part))
                if overflow:
                    break
        except ClientDisconnect:
            disconnected = True
        verified = checksum is None or (not overflow and not disconnected and digest.digest() == checksum[1])
        if checksum is not None and verified:
            await announce(request, sid, count, await writer.promote())
    except MediaGone:
        await writer.discard()  # saving would bring keys of an erased session back
        raise ApiError(410, "upload_gone", "the upload was terminated or expired while its body arrived") from None
    except BaseException:
        await (writer.discard() if checksum else writer.save())
        raise
    if not verified:
        await writer.discard()
        if overflow:
            raise ApiError(413, "exceeds_upload_length", "the body went past Upload-Length; nothing was stored")
        if not disconnected:
            raise ApiError(460, "checksum_mismatch", f"the {checksum[0]} of the body does not match "
                           "Upload-Checksum; nothing was stored, send it again")
        return upload.offset, upload.expires_at
    expires_at = await writer.save()
    if writer.offset > upload.offset and meta["state"] == State.CREATED:
        await set_state(r, cfg.stream, sid, State.UPLOADING)
    if overflow:
        raise ApiError(413, "exceeds_upload_length", "the body went past Upload-Length; the bytes that fit were kept",
                       headers={"Upload-Offset": str(writer.offset)})
    if writer.offset == upload.length and not upload.partial:
        fresh = await get_meta(r, sid)
        if fresh is not None:
            await complete_upload(r, cfg, sid, fresh)
    return writer.offset, expires_at


async def options(request: Request) -> Response:
    cfg = _cfg(request)
    if "upload" in request.path_params and requested_session(request) is None:
        raise ApiError(404, "unknown_upload", "no such upload")
    return Response(status_code=204, headers={
        "Tus-Version": TUS_VERSION, "Tus-Extension": EXTENSIONS, "Tus-Max-Size": str(cfg.stream.max_size),
        "Tus-Checksum-Algorithm": ",".join(CHECKSUMS),
    })


def has_body(request: Request) -> bool:
    return request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers


async def create(request: Request) -> Response:
    cfg, r = _cfg(request), _redis(request)
    concat = request.headers.get("upload-concat", "").strip()
    header = request.headers.get("upload-metadata", "").strip()
    metadata = parse_metadata(header)
    if "upload-defer-length" in request.headers:
        raise ApiError(400, "defer_length_unsupported", "send Upload-Length: deferred lengths are not supported")
    if concat.startswith("final"):
        return await create_final(request, concat, metadata, header)
    if concat not in ("", "partial"):
        raise ApiError(400, "bad_concat", "Upload-Concat is 'partial' or 'final;<url> <url> ...'")
    length = int_header(request, "upload-length")
    if length is None:
        raise ApiError(400, "missing_length", "send Upload-Length (the size of the video in bytes)")
    if length == 0:
        raise ApiError(400, "empty_upload", "an upload needs at least one byte")
    if length > cfg.stream.max_size:
        raise ApiError(413, "video_too_large", f"videos are limited to {cfg.stream.max_size} bytes")
    body = has_body(request)
    if body and request.headers.get("content-type", "").split(";")[0].strip().lower() != OFFSET_TYPE:
        raise ApiError(415, "unsupported_media_type", f"an upload body is sent as {OFFSET_TYPE}")
    admitted = await admit_request(request)
    sid, token, _expires = await begin_upload(r, cfg, admitted, length, content_type_of(metadata),
                                              protocol=PARTIAL if concat else PROTOCOL, follow=not concat)
    upload = await create_upload(r, cfg.stream, sid, length, concat=concat, metadata=header)
    headers = created_headers(request, sid, token)
    if body:
        try:
            async with locked(r, sid):
                offset, expires_at = await receive(request, upload)
        except ApiError as exc:
            exc.headers = {**headers, "Upload-Offset": "0", **exc.headers}
            raise
        headers |= upload_headers(upload, offset, expires_at)
    else:
        headers |= upload_headers(upload)
    return Response(status_code=201, headers=headers)


def partial_sessions(request: Request, concat: str) -> list[str]:
    """The sessions of the partial uploads a final concatenation lists, each authorized by its
    URL's capability or, for a bare session id, by one of the ``Bearer`` tokens."""
    keyring = _cfg(request).stream.keyring
    urls = concat.partition(";")[2].split()
    ids = [urlsplit(url).path.rstrip("/").rpartition("/")[2] for url in urls]
    if not concat.startswith("final;") or not ids:
        raise ApiError(400, "bad_concat", "Upload-Concat: final;<url of partial upload> <url> ...")
    tokens = bearer_tokens(request)
    sids: list[str] = []
    for upload in ids:
        sid = session_of_upload(keyring, upload)
        if sid is None:
            if not valid_session_id(upload):
                raise ApiError(404, "unknown_upload", f"{upload!r} is not the URL of an upload of this server")
            if not tokens:
                raise ApiError(401, "missing_token", "list the partial uploads' URLs as given by Location, or send "
                               "their tokens as 'Authorization: Bearer <t1>,<t2>,...'")
            if not any(check_token(keyring, upload, t) is None for t in tokens):
                raise ApiError(403, "bad_token", f"no valid token for partial upload {upload}")
            sid = upload
        sids.append(sid)
    if len(set(sids)) != len(sids):
        raise ApiError(400, "bad_concat", "a partial upload is listed twice")
    return sids


async def create_final(request: Request, concat: str, metadata: dict[str, bytes | None], header: str) -> Response:
    """Concatenate finished partial uploads, in the order listed, into a new session and queue it."""
    cfg, r = _cfg(request), _redis(request)
    if "upload-length" in request.headers:
        raise ApiError(400, "length_on_final", "a final upload takes its length from its partial uploads")
    if has_body(request):
        raise ApiError(400, "body_on_final", "a final upload has no body of its own")
    parts: list[TusUpload] = []
    for sid in partial_sessions(request, concat):
        part = await get_upload(r, sid)
        if part is None or await get_meta(r, sid) is None:
            raise ApiError(404, "unknown_upload", f"partial upload {sid} does not exist (expired or terminated)")
        if not part.partial:
            raise ApiError(400, "not_partial", f"upload {sid} was not created with 'Upload-Concat: partial'")
        if not part.finished:
            raise ApiError(400, "partial_unfinished", f"partial upload {sid} has {part.offset} of {part.length} bytes")
        parts.append(part)
    length = sum(p.length for p in parts)
    if length > cfg.stream.max_size:
        raise ApiError(413, "video_too_large", f"videos are limited to {cfg.stream.max_size} bytes")
    admitted = await admit_request(request, force=True)
    sid, token, _expires = await begin_upload(r, cfg, admitted, length, content_type_of(metadata), protocol=PROTOCOL)
    listed = "final;" + " ".join(f"/files/{upload_id_of(cfg.stream.keyring, p.sid)}" for p in parts)
    await create_upload(r, cfg.stream, sid, length, concat=listed, metadata=header)
    count = expected_chunks(length, cfg.stream.chunk_size)
    writer = ChunkWriter(r, cfg.stream, sid, size=length, chunk_size=cfg.stream.chunk_size, offset=0, tail=bytearray())
    try:
        async with locked(r, sid):
            for part in parts:
                meta = await get_meta(r, part.sid)
                if meta is None:
                    raise SessionGone(part.sid)
                for index, (entry, _length) in sorted(chunk_map(meta).items()):
                    for stored, new in await writer.write(await read_chunk(r, cfg.stream, part.sid, index, entry)):
                        if new:
                            await publish(r, cfg.stream, sid,
                                          ChunkReceivedData(index=stored, received=stored + 1, chunks=count))
            await writer.save()
    except MediaGone:
        message = "a partial upload expired or was terminated while it was being concatenated; upload again"
        await fail_session(r, cfg.stream, sid, "media_expired", message, retryable=True)
        raise ApiError(410, "media_expired", message) from None
    for part in parts:
        await discard(r, part.sid)
    await set_state(r, cfg.stream, sid, State.UPLOADING)
    meta = await get_meta(r, sid)
    if meta is not None:
        await complete_upload(r, cfg, sid, meta)
    return Response(status_code=201, headers={**created_headers(request, sid, token), "Upload-Offset": str(length)})


async def head(request: Request) -> Response:
    sid = authorized_session(request)
    await existing_upload(request, sid)
    await wait_unlocked(_redis(request), sid)
    upload = await existing_upload(request, sid)
    headers = {"Upload-Length": str(upload.length), **upload_headers(upload)}
    metadata = await upload_metadata(_redis(request), _cfg(request).stream, sid)
    if metadata:
        headers["Upload-Metadata"] = metadata
    if upload.concat:
        headers["Upload-Concat"] = upload.concat
    return Response(status_code=200, headers=headers)


async def patch(request: Request) -> Response:
    cfg, r = _cfg(request), _redis(request)
    sid = authorized_session(request)
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != OFFSET_TYPE:
        raise ApiError(415, "unsupported_media_type", f"PATCH bodies are sent as {OFFSET_TYPE}")
    offset = int_header(request, "upload-offset")
    if offset is None:
        raise ApiError(400, "missing_offset", "send Upload-Offset (HEAD tells the current one)")
    upload = await existing_upload(request, sid)
    if upload.final:
        raise ApiError(403, "final_upload", "a final concatenated upload takes no PATCH")
    try:
        async with locked(r, sid):
            upload = await existing_upload(request, sid)
            if offset != upload.offset:
                raise ApiError(409, "offset_mismatch", f"the upload is at offset {upload.offset}, not {offset}",
                               headers={"Upload-Offset": str(upload.offset)})
            if upload.finished:
                return Response(status_code=204, headers=upload_headers(upload))
            if time.time() > upload.expires_at:
                await fail_session(r, cfg.stream, sid, "media_expired", "the upload expired; start again", retryable=True)
                raise ApiError(410, "upload_expired", "the upload expired before it finished; start again")
            new_offset, expires_at = await receive(request, upload)
    except UploadLocked:
        raise ApiError(423, "upload_locked", "another request is writing this upload; retry after HEAD",
                       headers={"Retry-After": "1"}) from None
    return Response(status_code=204, headers=upload_headers(upload, new_offset, expires_at))


async def terminate(request: Request) -> Response:
    sid = authorized_session(request)
    if await get_upload(_redis(request), sid) is None:
        raise ApiError(404, "unknown_upload", "no such upload (expired, terminated or never created)")
    await erase_upload(_redis(request), _cfg(request), request.app.state.results, sid)
    return Response(status_code=204)


routes = [
    Route("/files/", tus_endpoint(options), methods=["OPTIONS"]),
    Route("/files/", tus_endpoint(create), methods=["POST"]),
    Route("/files/{upload}", tus_endpoint(options), methods=["OPTIONS"]),
    Route("/files/{upload}", tus_endpoint(head), methods=["HEAD"]),
    Route("/files/{upload}", tus_endpoint(patch), methods=["PATCH"]),
    Route("/files/{upload}", tus_endpoint(terminate), methods=["DELETE"]),
]
