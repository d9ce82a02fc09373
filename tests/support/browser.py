"""Debian's Chromium, headless, through Playwright (never a browser Playwright downloads)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]


@contextlib.asynccontextmanager
async def chromium(*extra_args: str) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args])
        try:
            yield browser
        finally:
            await browser.close()


async def sign_in_to_admin(page: Page, base_url: str, token: str) -> None:
    """Open /admin, land on the sign-in form, sign in with ``token``, and wait for the dashboard."""
    await page.goto(f"{base_url}/admin")
    await page.fill("#token", token)
    await page.click("#sign-in")
    await page.wait_for_url("**/admin")
