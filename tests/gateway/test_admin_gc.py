"""``POST /admin/api/gc``: the sweep runs now and deletes what it reports, every worker and the gateway
collect their memory, and only the admin may ask."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from jsonschema import Draft202012Validator
from playwright.async_api import expect

from dodolens.runner import Runtime
from dodolens.settings import Settings
from streams import keys
from streams.connection import Redis
from tests.support.browser import chromium, sign_in_to_admin
from tests.support.garbage import uncollected_cycles

ADMIN = "test-admin-token-0123456789"
BEARER = {"Authorization": f"Bearer {ADMIN}"}
ORPHAN, FINISHED, LIVE = "1" * 32, "2" * 32, "3" * 32
SCREENSHOT = Path("/tmp/dodolens-admin-gc.png")


@pytest.fixture
def admin_settings(settings: Settings) -> Settings:
    """No periodic sweep during the test: whatever is swept, the endpoint swept."""
    return settings.with_overrides(admin_token=ADMIN, sweep_interval_s=3600.0)


@pytest.fixture
async def two_workers(admin_settings: Settings) -> AsyncIterator[Runtime]:
    """A gateway with its workers, and a second worker process's worth of workers on the same Redis.

    Workers sweep once as they start, and hear requests made after they started: a first gc answered by both
    puts both behind the test."""
    async with Runtime(admin_settings) as rt, Runtime(admin_settings, gateway=False):
        async with httpx.AsyncClient(base_url=rt.url, timeout=30) as http:
            for _ in range(20):
                if (await http.post("/admin/api/gc", headers=BEARER)).json()["workers_answered"] == 2:
                    break
            else:
                pytest.fail("the two workers never both answered")
        yield rt


async def leave_orphans(r: Redis) -> None:
    """Media of a session whose meta is gone, frames of a finished one, and a live upload's chunks (kept)."""
    for i in range(3):
        await r.xadd(keys.chunks(ORPHAN), {"d": os.urandom(100_000)})
    await r.hset(keys.meta(FINISHED), mapping={"state": "done"})
    await r.xadd(keys.frames(FINISHED), {"d": os.urandom(50_000)})
    await r.hset(keys.meta(LIVE), mapping={"state": "uploading"})
    await r.xadd(keys.chunks(LIVE), {"d": os.urandom(10_000)})
    await r.expire(keys.chunks(LIVE), 300)


async def test_gc_sweeps_now_and_reports_what_it_deleted(two_workers: Runtime) -> None:
    r = two_workers.redis
    assert r is not None
    await leave_orphans(r)
    with uncollected_cycles(2000):
        async with httpx.AsyncClient(base_url=two_workers.url, timeout=30) as http:
            response = await http.post("/admin/api/gc", headers=BEARER)
            spec = (await http.get("/openapi.json")).json()
    assert response.status_code == 200, response.text
    body = response.json()
    documented = spec["paths"]["/admin/api/gc"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    Draft202012Validator(documented).validate(body)

    assert await r.exists(keys.chunks(ORPHAN), keys.frames(FINISHED)) == 0
    assert await r.exists(keys.chunks(LIVE)) == 1, "a live upload's chunks are not garbage"
    assert body["sweep"]["orphan_keys"] == 2 and body["freed"]["keys"] == 2
    assert 350_000 <= body["sweep"]["orphan_bytes"] == body["freed"]["key_bytes"] < 500_000
    assert body["redis"]["used_before"] - body["redis"]["used_after"] >= 300_000
    assert body["freed"]["redis_bytes"] >= 300_000

    assert body["workers_answered"] == 2 and body["note"] is None
    roles = [p["role"] for p in body["processes"]]
    assert roles == ["gateway", "worker", "worker"]
    assert len({p["name"] for p in body["processes"]}) == 3
    assert all(p["pid"] == os.getpid() and p["rss_after"] > 0 for p in body["processes"])
    assert body["processes"][0]["objects_collected"] >= 2000
    assert body["freed"]["process_bytes"] == sum(p["freed_bytes"] for p in body["processes"])
    assert str(ORPHAN) not in response.text and str(FINISHED) not in response.text

    async with httpx.AsyncClient(base_url=two_workers.url, timeout=30) as http:
        again = (await http.post("/admin/api/gc", headers=BEARER)).json()
    assert again["sweep"]["orphan_keys"] == 0 and again["workers_answered"] == 2


async def test_gc_without_workers_says_nothing_was_swept(admin_settings: Settings) -> None:
    async with Runtime(admin_settings, workers=False) as rt:
        assert rt.redis is not None
        await leave_orphans(rt.redis)
        async with httpx.AsyncClient(base_url=rt.url, timeout=30) as http:
            body = (await http.post("/admin/api/gc", headers=BEARER)).json()
        assert body["sweep"] is None and body["workers_answered"] == 0 and "no worker answered" in body["note"]
        assert [p["role"] for p in body["processes"]] == ["gateway"] and body["freed"]["keys"] == 0
        assert await rt.redis.exists(keys.chunks(ORPHAN)) == 1


async def test_gc_is_for_the_admin_only(admin_settings: Settings) -> None:
    async with Runtime(admin_settings, workers=False) as rt, httpx.AsyncClient(base_url=rt.url) as http:
        missing = await http.post("/admin/api/gc")
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_token"
        wrong = await http.post("/admin/api/gc", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "bad_token"
        method = await http.get("/admin/api/gc", headers=BEARER)
        assert method.status_code == 405 and method.json()["error"]["code"] == "method_not_allowed"
        assert (await http.post("/admin/sign-in", data={"token": ADMIN})).status_code == 303
        cross = await http.post("/admin/api/gc", headers={"Sec-Fetch-Site": "cross-site"})
        assert cross.status_code == 403 and cross.json()["error"]["code"] == "cross_origin"


async def test_the_dashboard_button_runs_it_in_chromium(two_workers: Runtime) -> None:
    assert two_workers.redis is not None
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await sign_in_to_admin(page, two_workers.url, ADMIN)
        await leave_orphans(two_workers.redis)
        await page.click("#gc")
        await expect(page.locator("#gc-result")).to_contain_text("Freed 2 orphaned key(s)", timeout=15_000)
        assert "2 worker(s) answered" in (await page.text_content("#gc-result") or "")
        await page.locator("#gc").scroll_into_view_if_needed()
        await page.screenshot(path=str(SCREENSHOT))
        assert errors == []
    assert await two_workers.redis.exists(keys.chunks(ORPHAN)) == 0
