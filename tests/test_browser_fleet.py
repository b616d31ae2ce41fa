"""The dashboard in real Chromium against a hub of 20,000 devices: the list
is virtual (a few dozen rows in the DOM), pages from the hub as it scrolls,
searches and filters on the hub, takes live readings for the rows on screen,
and opens any device without the others.

`FLEET_FIGURES=20000,100000 pytest tests/test_browser_fleet.py -k figures -s`
measures the figures of docs/dashboard.md ("Large fleets") instead."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from hub.config import PresenceSettings, Settings
from hub.models import Attribute, PendingReading, PresenceChange, WriteBatch
from hub.store.sqlite import SqliteStore
from tests import test_browser
from tests.browser import hub_state, open_dashboard, series, wait_for_state
from tests.hubs import serve_hub
from tests.test_browser import chip, now_ms
from tests.test_e2e import post

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# test_browser's fixtures: Chromium, and a fresh tab that must not throw.
browser = test_browser.browser
page = test_browser.page

FLEET = 20_000
GROUPS = ("north", "south", "east", "west")
HOUR = 3_600_000


def device(i: int) -> str:
    return f"sim-{i:05d}"


def serial(i: int) -> str:
    """An attribute value unique to device i, and no substring of any id."""
    return f"ZX{i * 7919 % 100_000:05d}"


def is_online(i: int) -> bool:
    return i % 3 != 0


def is_stale(i: int) -> bool:
    """Online, but last heard an hour ago."""
    return is_online(i) and i % 10 == 1


def fleet_batch(first: int, count: int, now: int) -> WriteBatch:
    readings, attributes, presence = [], [], []
    seen: dict[str, int] = {}
    for i in range(first, first + count):
        d = device(i)
        last = now - HOUR if is_stale(i) else now
        readings.append(PendingReading(d, "temperature", last, 20.0 + i % 10, "Cel"))
        readings.append(PendingReading(d, "humidity", last, 40.0 + i % 30, "%RH"))
        attributes.append(Attribute(d, "serial", serial(i), last))
        attributes.append(Attribute(d, "group", GROUPS[i % 4], last))
        presence.append(PresenceChange(d, is_online(i), last))
        seen[d] = last
    return WriteBatch(
        readings=tuple(readings), attributes=tuple(attributes), presence=tuple(presence), seen=seen
    )


async def seed(settings: Settings, count: int) -> None:
    """`count` devices written straight into the hub's store, before it serves."""
    store = SqliteStore(settings.storage.path)
    await store.open()
    try:
        now = now_ms()
        for first in range(0, count, 5000):
            await store.write(fleet_batch(first, min(5000, count - first), now))
    finally:
        await store.close()


def fleet_settings(settings: Settings) -> Settings:
    # Seeded devices stay online (or stale) for the test, not offline after 2 min.
    return replace(settings, presence=PresenceSettings(offline_after=86_400))


@pytest.fixture
async def fleet(settings: Settings) -> AsyncIterator[Any]:
    settings = fleet_settings(settings)
    await seed(settings, FLEET)
    async with serve_hub(settings) as running:
        yield running


def row_of(device_id: str) -> str:
    return f'#device-rows tr[data-device="{device_id}"]'


def row(page: Page, device_id: str) -> Any:
    return page.locator(row_of(device_id))


async def scroll_list(page: Page, where: str) -> None:
    """Scroll the list's own scroller: `where` is a JS expression of `el`."""
    await page.locator("#device-scroll").evaluate(f"el => {{ el.scrollTop = {where}; }}")


async def test_the_list_holds_only_the_rows_on_screen_and_pages_as_it_scrolls(
    fleet: Any, page: Page
) -> None:
    await open_dashboard(page, fleet.url)
    await expect(row(page, device(0))).to_be_visible()
    await expect(chip(page, device(3), "temperature")).to_have_text("23 °C")
    await expect(page.locator("#device-count")).to_have_text("20,000")
    rows = page.locator("#device-rows tr")
    assert await rows.count() <= 60
    assert await page.evaluate("document.getElementsByTagName('*').length") < 2000
    # The table says how many rows it has, and where each is.
    await expect(page.locator("#devices")).to_have_attribute("aria-rowcount", str(FLEET + 1))
    await expect(row(page, device(5))).to_have_attribute("aria-rowindex", "7")

    # The scrollbar dragged to the end: the last devices, walked to page by page.
    await scroll_list(page, "el.scrollHeight")
    await expect(row(page, device(FLEET - 1))).to_be_visible(timeout=15_000)
    await expect(chip(page, device(FLEET - 1), "humidity")).to_have_text("59 %RH")
    assert await rows.count() <= 60
    # ...and to the middle, where the rows are the devices of those positions.
    await scroll_list(page, "el.scrollHeight / 2")
    middle = page.locator('#device-rows tr[data-index="10000"]')
    await expect(middle).to_have_attribute("data-device", device(10_000))
    await expect(middle.locator(".badge")).to_have_text("online")
    assert await rows.count() <= 60
    # Subscribed to the rows placed only, once the scrolling settled.
    state = await wait_for_state(
        page, lambda s: device(10_000) in s["subscribed"], what="the middle rows subscribed"
    )
    assert len(state["subscribed"]) <= 60, state["subscribed"]
    # The page holds the devices near the view, not the fleet.
    assert len(state["devices"]) <= 3000, len(state["devices"])

    # Keyboard: from the top, ArrowDown past the rows first placed, then Enter.
    await scroll_list(page, "0")
    await row(page, device(0)).focus()
    for _ in range(40):
        await page.keyboard.press("ArrowDown")
    await expect(row(page, device(40))).to_be_focused()
    await page.keyboard.press("ArrowUp")
    await expect(row(page, device(39))).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#detail-title")).to_have_text(device(39))
    await expect(row(page, device(39))).to_have_attribute("aria-current", "true")


async def test_search_and_filters_are_answered_by_the_hub(fleet: Any, page: Page) -> None:
    await open_dashboard(page, fleet.url)
    await expect(row(page, device(0))).to_be_visible()
    rows = page.locator("#device-rows tr")
    count = page.locator("#device-count")

    # A piece of an id: sim-12340 to sim-12349.
    await page.fill("#search", "sim-1234")
    await expect(rows).to_have_count(10)
    await expect(rows.first).to_have_attribute("data-device", device(12_340))
    await expect(count).to_have_text("10 of 20,000")
    # An attribute value, in any case.
    await page.fill("#search", serial(4321).lower())
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-device", device(4321))
    await page.fill("#search", "no-such-thing")
    await expect(rows).to_have_count(0)
    await expect(page.locator("#list-empty")).to_have_text("No device matches.")
    await page.fill("#search", "")
    await expect(count).to_have_text("20,000")

    # The status filter, with the hub's counts in its options.
    stale = sum(is_stale(i) for i in range(FLEET))
    offline = sum(not is_online(i) for i in range(FLEET))
    status = page.locator("#status-filter")
    await expect(status.locator('option[value="stale"]')).to_have_text(f"stale ({stale:,})")
    await expect(status.locator('option[value="offline"]')).to_have_text(f"offline ({offline:,})")
    await page.select_option("#status-filter", "stale")
    await expect(count).to_have_text(f"{stale:,} of 20,000")
    await expect(rows.first).to_have_attribute("data-device", device(1))
    await expect(rows.first.locator(".badge")).to_have_text("stale")

    # The group filter too, with the status filter still on.
    group = page.locator("#group-filter")
    await expect(group.locator('option[value="west"]')).to_have_text("west (5,000)")
    await page.select_option("#group-filter", "west")
    west_stale = [i for i in range(FLEET) if is_stale(i) and GROUPS[i % 4] == "west"]
    await expect(count).to_have_text(f"{len(west_stale):,} of 20,000")
    await expect(rows.first).to_have_attribute("data-device", device(west_stale[0]))
    await page.select_option("#status-filter", "")
    await expect(count).to_have_text("5,000 of 20,000")


async def test_live_readings_reach_the_rows_on_screen_and_any_device_opens_alone(
    fleet: Any, page: Page
) -> None:
    await open_dashboard(page, fleet.url)
    await expect(chip(page, device(2), "temperature")).to_have_text("22 °C")
    await wait_for_state(page, lambda s: device(2) in s["subscribed"], what="the subscription")
    status, _ = await post(fleet, device(2), b'{"temperature": 31.5}')
    assert status == 202
    await expect(chip(page, device(2), "temperature")).to_have_text("31.5 °C")
    state = await hub_state(page)
    # (counted as a live reading, not learnt from a page fetched again)
    assert state["devices"][device(2)]["metrics"]["temperature"]["count"] == 1

    # A device far from the rows on screen, opened by its address: its
    # values, attributes and chart come without the list reaching it.
    far = device(17_777)
    await page.evaluate(f"location.hash = '#device={far}'")
    await expect(page.locator("#detail-title")).to_have_text(far)
    await expect(page.locator("#attribute-rows")).to_contain_text(serial(17_777))
    await wait_for_state(page, lambda s: series(s, "temperature")["points"] == 1, what="history")
    await wait_for_state(page, lambda s: far in s["subscribed"], what="the open device subscribed")
    status, _ = await post(fleet, far, b'{"temperature": 12.25}')
    assert status == 202
    state = await wait_for_state(
        page, lambda s: series(s, "temperature")["points"] == 2, what="the live reading"
    )
    assert series(state, "temperature")["values"][-1] == 12.25
    await expect(page.locator("#latest-rows")).to_contain_text("12.25")
    assert await row(page, far).count() == 0  # the list did not go there


async def test_devices_that_come_later_appear_without_a_reload(
    settings: Settings, page: Page
) -> None:
    """Nothing tells the page of devices it does not subscribe to but the
    counts (every 5 s): when they change, the rows in view are asked again."""
    async with serve_hub(settings) as running:
        await open_dashboard(page, running.url)
        await expect(page.locator("#list-empty")).to_contain_text("No devices yet")
        status, _ = await post(running, "b-1", b'{"humidity": 40}')
        assert status == 202
        await expect(chip(page, "b-1", "humidity")).to_have_text("40 %RH", timeout=10_000)
        await expect(page.locator("#list-empty")).to_be_hidden()
        # ...and after the last row of a list that had ended.
        await post(running, "c-1", b'{"humidity": 50}')
        await expect(chip(page, "c-1", "humidity")).to_have_text("50 %RH", timeout=10_000)
        await expect(page.locator("#device-count")).to_have_text("2")


# -- figures -----------------------------------------------------------------

FIGURE_SIZES = [int(n) for n in os.environ.get("FLEET_FIGURES", "").split(",") if n]


@pytest.mark.skipif(not FIGURE_SIZES, reason="set FLEET_FIGURES=20000,100000 to measure")
@pytest.mark.timeout(900)
@pytest.mark.parametrize("size", FIGURE_SIZES)
async def test_figures(settings: Settings, browser: Browser, size: int) -> None:
    """Time to first rows, DOM nodes, JS heap, search and far-jump latency."""
    settings = fleet_settings(settings)
    started = time.monotonic()
    await seed(settings, size)
    print(f"\n{size:,} devices seeded in {time.monotonic() - started:.1f} s")
    async with serve_hub(settings) as running:
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        tab = await context.new_page()
        cdp = await context.new_cdp_session(tab)
        await tab.goto(running.url)
        first_rows = await (
            await tab.wait_for_function(
                "document.querySelector('#device-rows tr[data-device] .chip') && performance.now()",
                polling="raf",
                timeout=30_000,
            )
        ).json_value()
        await expect(tab.locator("#device-count")).to_have_text(f"{size:,}")
        await tab.wait_for_timeout(1000)  # let it settle: counts, subscription
        nodes = await tab.evaluate("document.getElementsByTagName('*').length")
        heap = (await cdp.send("Runtime.getHeapUsage"))["usedSize"]

        async def timed(action: str, done: str) -> float:
            """Milliseconds from running `action` in the page to the first
            animation frame at which `done` holds (within 30 s)."""
            ms: float = await tab.evaluate(
                """([action, done]) => new Promise((resolve, reject) => {
                    const t0 = performance.now();
                    new Function(action)();
                    const check = () => {
                        if (new Function(done)()) resolve(performance.now() - t0);
                        else if (performance.now() - t0 > 30000) reject(new Error(done));
                        else requestAnimationFrame(check);
                    };
                    check();
                })""",
                [action, done],
            )
            return ms

        async def search(q: str, matches: int, first: str) -> float:
            """Type `q` at once (a paste): until the count and first row show its answer."""
            shown = f"{matches:,} of {size:,}" if q else f"{size:,}"
            return await timed(
                f"const s = document.getElementById('search'); s.value = '{q}';"
                "s.dispatchEvent(new Event('input'));",
                f"return document.getElementById('device-count').textContent === '{shown}'"
                "&& document.querySelector('#device-rows tr')?.dataset.device === "
                f"'{first}';",
            )

        searches: dict[str, float] = {}
        unique = (7_919 + 1_234) % size
        for label, q, matches, first in [
            ("an attribute value (1 match)", serial(unique), 1, device(unique)),
            ("a piece of an id (10 matches)", "sim-1234", 10, device(12_340)),
            ("a group name (1 in 4)", "west", size // 4, device(3)),
            ("a piece of 10,000 ids", "sim-1", 10_000, device(10_000)),
        ]:
            searches[label] = await search(q, matches, first)
            await search("", size, device(0))
        bottom = await timed(
            "const el = document.getElementById('device-scroll'); el.scrollTop = el.scrollHeight;",
            f"return !!document.querySelector('{row_of(device(size - 1))} .chip');",
        )
        rows_after = await tab.locator("#device-rows tr").count()
        heap_after = (await cdp.send("Runtime.getHeapUsage"))["usedSize"]
        far = device(size // 2 + 2)  # (not a stale one: its reading is in the Live range)
        opened = await timed(
            f"location.hash = '#device={far}';",
            "const s = window.__hub.state().open.series.temperature;"
            "return !!s && s.points === 1 && !s.loading;",
        )
        await context.close()
    figures = {
        "first rows (ms)": round(first_rows),
        "DOM nodes": nodes,
        "JS heap (MB)": round(heap / 1e6, 1),
        **{f"search for {label} (ms)": round(ms) for label, ms in searches.items()},
        "scrollbar to the end, last row shown (ms)": round(bottom),
        "rows in the DOM after": rows_after,
        "JS heap after (MB)": round(heap_after / 1e6, 1),
        "open a device from its address, chart drawn (ms)": round(opened),
    }
    for name, value in figures.items():
        print(f"{size:>7,} devices | {name}: {value}")
