"""``/admin``: closed without a token, JSON overview behind it, and the page live in headless Chromium."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, async_playwright

from dodolens.runner import Runtime
from dodolens.settings import Settings
from gateway.app import create_app
from gateway.config import GatewayConfig
from streams import keys
from streams.connection import Redis
from streams.jobs import ensure_group

ADMIN = "test-admin-token-0123456789"
CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = Path("/tmp/dodolens-admin.png")


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
        for path in ("/admin", "/admin/api/overview", f"/admin?token={ADMIN}"):
            response = await client.get(path, headers=BEARER)
            assert response.status_code == 403
            error = response.json()["error"]
            assert error["code"] == "admin_disabled" and "DODOLENS_ADMIN_TOKEN" in error["message"]


async def test_the_token_is_required_and_checked(http: httpx.AsyncClient) -> None:
    missing = await http.get("/admin/api/overview")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_token"
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = await http.get("/admin/api/overview", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "bad_token"
    assert (await http.get("/admin?token=nope")).status_code == 403
    assert (await http.get("/admin/api/overview", headers=BEARER)).status_code == 200
    assert (await http.get(f"/admin/api/overview?token={ADMIN}")).status_code == 200
    assert (await http.get("/admin")).status_code == 401
    http.cookies.set("dodolens_admin", "forged", domain="127.0.0.1")
    assert (await http.get("/admin")).status_code == 401
    http.cookies.clear()

    opened = await http.get(f"/admin?token={ADMIN}")
    assert opened.status_code == 303 and opened.headers["location"] == "/admin"
    cookie = opened.headers["set-cookie"]
    assert ADMIN not in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/admin" in cookie
    page = await http.get("/admin")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"] and page.headers["cache-control"] == "no-store"
    assert (await http.get("/admin/api/overview")).status_code == 200
    script = await http.get("/admin/admin.js")
    assert script.status_code == 200 and "overview" in script.text


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


async def test_dashboard_renders_live_values_in_chromium(admin_gateway: Runtime, http: httpx.AsyncClient) -> None:
    r = admin_gateway.redis
    assert r is not None
    await ensure_group(r, keys.JOBS, keys.DECODERS)
    for i in range(3):
        await r.xadd(keys.JOBS, {"sid": f"{i:032x}"})
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update"])
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 1100})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{admin_gateway.url}/admin?token={ADMIN}")
            assert await text_of(page, "#active-sessions", "0") == "0"
            assert page.url.endswith("/admin"), "the token stayed in the address bar"
            for _ in range(2):
                assert (await http.post("/sessions", json={"size": 1000})).status_code == 201
            await r.xadd(keys.ALERTS, {"type": "failed_cleanup", "at": time.time(), "keys": 1})
            assert await text_of(page, "#active-sessions", "2") == "2"
            assert await text_of(page, "#sessions-created", "2") == "2"
            await page.wait_for_selector("#alerts li[data-kind=failed_cleanup]", timeout=15_000)
            rows = await page.locator("#groups tr").all_inner_texts()
            assert any("dodo:jobs" in row and "decoders" in row and "3" in row for row in rows), rows
            assert "updated" in (await page.text_content("#status") or "")
            await page.reload()
            assert await text_of(page, "#active-sessions", "2") == "2", "the token did not survive a reload"
            await page.screenshot(path=str(SCREENSHOT), full_page=True)
            assert errors == []
        finally:
            await browser.close()
    assert SCREENSHOT.stat().st_size > 10_000
