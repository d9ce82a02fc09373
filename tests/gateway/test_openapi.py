"""The OpenAPI contract: complete, and held by the live gateway under schemathesis fuzzing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from starlette.routing import Route
from schemathesis.checks import (
    content_type_conformance,
    missing_required_header,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from dodolens.runner import Runtime
from dodolens.settings import Settings

MAX_EXAMPLES = 12
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection, missing_required_header]
OPERATOR_PAGES = frozenset({"/metrics", "/admin", "/admin/admin.js", "/admin/sign-in", "/admin/sign-out"})
"""Operator pages (Prometheus text, the dashboard and its sign-in) are not part of the API contract; the admin
API under /admin/api/ is."""

TUS_REJECTIONS = ["412", "413", "460"]
"""tus answers a missing or wrong Tus-Resumable with 412, a body past Upload-Length with 413, a bad checksum 460."""
CONFIG = schemathesis.Config.from_dict({"checks": {
    "negative_data_rejection": {"expected-statuses": ["400", "401", "403", "404", "405", "409", "415", "422", "429",
                                                      *TUS_REJECTIONS]},
    "missing_required_header": {"expected-statuses": ["400", "401", "403", "415", "422", *TUS_REJECTIONS]},
}})

schemathesis.openapi.media_type("application/offset+octet-stream", st.binary(max_size=4096))


@pytest.fixture
async def roomy(settings: Settings) -> AsyncIterator[Runtime]:
    """A gateway that never answers 429, so fuzzing reaches past session creation."""
    rt = await Runtime(settings.with_overrides(max_sessions=100_000, client_max_sessions=0), workers=False).start()
    try:
        yield rt
    finally:
        await rt.stop()


def live_session(base_url: str, path: str) -> tuple[str, str]:
    """A real session (chunk API) or tus upload (its capability id) to aim authorized cases at."""
    if path.startswith("/files/"):
        created = requests.post(f"{base_url}/files/", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "5000"},
                                timeout=10)
        return created.headers["Location"].rsplit("/", 1)[1], created.headers["Upload-Token"]
    body = requests.post(f"{base_url}/sessions", json={"size": 5000}, timeout=10).json()
    return body["session_id"], body["token"]


def fuzz(base_url: str) -> list[str]:
    """Every operation, positive and negative data, anonymous and with a live session's token."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=CONFIG)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        variants: list[tuple[GenerationMode, dict]] = [(GenerationMode.POSITIVE, {})]
        if operation.path_parameters or operation.headers or operation.query or operation.body:
            variants.append((GenerationMode.NEGATIVE, {}))
        name = "sid" if "{sid}" in operation.path else "upload" if "{upload}" in operation.path else None
        if name is not None:
            sid, token = live_session(base_url, operation.path)
            variants.append((GenerationMode.POSITIVE, {"path_parameters": {name: sid},
                                                       "headers": {"Authorization": f"Bearer {token}"}}))

        for mode, fixed in variants:
            @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode, **fixed))
            def check(case: schemathesis.Case) -> None:
                case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=10)

            try:
                check()
            except Exception as exc:  # collect every operation's failure, then report them all
                failures.append(f"{operation.label} [{mode.value}{' authorized' if fixed else ''}]: {exc}")
    return failures


async def test_the_contract_lists_every_route_with_json_errors(gateway: Runtime) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        spec = (await http.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    documented = {(method.upper(), path) for path, item in spec["paths"].items() for method in item
                  if method != "parameters"}
    app = gateway.server.config.app  # type: ignore[union-attr]
    served = {(method, route.path) for route in app.routes if isinstance(route, Route)
              and route.path not in OPERATOR_PAGES for method in route.methods or ()
              if not (method == "HEAD" and "GET" in (route.methods or ()))}  # Starlette adds HEAD to every GET
    assert documented == served
    assert {("POST", "/sessions"), ("PUT", "/sessions/{sid}/chunks/{index}"), ("PATCH", "/files/{upload}"),
            ("GET", "/healthz"), ("POST", "/admin/api/gc"), ("GET", "/admin/api/overview")} <= documented
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            for status, response in operation["responses"].items():
                if int(status) >= 400 and method != "head" and path != "/readyz":
                    assert response["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/ErrorResponse"}, (method, path, status)
    assert {"SessionCreated", "SessionStatus", "Result", "Inventory", "ErrorResponse"} <= set(spec["components"]["schemas"])


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(roomy: Runtime) -> None:
    started = time.monotonic()
    failures = await asyncio.to_thread(fuzz, roomy.url)
    assert not failures, "\n\n".join(failures)
    assert time.monotonic() - started < 60
