"""Drive Debian's Chromium with Playwright, for browser tests of the duty console.

The browser is the distribution's ``/usr/bin/chromium`` (``scripts/test.sh`` installs it); the
Playwright package only drives it. ``playwright install`` is never run: it downloads a browser
build of its own, which this project's machines cannot fetch.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright, expect

CHROMIUM = Path("/usr/bin/chromium")
#: No sandbox (tests run as root), and nothing that phones home or updates itself.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    # The board beeps for a new red alert; a headless test has no click to unlock audio first.
    "--autoplay-policy=no-user-gesture-required",
]

ROOT = Path(__file__).resolve().parent.parent
#: Every run's screenshots (git-ignored): look at them when a browser test fails.
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
#: The README's screenshots (committed); refreshed only on request, see :func:`publish`.
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"
#: Set to 1 to overwrite docs/screenshots/ with this run's pictures.
UPDATE_DOCS_ENV = "EWG_UPDATE_SCREENSHOTS"


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless Debian Chromium, closed on exit."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


async def screenshot(page: Page, name: str) -> Path:
    """A full-page screenshot ``artifacts/screenshots/<name>.png``, animations stopped."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True, animations="disabled")
    return path


def publish(shot: Path, name: str) -> Path:
    """Copy a screenshot to ``docs/screenshots/<name>.png`` for the README.

    Only when the file is missing or ``EWG_UPDATE_SCREENSHOTS=1``: the pictures show the clock,
    so copying on every run would leave the committed files changed after every test run.
    """
    target = DOCS_SCREENSHOTS / f"{name}.png"
    if not target.exists() or os.environ.get(UPDATE_DOCS_ENV) == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
    return target


async def login(
    page: Page, base_url: str, username: str, password: str, *, lands_on: str = "/"
) -> None:
    """Sign in through the login page as a person would, and wait for the page it leads to."""
    await page.goto(f"{base_url}/login.html")
    await page.locator("input[name=username]").fill(username)
    await page.locator("input[name=password]").fill(password)
    await page.locator("#login-form button[type=submit]").click()
    await page.wait_for_url(re.compile(re.escape(base_url + lands_on) + "$"))
    await expect(page.locator("#login-form")).to_have_count(0)
