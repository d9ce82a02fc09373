"""``/admin``: closed without a token; a sign-in form for browsers, the Bearer token for scripts, wrong tokens
bounded; the JSON overview behind it, and the page live in headless Chromium."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from limits import parse
from playwright.async_api import Page

from dodolens.runner import Runtime
from dodolens.settings import Settings
from gateway.admin_auth import COOKIE, COOKIE_TTL_S, FAILURES_PER_CLIENT, FailedAttempts, issue_cookie, valid_cookie
from gateway.app import create_app
from gateway.config import GatewayConfig
from schemas.events import Event, EventType
from streams import keys
from streams.analytics import record
from streams.config import StreamConfig
from streams.connection import Redis
from streams.jobs import ensure_group
from tests.support.browser import chromium, sign_in_to_admin

ADMIN = "test-admin-token-0123456789"
SCREENSHOT = Path("/tmp/dodolens-admin.png")
SIGN_IN_SCREENSHOT = Path("/tmp/dodolens-admin-sign-in.png")
PHONE_SCREENSHOT = Path("/tmp/dodolens-admin-phone.png")


@pytest.fixture
async def admin_gateway(settings: Settings) -> AsyncIterator[Runtime]:
    rt = await Runtime(settings.with_overrides(admin_token=ADMIN), workers=False).start()
    try:
        yield rt
    finally:
        await rt.stop()


@pytest.fixture
async def http(admin_gateway: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=admin_gateway.url, timeout=30) as client:
        yield client


BEARER = {"Authorization": f"Bearer {ADMIN}"}


async def test_without_an_admin_token_the_dashboard_is_off(redis: Redis) -> None:
    app = create_app(redis, GatewayConfig(admin_token=None), results=None)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        for method, path in (("GET", "/admin"), ("GET", "/admin/api/overview"), ("GET", "/admin/sign-in"),
                             ("POST", "/admin/sign-in")):
            response = await client.request(method, path, headers=BEARER, data={"token": ADMIN})
            assert response.status_code == 403, (method, path)
            error = response.json()["error"]
            assert error["code"] == "admin_disabled" and "DODOLENS_ADMIN_TOKEN" in error["message"]


async def test_scripts_use_the_bearer_token_and_get_json_errors(http: httpx.AsyncClient) -> None:
    missing = await http.get("/admin/api/overview")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_token"
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = await http.get("/admin/api/overview", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "bad_token"
    assert "invalid_token" in wrong.headers["www-authenticate"]
    assert (await http.get("/admin/api/overview", headers=BEARER)).status_code == 200
    in_the_url = await http.get(f"/admin/api/overview?token={ADMIN}")
    assert in_the_url.status_code == 401, "a token in the URL ends up in logs and history: not accepted"
    assert (await http.get("/admin")).json()["error"]["code"] == "missing_token"
    page = await http.get("/admin", headers=BEARER)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"] and page.headers["cache-control"] == "no-store"
    script = await http.get("/admin/admin.js")
    assert script.status_code == 200 and "overview" in script.text


async def test_a_browser_signs_in_with_the_form_and_holds_a_cookie_not_the_token(http: httpx.AsyncClient) -> None:
    navigating = {"Accept": "text/html,application/xhtml+xml"}
    redirected = await http.get("/admin", headers=navigating)
    assert redirected.status_code == 303 and redirected.headers["location"] == "/admin/sign-in"
    form = await http.get("/admin/sign-in", headers=navigating)
    assert form.status_code == 200 and 'name="token"' in form.text and 'type="password"' in form.text
    assert "form-action 'self'" in form.headers["content-security-policy"]

    refused = await http.post("/admin/sign-in", data={"token": "nope"})
    assert refused.status_code == 401 and "not the admin token" in refused.text
    assert "set-cookie" not in refused.headers

    accepted = await http.post("/admin/sign-in", data={"token": ADMIN})
    assert accepted.status_code == 303 and accepted.headers["location"] == "/admin"
    cookie = accepted.headers["set-cookie"]
    assert ADMIN not in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/admin" in cookie
    assert (await http.get("/admin", headers=navigating)).status_code == 200
    assert (await http.get("/admin/api/overview")).status_code == 200
    assert (await http.get("/admin/sign-in")).headers["location"] == "/admin"

    signed_out = await http.post("/admin/sign-out")
    assert signed_out.status_code == 303 and 'dodolens_admin=""' in signed_out.headers["set-cookie"]
    assert (await http.get("/admin/api/overview")).status_code == 401


async def test_stale_forged_and_cross_site_sign_ins_do_not_work(http: httpx.AsyncClient) -> None:
    for value in ("forged", issue_cookie("another token"), issue_cookie(ADMIN, now=time.time() - COOKIE_TTL_S - 1)):
        http.cookies.set(COOKIE, value, domain="127.0.0.1")
        assert (await http.get("/admin/api/overview")).status_code == 401, value
        http.cookies.clear()
    http.cookies.set(COOKIE, issue_cookie(ADMIN), domain="127.0.0.1")
    assert (await http.get("/admin/api/overview")).status_code == 200
    http.cookies.clear()

    for where in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site", "Origin": "null"}):
        cross = await http.post("/admin/sign-in", data={"token": ADMIN}, headers=where)
        assert cross.status_code == 403 and cross.json()["error"]["code"] == "cross_origin"
    json_body = await http.post("/admin/sign-in", json={"token": ADMIN})
    assert json_body.status_code == 415 and json_body.json()["error"]["code"] == "unsupported_media_type"
    huge = await http.post("/admin/sign-in", data={"token": "x" * 10_000})
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "body_too_large"


async def test_wrong_tokens_lock_the_client_out_even_with_the_right_one(http: httpx.AsyncClient) -> None:
    signed_in = httpx.AsyncClient(base_url=str(http.base_url))
    assert (await signed_in.post("/admin/sign-in", data={"token": ADMIN})).status_code == 303
    for _ in range(FAILURES_PER_CLIENT.amount - 1):
        assert (await http.post("/admin/sign-in", data={"token": "guess"})).status_code == 401
    assert (await http.get("/admin/api/overview", headers={"Authorization": "Bearer guess"})).status_code == 401

    locked = await http.post("/admin/sign-in", data={"token": ADMIN})
    assert locked.status_code == 429 and "set-cookie" not in locked.headers
    assert 0 < int(locked.headers["retry-after"]) <= 300 and "too many wrong admin tokens" in locked.text
    api = await http.get("/admin/api/overview", headers=BEARER)
    assert api.status_code == 429 and api.json()["error"]["code"] == "too_many_attempts"
    assert (await signed_in.get("/admin/api/overview")).status_code == 200, "a signed-in browser keeps working"
    await signed_in.aclose()


async def test_failed_attempts_are_bounded_per_client_and_overall() -> None:
    attempts = FailedAttempts(per_client=parse("2/minute"), overall=parse("3/minute"))
    await attempts.failed("a")
    assert await attempts.locked_for("a") == 0
    await attempts.failed("a")
    assert 0 < await attempts.locked_for("a") <= 60 and await attempts.locked_for("b") == 0
    await attempts.failed("b")
    assert 0 < await attempts.locked_for("c") <= 60, "a guesser spread over addresses is bounded too"


def test_a_cookie_is_good_until_it_expires_and_only_for_its_token() -> None:
    now = 1_800_000_000.0
    cookie = issue_cookie(ADMIN, now=now, ttl_s=60)
    assert valid_cookie(ADMIN, cookie, now=now + 60)
    assert not valid_cookie(ADMIN, cookie, now=now + 61)
    assert not valid_cookie("rotated-token", cookie, now=now)
    expires, mac = cookie.split(".")
    assert not valid_cookie(ADMIN, f"{int(expires) + 3600}.{mac}", now=now)
    assert ADMIN not in cookie


async def test_overview_shows_figures_groups_and_alerts(admin_gateway: Runtime, http: httpx.AsyncClient) -> None:
    r = admin_gateway.redis
    assert r is not None
    created = await http.post("/sessions", json={"size": 100})
    sid, token = created.json()["session_id"], created.json()["token"]
    mismatch = await http.post(f"/sessions/{sid}/complete", json={"chunks": 1},
                               headers={"Authorization": f"Bearer {token}"})
    assert mismatch.status_code == 409
    await http.put(f"/sessions/{sid}/chunks/0", content=b"x" * 100,
                   headers={"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"})
    failing = await http.post(f"/sessions/{sid}/complete", json={"chunks": 2},
                              headers={"Authorization": f"Bearer {token}"})
    assert failing.status_code == 422
    await http.post("/sessions", json={"size": 100})
    await ensure_group(r, keys.ANALYZE, keys.ANALYZERS)
    await r.xadd(keys.ANALYZE, {"sid": "f" * 32})
    await r.xadd(keys.ALERTS, {"type": "failed_cleanup", "at": time.time(), "keys": 2})

    body = (await http.get("/admin/api/overview", headers=BEARER)).json()
    assert body["active_sessions"] == 1
    assert body["outcomes"]["error_rate"] == {"ended": 1, "failed": 1, "rate": 1.0}
    assert body["counters"]["sessions_created"] in (1, 2)
    [group] = body["groups"]
    assert (group["stream"], group["group"], group["lag"], group["consumers"]) == (keys.ANALYZE, keys.ANALYZERS, 1, 0)
    assert [a["type"] for a in body["recorded_alerts"]] == ["failed_cleanup"]
    kinds = {a["kind"] for a in body["alerts"]}
    assert {"failed_cleanup", "error_rate"} <= kinds
    assert body["thresholds"] == {"memory": 0.8, "processing_s": 180.0, "error_rate": 0.05, "error_window_s": 900.0}
    assert sid not in str(body)


async def text_of(page: Page, selector: str, want: str, timeout_s: float = 15.0) -> str:
    """Wait until the element shows ``want`` (the page polls every 2 s), then return what it shows."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = (await page.text_content(selector) or "").strip()
        if text == want or time.monotonic() > deadline:
            return text
        await asyncio.sleep(0.1)


async def past_hour(r: Redis, cfg: StreamConfig, now: float) -> tuple[int, int, int]:
    """Analytics records of sessions, completions (with stage timings) and errors spread over the 40 minutes before
    the last two, as the processes of a busy deployment record them; returns how many of each."""
    counts = {EventType.SESSION_CREATED: 0, EventType.ANALYSIS_COMPLETE: 0, EventType.ERROR: 0}

    async def happened(kind: EventType, at: float, **data: object) -> None:
        await record(r, cfg, Event(id="1-0", type=kind, session_id="a" * 32,
                                   timestamp=datetime.fromtimestamp(at, timezone.utc), data=data))
        counts[kind] += 1

    for minutes_ago in range(3, 43):
        at = now - 60 * minutes_ago
        for _ in range(1 + minutes_ago % 4):
            await happened(EventType.SESSION_CREATED, at, size=1000, chunks=1)
        total = 4.0 + minutes_ago % 7
        timings = {"upload_s": 1.0, "queue_s": 0.1, "decode_s": 1.5, "analysis_s": total - 2.6, "total_s": total}
        for spread in (0.8, 1.0, 2.5):
            await happened(EventType.ANALYSIS_COMPLETE, at, result={"timings": {k: v * spread for k, v in timings.items()}})
        if minutes_ago % 9 == 0:
            await happened(EventType.ERROR, at, code="decode_failed", final=True)
    return counts[EventType.SESSION_CREATED], counts[EventType.ANALYSIS_COMPLETE], counts[EventType.ERROR]


async def chart_values(page: Page, chart: str, series: str) -> list[float]:
    return await page.evaluate("([chart, series]) => [...document.querySelectorAll(`#${chart} [data-series=${series}]`)]"
                               ".map((node) => Number(node.dataset.value))", [chart, series])


async def test_dashboard_renders_live_values_and_the_last_hour_in_chromium(admin_gateway: Runtime, http: httpx.AsyncClient) -> None:
    r = admin_gateway.redis
    assert r is not None
    assert admin_gateway.stream is not None
    sessions, completions, errors_seen = await past_hour(r, admin_gateway.stream, time.time())
    await ensure_group(r, keys.JOBS, keys.DECODERS)
    for i in range(3):
        await r.xadd(keys.JOBS, {"sid": f"{i:032x}"})
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 1100})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"{admin_gateway.url}/admin")
        assert page.url.endswith("/admin/sign-in")
        await page.fill("#token", "not the token")
        await page.click("#sign-in")
        assert "not the admin token" in (await page.text_content("#message") or "")
        await page.screenshot(path=str(SIGN_IN_SCREENSHOT))
        await page.fill("#token", ADMIN)
        await page.click("#sign-in")
        await page.wait_for_url("**/admin")
        assert await text_of(page, "#active-sessions", "0") == "0"
        for _ in range(2):
            assert (await http.post("/sessions", json={"size": 1000})).status_code == 201
        await r.xadd(keys.ALERTS, {"type": "failed_cleanup", "at": time.time(), "keys": 1})
        assert await text_of(page, "#active-sessions", "2") == "2"
        assert await text_of(page, "#sessions-created", "2") == "2"
        await page.wait_for_selector("#alerts li[data-kind=failed_cleanup]", timeout=15_000)
        rows = await page.locator("#groups tr").all_inner_texts()
        assert any("dodo:jobs" in row and "decoders" in row and "3" in row for row in rows), rows
        assert "updated" in (await page.text_content("#status") or "")

        assert sum(await chart_values(page, "chart-sessions", "created")) == sessions + 2
        assert sum(await chart_values(page, "chart-sessions", "completed")) == completions
        assert sum(await chart_values(page, "chart-errors", "errors")) == errors_seen
        p50 = await chart_values(page, "chart-stages", "p50")
        p95 = await chart_values(page, "chart-stages", "p95")
        assert len(p50) == len(p95) == 40 and all(a < b for a, b in zip(p50, p95))
        assert max(p95) < 30 and min(p50) >= 4.0
        await page.select_option("#chart-stage", "decode")
        assert max(await chart_values(page, "chart-stages", "p50")) == 1.5
        await page.reload()
        assert await text_of(page, "#active-sessions", "2") == "2", "the sign-in did not survive a reload"
        await page.screenshot(path=str(SCREENSHOT), full_page=True)
        await page.click("#sign-out")
        await page.wait_for_url("**/admin/sign-in")
        await page.goto(f"{admin_gateway.url}/admin")
        assert page.url.endswith("/admin/sign-in"), "signing out did not end the sign-in"
        assert errors == []
    assert SCREENSHOT.stat().st_size > 10_000


async def test_the_dashboard_fits_a_phone(admin_gateway: Runtime) -> None:
    """Wide tables scroll inside their card; the page itself never scrolls sideways at 390 px."""
    r = admin_gateway.redis
    assert r is not None
    await ensure_group(r, keys.JOBS, keys.DECODERS)
    async with chromium() as browser:
        page = await (await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                                has_touch=True)).new_page()
        await sign_in_to_admin(page, admin_gateway.url, ADMIN)
        await page.wait_for_selector("#groups td.num")
        assert await page.evaluate("document.documentElement.scrollWidth") == 390
        chart = await page.locator("#chart-sessions").bounding_box()
        assert chart is not None and chart["x"] >= 0 and chart["x"] + chart["width"] <= 390
        await page.screenshot(path=str(PHONE_SCREENSHOT), full_page=True)
