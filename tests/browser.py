"""Real Chromium (Debian's, not a downloaded one) driven by Playwright, for
the dashboard's tests and its benchmark."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, async_playwright

ROOT = Path(__file__).resolve().parents[1]
BUILT_PAGE = ROOT / "hub" / "static" / "index.html"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

State = dict[str, Any]


def page_build_problem() -> str | None:
    """Why the built page in hub/static cannot be tested, if it cannot."""
    if not BUILT_PAGE.is_file():
        return "the page is not built: npm ci --prefix web && npm run build --prefix web"
    sources = [ROOT / "web" / "index.html", *(ROOT / "web" / "src").rglob("*")]
    newer = [p.name for p in sources if p.stat().st_mtime > BUILT_PAGE.stat().st_mtime]
    if newer:
        return f"the built page is older than {newer}: npm run build --prefix web"
    return None


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def open_dashboard(page: Page, url: str) -> None:
    """Load the page and wait until it has its hub info and its state hook."""
    await page.goto(url)
    await page.wait_for_function("window.__hub !== undefined", timeout=10_000)


async def hub_state(page: Page) -> State:
    """What the page holds, from its read-only hook `window.__hub.state()`."""
    state: State = await page.evaluate("window.__hub.state()")
    return state


async def wait_for_state(
    page: Page, predicate: Callable[[State], bool], within: float = 10.0, what: str = ""
) -> State:
    deadline = time.monotonic() + within
    while True:
        state = await hub_state(page)
        if predicate(state):
            return state
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page did not show {what or predicate} within {within}s")
        await asyncio.sleep(0.05)


def series(state: State, metric: str) -> dict[str, Any]:
    """The open device's chart data for one metric (empty when it has none)."""
    found: dict[str, Any] = state["open"]["series"].get(metric) or {
        "points": 0,
        "seqs": [],
        "ts": [],
        "values": [],
        "loading": True,
    }
    return found
