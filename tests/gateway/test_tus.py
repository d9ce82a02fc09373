"""tus 1.0.0 at /files/, driven by the tuspy client against a real uvicorn gateway."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import time
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import orjson
import pytest
from playwright.async_api import async_playwright
from starlette.applications import Starlette
from starlette.responses import FileResponse, HTMLResponse
from starlette.routing import Route
from tusclient.client import TusClient
from tusclient.uploader import Uploader
from websockets.asyncio.client import connect as ws_connect

from dodolens.runner import Runtime
from gateway.auth import issue_token
from dodolens.settings import Settings
from streams import keys
from streams.chunks import iter_chunks
from streams.events import history
from streams.lifecycle import fail_session
from streams.sessions import get_meta
from tests.gateway.test_page import CHROMIUM_ARGS
from tests.support.fake_openai import LocalServer
from tests.support.videos import make_video

TUS = {"Tus-Resumable": "1.0.0"}
CLIENTS = Path(__file__).resolve().parents[1] / "clients"
"""Where ``./scripts/setup --test`` installs tus-js-client from npm."""


def upload(base: str, data: bytes, *, chunk_size: int, stop_at: int | None = None, checksum: bool = False,
           headers: dict[str, str] | None = None) -> Uploader:
    """A stock tuspy upload, as its README shows (blocking: run it in a thread, the gateway shares
    the test's event loop)."""
    client = TusClient(f"{base}/files/", headers=dict(headers or {}))
    uploader = client.uploader(file_stream=io.BytesIO(data), chunk_size=chunk_size, upload_checksum=checksum,
                               metadata={"filename": "tour.mp4", "filetype": "video/mp4"})
    uploader.upload(stop_at=stop_at)
    return uploader


def sid_of(url: str) -> str:
    """The session id: the part of the upload id before its secret."""
    return urlsplit(url).path.rsplit("/", 1)[1].partition("-")[0]


def token_of(rt: Runtime, url: str) -> str:
    """The session token the creation answered in Upload-Token (tuspy keeps only Location)."""
    assert rt.stream is not None
    return issue_token(rt.stream.keyring, sid_of(url), 600)[0]


def auth(token: str) -> dict[str, str]:
    return {**TUS, "Authorization": f"Bearer {token}"}


async def stored_bytes(rt: Runtime, sid: str) -> bytes:
    assert rt.redis is not None and rt.stream is not None
    return b"".join([chunk async for chunk in iter_chunks(rt.redis, rt.stream, sid)])


async def queued_jobs(rt: Runtime) -> list[str]:
    assert rt.redis is not None
    return [fields[b"sid"].decode() for _id, fields in await rt.redis.xrange(keys.JOBS)]


async def ws_events(rt: Runtime, sid: str, token: str, until: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    url = rt.url.replace("http", "ws", 1) + f"/sessions/{sid}/events?token={token}"
    events: list[dict[str, Any]] = []
    async with ws_connect(url) as ws:
        while not events or events[-1]["type"] != until:
            events.append(orjson.loads(await asyncio.wait_for(ws.recv(), timeout)))
            assert events[-1]["type"] != "error" or events[-1]["data"].get("retryable"), events[-1]
    return events


@pytest.fixture
async def http(gateway: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        yield client


async def test_tuspy_upload_with_checksums_becomes_a_queued_session(gateway: Runtime, http: httpx.AsyncClient,
                                                                     settings: Settings) -> None:
    data = os.urandom(700_001)
    uploader = await asyncio.to_thread(upload, gateway.url, data, chunk_size=100_000, checksum=True)
    sid, token = sid_of(uploader.url), token_of(gateway, uploader.url)

    assert await stored_bytes(gateway, sid) == data
    assert (await get_meta(gateway.redis, sid))["state"] == "queued"  # type: ignore[arg-type,index]
    assert sid in await queued_jobs(gateway)
    chunks = -(-len(data) // settings.stream.chunk_size)
    types = [e.type.value for e in await history(gateway.redis, sid)]  # type: ignore[arg-type]
    assert types == ["session_created", *["chunk_received"] * chunks, "upload_complete"]
    head = await http.head(uploader.url, headers=TUS)  # the URL alone authorizes
    assert head.status_code == 200
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"] == str(len(data))
    assert "Upload-Expires" not in head.headers  # finished uploads do not expire as uploads
    assert head.headers["Upload-Metadata"] == ",".join(uploader.encode_metadata())  # as sent: stored sealed
    assert b"tour.mp4" not in (await gateway.redis.hget(keys.tus(sid), "metadata") or b"")  # type: ignore[union-attr]
    assert head.headers["Tus-Resumable"] == "1.0.0" and head.headers["Cache-Control"] == "no-store"
    assert not await gateway.redis.exists(keys.tus_tail(sid))  # type: ignore[union-attr]
    over_ws = await ws_events(gateway, sid, token, until="upload_complete")
    assert [e["type"] for e in over_ws] == types


async def test_an_interrupted_patch_keeps_what_arrived_and_a_new_client_resumes_from_head(
        gateway: Runtime, http: httpx.AsyncClient) -> None:
    data = os.urandom(800_000)
    first = await asyncio.to_thread(upload, gateway.url, data, chunk_size=120_000, stop_at=240_000)
    sid, path = sid_of(first.url), urlsplit(first.url).path
    assert first.offset == 240_000

    host, port = urlsplit(gateway.url).hostname, urlsplit(gateway.url).port
    reader, writer = await asyncio.open_connection(host, port)
    head_lines = (f"PATCH {path} HTTP/1.1\r\nHost: {host}\r\nTus-Resumable: 1.0.0\r\n"
                  f"Content-Type: application/offset+octet-stream\r\n"
                  f"Upload-Offset: 240000\r\nContent-Length: 300000\r\n\r\n")
    writer.write(head_lines.encode() + data[240_000:290_000])
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.close()  # the connection drops 50 000 bytes into a 300 000-byte PATCH

    head = await http.head(path, headers=TUS)
    assert head.headers["Upload-Offset"] == "290000"  # kept: one whole chunk plus a sealed tail
    tail = await gateway.redis.get(keys.tus_tail(sid))  # type: ignore[union-attr]
    assert tail is not None and data[262_144:262_208] not in tail

    resumed_client = TusClient(f"{gateway.url}/files/")
    resumed = await asyncio.to_thread(resumed_client.uploader, file_stream=io.BytesIO(data), url=first.url,
                                      chunk_size=170_000)
    assert resumed.offset == 290_000
    await asyncio.to_thread(resumed.upload)
    assert await stored_bytes(gateway, sid) == data
    assert sid in await queued_jobs(gateway)


async def test_parallel_partial_uploads_concatenate_into_one_session(gateway: Runtime, http: httpx.AsyncClient) -> None:
    data = os.urandom(900_000)
    pieces = [data[:250_000], data[250_000:610_000], data[610_000:]]
    partials = await asyncio.gather(*(asyncio.to_thread(upload, gateway.url, piece, chunk_size=64_000,
                                                        headers={"Upload-Concat": "partial"}) for piece in pieces))
    ids, tokens = [sid_of(p.url) for p in partials], [token_of(gateway, p.url) for p in partials]
    assert not set(ids) & set(await queued_jobs(gateway))  # partial uploads are not processed on their own
    paths = [urlsplit(p.url).path for p in partials]

    forged = f"{ids[0]}-{'0' * 32}"
    refused = await http.post("/files/", headers={**TUS, "Upload-Concat": f"final;/files/{forged} {paths[1]}"})
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "unknown_upload"
    bare = "final;" + " ".join(f"/files/{i}" for i in ids)  # bare ids: authorized by every partial's token
    refused = await http.post("/files/", headers={**auth(",".join(tokens[:2])), "Upload-Concat": bare})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "bad_token"

    final = await http.post("/files/", headers={**TUS, "Upload-Concat": "final;" + " ".join(p.url for p in partials)})
    assert final.status_code == 201, final.text
    sid, location = final.headers["Upload-Session-Id"], final.headers["Location"]
    assert await stored_bytes(gateway, sid) == data
    assert sid in await queued_jobs(gateway)
    head = await http.head(location, headers=TUS)
    assert head.headers["Upload-Concat"] == "final;" + " ".join(paths)
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"] == str(len(data))
    patch = await http.patch(location, headers={**TUS, "Upload-Offset": str(len(data)),
                                                "Content-Type": "application/offset+octet-stream"}, content=b"x")
    assert patch.status_code == 403
    for partial_id, path in zip(ids, paths):  # consumed: nothing of them is left
        assert (await http.head(path, headers=TUS)).status_code == 404
        assert not await gateway.redis.exists(*keys.session_keys(partial_id))  # type: ignore[union-attr]


async def test_a_final_upload_needs_finished_partials(gateway: Runtime, http: httpx.AsyncClient) -> None:
    done = await asyncio.to_thread(upload, gateway.url, b"a" * 1000, chunk_size=1000, headers={"Upload-Concat": "partial"})
    half = await asyncio.to_thread(upload, gateway.url, b"b" * 1000, chunk_size=500, stop_at=500,
                                   headers={"Upload-Concat": "partial"})
    plain = await asyncio.to_thread(upload, gateway.url, b"c" * 1000, chunk_size=400, stop_at=400)
    unfinished = await http.post("/files/", headers={**TUS, "Upload-Concat": f"final;{done.url} {half.url}"})
    assert unfinished.status_code == 400 and unfinished.json()["error"]["code"] == "partial_unfinished"
    not_partial = await http.post("/files/", headers={**TUS, "Upload-Concat": f"final;{done.url} {plain.url}"})
    assert not_partial.status_code == 400 and not_partial.json()["error"]["code"] == "not_partial"
    with_length = await http.post("/files/", headers={**TUS, "Upload-Concat": f"final;{done.url}",
                                                      "Upload-Length": "1000"})
    assert with_length.status_code == 400


async def test_a_checksum_mismatch_stores_nothing(gateway: Runtime, http: httpx.AsyncClient) -> None:
    data = os.urandom(300_000)
    sha1 = base64.b64encode(hashlib.sha1(data[:100_000]).digest()).decode()
    created = await http.post("/files/", headers={**TUS, "Upload-Length": str(len(data)),
                                                  "Content-Type": "application/offset+octet-stream",
                                                  "Upload-Checksum": f"sha1 {sha1}"}, content=data[:100_000])
    assert created.status_code == 201 and created.headers["Upload-Offset"] == "100000"  # creation-with-upload
    sid, location = created.headers["Upload-Session-Id"], created.headers["Location"]
    patch_headers = {**TUS, "Upload-Offset": "100000", "Content-Type": "application/offset+octet-stream"}

    wrong = base64.b64encode(hashlib.sha1(b"something else").digest()).decode()
    mismatch = await http.patch(location, headers={**patch_headers, "Upload-Checksum": f"sha1 {wrong}"},
                                content=data[100_000:300_000])  # more than a chunk: one was staged, then dropped
    assert mismatch.status_code == 460
    assert mismatch.json()["error"]["code"] == "checksum_mismatch" and mismatch.headers["Tus-Resumable"] == "1.0.0"
    assert (await http.head(location, headers=TUS)).headers["Upload-Offset"] == "100000"
    assert not await gateway.redis.exists(keys.tus_staged(sid))  # type: ignore[union-attr]
    assert (await get_meta(gateway.redis, sid))["received"] == "0"  # type: ignore[arg-type,index]
    unsupported = await http.patch(location, headers={**patch_headers, "Upload-Checksum": "crc32 AAAA"},
                                   content=data[100_000:200_000])
    assert unsupported.status_code == 400 and unsupported.json()["error"]["code"] == "unsupported_checksum"

    client = TusClient(f"{gateway.url}/files/")
    resumed = await asyncio.to_thread(client.uploader, file_stream=io.BytesIO(data), url=urljoin(gateway.url, location),
                                      chunk_size=90_000, upload_checksum=True)
    await asyncio.to_thread(resumed.upload)
    assert await stored_bytes(gateway, sid) == data
    assert not await gateway.redis.exists(keys.tus_staged(sid))  # type: ignore[union-attr]


async def test_a_slow_checksummed_patch_keeps_the_chunks_before_it_alive(settings: Settings) -> None:
    data = os.urandom(1_000_000)
    rt = await Runtime(settings.with_overrides(chunk_ttl_s=3), workers=False).start()
    try:
        async with httpx.AsyncClient(base_url=rt.url, timeout=30) as http:
            created = await http.post("/files/", headers={**TUS, "Upload-Length": str(len(data)),
                                                          "Content-Type": "application/offset+octet-stream"},
                                      content=data[:300_000])  # chunk 0 stored, the rest of it a tail

            async def slowly() -> AsyncIterator[bytes]:
                for start in range(300_000, len(data), 50_000):
                    await asyncio.sleep(0.25)
                    yield data[start : start + 50_000]

            sha1 = base64.b64encode(hashlib.sha1(data[300_000:]).digest()).decode()
            sent = await http.patch(created.headers["Location"], content=slowly(), headers={
                **TUS, "Upload-Offset": "300000", "Content-Type": "application/offset+octet-stream",
                "Upload-Checksum": f"sha1 {sha1}"})  # 3.5 s: longer than the chunks' TTL
            assert sent.status_code == 204, sent.text
        assert await stored_bytes(rt, created.headers["Upload-Session-Id"]) == data
    finally:
        await rt.stop()


@pytest.mark.parametrize("checksum", [False, True])
async def test_terminating_an_upload_while_its_body_arrives_leaves_no_key(gateway: Runtime, http: httpx.AsyncClient,
                                                                          checksum: bool) -> None:
    data = os.urandom(800_000)
    created = await http.post("/files/", headers={**TUS, "Upload-Length": str(len(data))})
    sid, path = created.headers["Upload-Session-Id"], created.headers["Location"]
    digest = f"Upload-Checksum: sha1 {base64.b64encode(hashlib.sha1(data).digest()).decode()}\r\n" if checksum else ""
    host, port = urlsplit(gateway.url).hostname, urlsplit(gateway.url).port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"PATCH {path} HTTP/1.1\r\nHost: {host}\r\nTus-Resumable: 1.0.0\r\n{digest}"
                 f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
                 f"Content-Length: {len(data)}\r\n\r\n".encode() + data[:400_000])
    await writer.drain()
    await asyncio.sleep(0.3)  # a whole chunk is stored (or staged)
    assert (await http.delete(path, headers=TUS)).status_code == 204
    writer.write(data[400_000:])
    await writer.drain()
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.close()
    assert answer.startswith((b"HTTP/1.1 410", b"HTTP/1.1 404")), answer
    left = [k for k in keys.session_keys(sid) if k != keys.session_events(sid) and await gateway.redis.exists(k)]  # type: ignore[union-attr]
    assert left == []


async def test_termination_erases_the_session(gateway: Runtime, http: httpx.AsyncClient) -> None:
    data = os.urandom(600_000)
    uploader = await asyncio.to_thread(upload, gateway.url, data, chunk_size=100_000, stop_at=300_000)
    sid, token = sid_of(uploader.url), token_of(gateway, uploader.url)
    assert await gateway.redis.exists(keys.chunks(sid), keys.tus_tail(sid)) == 2  # type: ignore[union-attr]

    deleted = await http.delete(uploader.url, headers=TUS)
    assert deleted.status_code == 204 and deleted.headers["Tus-Resumable"] == "1.0.0"
    assert (await http.head(uploader.url, headers=TUS)).status_code == 404
    assert (await http.get(f"/sessions/{sid}", headers=auth(token))).status_code == 404
    assert [k for k in keys.session_keys(sid) if k != keys.session_events(sid)
            and await gateway.redis.exists(k)] == []  # type: ignore[union-attr]
    assert (await ws_events(gateway, sid, token, until="session_erased"))[-1]["type"] == "session_erased"


async def test_protocol_errors_are_json_and_carry_the_tus_headers(gateway: Runtime, http: httpx.AsyncClient,
                                                                   settings: Settings) -> None:
    options = await http.options("/files/")
    assert options.status_code == 204
    assert options.headers["Tus-Version"] == "1.0.0" and options.headers["Tus-Max-Size"] == str(settings.stream.max_size)
    assert set(options.headers["Tus-Extension"].split(",")) == {
        "creation", "creation-with-upload", "termination", "expiration", "checksum", "concatenation"}
    assert "sha1" in options.headers["Tus-Checksum-Algorithm"].split(",")

    created = await http.post("/files/", headers={**TUS, "Upload-Length": "1000"})
    sid, token = sid_of(created.headers["Location"]), created.headers["Upload-Token"]
    assert created.headers["Upload-Session-Id"] == sid
    assert (await http.get(f"/sessions/{sid}", headers=auth(token))).json()["state"] == "created"
    expires = parsedate_to_datetime(created.headers["Upload-Expires"]).timestamp()
    assert 0 < expires - time.time() <= settings.stream.chunk_ttl_s + 1
    other = (await http.post("/files/", headers={**TUS, "Upload-Length": "1000"})).headers["Upload-Token"]
    octet = {"Content-Type": "application/offset+octet-stream"}
    cases = [
        (await http.post("/files/", headers={"Upload-Length": "10"}), 412, "unsupported_tus_version"),
        (await http.post("/files/", headers={"Tus-Resumable": "0.2.2", "Upload-Length": "10"}), 412,
         "unsupported_tus_version"),
        (await http.post("/files/", headers=TUS), 400, "missing_length"),
        (await http.post("/files/", headers={**TUS, "Upload-Length": "ten"}), 400, "bad_header"),
        (await http.post("/files/", headers={**TUS, "Upload-Length": str(settings.stream.max_size + 1)}), 413,
         "video_too_large"),
        (await http.post("/files/", headers={**TUS, "Upload-Length": "10", "Upload-Metadata": "a b c"}), 400,
         "bad_metadata"),
        (await http.patch(f"/files/{sid}", headers={**TUS, **octet, "Upload-Offset": "0"}, content=b"x"), 401,
         "missing_token"),
        (await http.patch(f"/files/{sid}", headers={**auth(other), **octet, "Upload-Offset": "0"}, content=b"x"), 403,
         "bad_token"),
        (await http.patch(f"/files/{sid}", headers={**auth(token), "Upload-Offset": "0",
                                                    "Content-Type": "application/octet-stream"}, content=b"x"), 415,
         "unsupported_media_type"),
        (await http.patch(f"/files/{sid}", headers={**auth(token), **octet, "Upload-Offset": "5"}, content=b"x"), 409,
         "offset_mismatch"),
        (await http.patch(f"/files/{sid}", headers={**auth(token), **octet, "Upload-Offset": "0"}, content=b"x" * 1001),
         413, "exceeds_upload_length"),
        (await http.put(f"/sessions/{sid}/chunks/0", headers=auth(token), content=b"x" * 1000), 409, "tus_upload"),
        (await http.head(f"/files/{'0' * 32}", headers=auth(token)), 403, None),  # HEAD answers carry no body
        (await http.patch(f"/files/{sid}-{'0' * 32}", headers={**TUS, **octet, "Upload-Offset": "0"}, content=b"x"),
         404, "unknown_upload"),  # a made-up secret
        (await http.options(f"/files/{sid}-{'0' * 32}"), 404, "unknown_upload"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, (response.request.method, response.text)
        if code is not None:
            assert response.json()["error"]["code"] == code
        if response.request.url.path.startswith("/files/"):
            assert response.headers["Tus-Resumable"] == "1.0.0"
    assert cases[0][0].headers["Tus-Version"] == "1.0.0"


async def test_upload_metadata_is_taken_as_the_spec_writes_it_and_echoed_as_sent(gateway: Runtime,
                                                                                  http: httpx.AsyncClient) -> None:
    sent = "filename dMOpbMOpcGhvbmUgdG91ci5tcDQ=,filetype dmlkZW8vbXA0,is_confidential,relativePath"
    created = await http.post("/files/", headers={**TUS, "Upload-Length": "1000", "Upload-Metadata": sent})
    assert created.status_code == 201, created.text
    head = await http.head(created.headers["Location"], headers=TUS)
    assert head.headers["Upload-Metadata"] == sent
    assert (await get_meta(gateway.redis, created.headers["Upload-Session-Id"]))["content_type"] == "video/mp4"  # type: ignore[arg-type,index]
    for bad in ["filetype dmlkZW8vbXA0,filetype dmlkZW8vbXA0", "a b c", "filetype !!!", ",filetype dmlkZW8vbXA0"]:
        refused = await http.post("/files/", headers={**TUS, "Upload-Length": "1000", "Upload-Metadata": bad})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "bad_metadata", bad


async def test_an_upload_left_too_long_expires(settings: Settings) -> None:
    rt = await Runtime(settings.with_overrides(chunk_ttl_s=1), workers=False).start()
    try:
        async with httpx.AsyncClient(base_url=rt.url) as http:
            created = await http.post("/files/", headers={**TUS, "Upload-Length": str(600_000),
                                                          "Content-Type": "application/offset+octet-stream"},
                                      content=os.urandom(300_000))
            sid, location = sid_of(created.headers["Location"]), created.headers["Location"]
            await asyncio.sleep(1.5)
            late = await http.patch(location, headers={**TUS, "Upload-Offset": "300000",
                                                              "Content-Type": "application/offset+octet-stream"},
                                    content=b"x" * 1000)
            assert late.status_code == 410 and late.json()["error"]["code"] == "upload_expired"
            assert not await rt.redis.exists(*keys.media_keys(sid))  # type: ignore[union-attr]
            assert (await get_meta(rt.redis, sid))["state"] == "failed"  # type: ignore[arg-type,index]
    finally:
        await rt.stop()


async def test_a_tus_upload_is_processed_like_any_session(runtime: Runtime) -> None:
    video = make_video(duration=4, width=640, height=360, bitrate=4_000_000, noise=3)
    uploader = await asyncio.to_thread(upload, runtime.url, video, chunk_size=500_000, checksum=True)
    events = await ws_events(runtime, sid_of(uploader.url), token_of(runtime, uploader.url), until="analysis_complete")
    types = [e["type"] for e in events]
    assert types[0] == "session_created" and "upload_complete" in types and "frames_extracted" in types
    result = events[-1]["data"]["result"]
    assert result["video"]["size_bytes"] == len(video) and result["video"]["duration_s"] == pytest.approx(4, abs=0.2)
    assert result["analysis"]["status"] == "skipped"


async def test_tus_js_client_as_its_readme_shows_uploads_a_video_that_is_analysed(runtime: Runtime) -> None:
    video = make_video(duration=4, width=640, height=360, bitrate=4_000_000, noise=3)
    assert (CLIENTS / "node_modules" / "tus-js-client").is_dir(), "run ./scripts/setup --test (npm install)"
    node = await asyncio.create_subprocess_exec(
        "node", str(CLIENTS / "upload.mjs"), f"{runtime.url}/files/", str(400_000),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(node.communicate(video), 60)
    assert node.returncode == 0, (out, err)
    lines = out.decode().split()
    url = lines[-1]
    assert lines[-3:-1] == [str(len(video))] * 2  # progress reached the end
    events = await ws_events(runtime, sid_of(url), token_of(runtime, url), until="analysis_complete")
    chunks = [e["data"]["index"] for e in events if e["type"] == "chunk_received"]
    assert sorted(chunks) == list(range(-(-len(video) // runtime.stream.chunk_size)))  # type: ignore[union-attr]
    result = events[-1]["data"]["result"]
    assert result["video"]["size_bytes"] == len(video) and result["video"]["duration_s"] == pytest.approx(4, abs=0.2)


async def test_tus_js_client_parallel_uploads_are_concatenated_by_the_server(gateway: Runtime) -> None:
    data = os.urandom(900_001)
    node = await asyncio.create_subprocess_exec(
        "node", str(CLIENTS / "upload.mjs"), f"{gateway.url}/files/", str(100_000), "3",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(node.communicate(data), 60)
    assert node.returncode == 0, (out, err)
    sid = sid_of(out.decode().split()[-1])
    assert await stored_bytes(gateway, sid) == data  # three partial uploads, then one final: "final;<url> <url> <url>"
    assert sid in await queued_jobs(gateway)
    assert len(await gateway.redis.keys(keys.tus("*"))) == 1  # type: ignore[union-attr]  # the partials are gone


async def test_tus_js_client_in_a_browser_on_another_origin_uploads_when_that_origin_is_allowed(
        settings: Settings) -> None:
    video = make_video(duration=2, width=320, height=240, noise=3)
    site = Starlette(routes=[
        Route("/", lambda _r: HTMLResponse("<!doctype html><script src='/tus.js'></script>")),
        Route("/tus.js", lambda _r: FileResponse(CLIENTS / "node_modules" / "tus-js-client" / "dist" / "tus.min.js")),
    ])
    async with LocalServer(site) as web:
        rt = await Runtime(settings.with_overrides(cors_origins=(web.url,)), workers=False).start()
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                page = await browser.new_page()
                await page.goto(web.url)
                url = await page.evaluate("""async ([endpoint, encoded]) => {
                    const file = new Blob([Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0))], {type: 'video/mp4'})
                    return await new Promise((resolve, reject) => {
                      const upload = new tus.Upload(file, {
                        endpoint, retryDelays: [0, 1000], chunkSize: 100000,
                        metadata: {filename: 'tour.mp4', filetype: 'video/mp4'},
                        onError: (error) => reject(String(error)),
                        onSuccess: () => resolve(upload.url),
                      })
                      upload.start()
                    })
                }""", [f"{rt.url}/files/", base64.b64encode(video).decode()])
                await browser.close()
            assert await stored_bytes(rt, sid_of(url)) == video
            assert sid_of(url) in await queued_jobs(rt)
            async with httpx.AsyncClient(base_url=rt.url) as http:
                stranger = await http.options("/files/", headers={"Origin": "http://elsewhere.example",
                                                                  "Access-Control-Request-Method": "POST"})
            assert "access-control-allow-origin" not in stranger.headers
        finally:
            await rt.stop()


async def test_a_failed_session_takes_no_more_bytes(gateway: Runtime, http: httpx.AsyncClient) -> None:
    created = await http.post("/files/", headers={**TUS, "Upload-Length": "600000",
                                                  "Content-Type": "application/offset+octet-stream"},
                              content=os.urandom(300_000))
    sid, location = sid_of(created.headers["Location"]), created.headers["Location"]
    await fail_session(gateway.redis, gateway.stream, sid, "memory_pressure", "dropped to make room",  # type: ignore[arg-type]
                       retryable=True)
    late = await http.patch(location, headers={**TUS, "Upload-Offset": "300000",
                                               "Content-Type": "application/offset+octet-stream"},
                            content=os.urandom(300_000))
    assert late.status_code == 410 and late.json()["error"] == {"code": "upload_failed", "message": "dropped to make room"}
    assert not await gateway.redis.exists(*keys.media_keys(sid))  # type: ignore[union-attr]
    assert sid not in await queued_jobs(gateway)
