"""The dashboard in real Chromium against the real hub: live values, polling,
a hub restart (replay, and a gap filled from history), admin commands, and
device strings that stay text."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
import socketio
from playwright.async_api import Browser, Page, Route, expect

from hub.config import AuthSettings, ReplaySettings, Settings
from tests.brokers import Mosquitto
from tests.browser import (
    ARTIFACTS,
    State,
    chromium,
    hub_state,
    open_dashboard,
    page_build_problem,
    series,
    wait_for_state,
)
from tests.hubs import RunningHub, serve_hub
from tests.test_e2e import post, publish

pytestmark = pytest.mark.browser


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    problem = page_build_problem()
    assert problem is None, problem
    async with chromium() as launched:
        yield launched


@pytest.fixture
async def page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A fresh tab; a screenshot in test-artifacts/ when the test failed, and
    no uncaught error in the page's scripts."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    tab = await context.new_page()
    tab.set_default_timeout(10_000)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    failures = request.session.testsfailed
    yield tab
    if request.session.testsfailed > failures:
        ARTIFACTS.mkdir(exist_ok=True)
        name = request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
        await tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    await context.close()
    assert not errors, f"the page threw: {errors}"


def now_ms() -> int:
    return int(time.time() * 1000)


async def post_readings(running: RunningHub, device: str, first: int, count: int) -> None:
    """Readings of metric `n` with device seqs first..first+count-1, 10 ms apart."""
    base = now_ms() - 60_000
    for start in range(first, first + count, 500):
        envelopes = [
            f'{{"ts": {base + i * 10}, "seq": {i}, "values": {{"n": {i}}}}}'
            for i in range(start, min(first + count, start + 500))
        ]
        status, body = await post(running, device, "[" + ",".join(envelopes) + "]")
        assert status == 202, body


def stored_seqs(settings: Settings, device: str, metric: str) -> list[int]:
    with sqlite3.connect(settings.storage.path) as db:
        rows = db.execute(
            "SELECT seq FROM readings WHERE device_id = ? AND metric = ? ORDER BY ts, seq",
            (device, metric),
        ).fetchall()
    return [seq for (seq,) in rows]


def chip(page: Page, device: str, metric: str) -> Any:
    """The value shown for one metric of one device in the list."""
    row = page.locator(f'#device-rows tr[data-device="{device}"]')
    return row.locator(".chip", has=page.locator(".chip-name", has_text=metric)).locator(
        ".chip-value"
    )


async def test_the_list_shows_devices_from_http_and_mqtt_and_updates_live(
    settings: Settings, mosquitto: Mosquitto, page: Page
) -> None:
    async with serve_hub(settings) as running:
        await post(running, "http-1", b'{"humidity": 40}')
        await publish(
            mosquitto, "devices/mqtt-1/telemetry", b'{"temperature": {"value": 70, "unit": "degF"}}'
        )
        await open_dashboard(page, running.url)

        await expect(chip(page, "http-1", "humidity")).to_have_text("40 %RH")
        await expect(chip(page, "mqtt-1", "temperature")).to_have_text("21.11 °C")
        row = page.locator('#device-rows tr[data-device="mqtt-1"]')
        await expect(row.locator(".badge")).to_have_text("online")
        await expect(page.locator("#conn-state")).to_have_text("connected")
        await expect(page.locator("#conn-transport")).to_have_text("websocket")

        # Live: new values reach the list without a reload, over both paths.
        await post(running, "http-1", b'{"humidity": 41.5}')
        await publish(mosquitto, "devices/mqtt-1/telemetry", b'{"temperature": 22.25}')
        await expect(chip(page, "http-1", "humidity")).to_have_text("41.5 %RH")
        await expect(chip(page, "mqtt-1", "temperature")).to_have_text("22.25 °C")

        # Search narrows the list; keyboard opens a device (Tab to the row, Enter).
        await page.fill("#search", "mqtt")
        await expect(page.locator("#device-rows tr")).to_have_count(1)
        await page.fill("#search", "")
        await expect(page.locator("#device-rows tr")).to_have_count(2)
        await page.locator('#device-rows tr[data-device="http-1"]').focus()
        await page.keyboard.press("ArrowDown")
        await page.keyboard.press("Enter")
        await expect(page.locator("#detail-title")).to_have_text("mqtt-1")
        assert page.url.endswith("#device=mqtt-1")
        chart = page.locator('figure.chart[data-metric="temperature"]')
        await expect(chart.locator(".chart-unit")).to_have_text("in °C")
        state = await wait_for_state(
            page, lambda s: series(s, "temperature")["points"] == 2, what="2 chart points"
        )
        assert series(state, "temperature")["values"] == [pytest.approx(21.1111111), 22.25]

        for value in (23, 24, 25):
            await publish(mosquitto, "devices/mqtt-1/telemetry", f'{{"temperature": {value}}}')
        state = await wait_for_state(
            page, lambda s: series(s, "temperature")["points"] == 5, what="5 chart points"
        )
        assert series(state, "temperature")["values"][-3:] == [23, 24, 25]
        await expect(page.locator("#latest-rows")).to_contain_text("25")


@pytest.mark.parametrize("forced_by", ["hub", "page"])
async def test_polling_only_still_updates_and_says_polling(
    settings: Settings, page: Page, forced_by: str
) -> None:
    if forced_by == "hub":
        settings = replace(settings, server=replace(settings.server, transports=("polling",)))
    query = "?transport=polling" if forced_by == "page" else ""
    async with serve_hub(settings) as running:
        await post(running, "p-1", b'{"battery": 3.3}')
        await open_dashboard(page, f"{running.url}/{query}")
        await expect(chip(page, "p-1", "battery")).to_have_text("3.3")
        await expect(page.locator("#conn-state")).to_have_text("connected")
        # an upgrade is refused by the hub, or never tried by the page
        expected = "refused" if forced_by == "hub" else "none"
        await wait_for_state(page, lambda s: s["connection"]["upgrade"] == expected)
        await expect(page.locator("#conn-transport")).to_have_text("polling")
        for value in (3.1, 2.9):
            await post(running, "p-1", f'{{"battery": {value}}}')
        await expect(chip(page, "p-1", "battery")).to_have_text("2.9")
        state = await hub_state(page)
        assert state["connection"]["transport"] == "polling"
        assert state["devices"]["p-1"]["metrics"]["battery"]["count"] == 2


async def test_a_dashboard_token_is_asked_for_and_presented(settings: Settings, page: Page) -> None:
    settings = replace(settings, auth=AuthSettings(dashboard_token="dash"))
    async with serve_hub(settings) as running:
        await post(running, "t-1", b'{"humidity": 50}')
        await post(running, "t-2", b'{"humidity": 40}')
        await open_dashboard(page, running.url)
        await expect(page.locator("#conn-state")).to_contain_text("refused")
        await page.fill("#dashboard-token", "dash")
        await page.press("#dashboard-token", "Enter")
        await expect(page.locator("#conn-state")).to_have_text("connected")
        # The device list and history are read over HTTP, with the token too.
        await expect(chip(page, "t-2", "humidity")).to_have_text("40 %RH")
        await post(running, "t-1", b'{"humidity": 51}')
        await expect(chip(page, "t-1", "humidity")).to_have_text("51 %RH")
        await page.evaluate("location.hash = '#device=t-1'")
        await wait_for_state(page, lambda s: series(s, "humidity")["points"] == 2, what="history")


@pytest.mark.parametrize("outcome", ["replay", "gap"])
async def test_a_hub_restart_leaves_no_hole_in_the_chart(
    settings: Settings, page: Page, outcome: str
) -> None:
    # A slow replay, so that its progress shows; a small backlog limit for the gap.
    settings = replace(
        settings,
        replay=ReplaySettings(rate=400, burst=50, max_backlog=100 if outcome == "gap" else 100_000),
    )
    missed = 500

    def socket_io(url: str) -> bool:
        return "/socket.io/" in url

    async def refuse(route: Route) -> None:
        await route.abort("connectionrefused")

    async with serve_hub(settings) as running:
        port = running.port
        await post_readings(running, "r1", 0, 50)
        await open_dashboard(page, f"{running.url}/#device=r1")
        await wait_for_state(page, lambda s: series(s, "n")["points"] == 50, what="history")
        await expect(page.locator("#conn-transport")).to_have_text("websocket")
        await post_readings(running, "r1", 50, 50)
        await wait_for_state(page, lambda s: series(s, "n")["points"] == 100, what="live")
        # The page may not reach the hub until told: the readings below are
        # committed while it is away, whenever it would have come back.
        await page.route(socket_io, refuse)

    await wait_for_state(
        page, lambda s: s["connection"]["state"] == "reconnecting", what="reconnecting"
    )
    async with serve_hub(settings, port=port) as running:
        await post_readings(running, "r1", 100, missed)
        await page.unroute(socket_io, refuse)
        expected = stored_seqs(settings, "r1", "n")
        assert len(expected) == 100 + missed

        def whole(state: State) -> bool:
            return series(state, "n")["seqs"] == expected and not state["connection"]["replay"]

        state = await wait_for_state(page, whole, within=20, what="every stored reading")
        # ...and live after that.
        await post_readings(running, "r1", 100 + missed, 5)
        expected = stored_seqs(settings, "r1", "n")
        state = await wait_for_state(page, whole, what="the live readings after")

    assert series(state, "n")["values"] == list(range(100 + missed + 5))
    assert state["cursor"]["seq"] == expected[-1]
    if outcome == "replay":
        # The connection bar showed the replay moving, not just its start and end.
        progress = [t for t in state["bar"] if t.startswith("replaying ")]
        assert all(t.endswith(f" of {missed}") for t in progress), progress
        assert any(0 < int(t.split()[1]) < missed for t in progress), progress
        assert state["replayLog"][0] == f"replaying 0 of {missed}"
        assert state["replayLog"][-1] == f"replay done: {missed} readings"
        assert state["stats"]["gaps"] == 0
    else:
        assert state["stats"]["gaps"] == 1
        assert any(t.startswith("gap") and "backlog" in t for t in state["replayLog"])


class CommandedDevice:
    """A device on `/devices` (python-socketio) that answers every command."""

    def __init__(self, url: str, device_id: str) -> None:
        self.url = url
        self.device_id = device_id
        self.commands: list[dict[str, Any]] = []
        self.client = socketio.AsyncClient(reconnection=False)
        self.client.on("command", self.on_command, namespace="/devices")

    async def on_command(self, command: dict[str, Any]) -> dict[str, Any]:
        self.commands.append(command)
        return {"id": command["id"], "ok": True, "result": {"pong": command["args"]}}

    async def __aenter__(self) -> CommandedDevice:
        await self.client.connect(
            self.url,
            namespaces=["/devices"],
            auth={"device_id": self.device_id, "token": ""},
            wait_timeout=10,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.disconnect()


async def test_an_admin_sends_a_command_and_sees_the_reply_and_the_rejections(
    settings: Settings, page: Page
) -> None:
    settings = replace(settings, auth=AuthSettings(admin_token="adm"))
    async with serve_hub(settings) as running, CommandedDevice(running.url, "dev-1") as device:
        status, _ = await post(running, "dev-1", b'{"pressure": []}')
        assert status == 400
        await open_dashboard(page, running.url)
        await page.click("#admin summary")
        await expect(page.locator("#command-send")).to_be_disabled()

        await page.fill("#admin-token", "wrong")
        await page.click("#admin-login button[type=submit]")
        await expect(page.locator("#admin-state")).to_contain_text("refused")
        await page.fill("#admin-token", "adm")
        await page.click("#admin-login button[type=submit]")
        await expect(page.locator("#admin-state")).to_have_text("admin connected")

        await page.fill("#command-device", "dev-1")
        await page.fill("#command-name", "ping")
        await page.fill("#command-args", '{"n": 7}')
        await page.click("#command-send")
        reply = page.locator("#command-reply")
        await expect(reply).to_contain_text('"pong"')
        answer = json.loads(await reply.text_content() or "")
        assert answer == {"id": device.commands[0]["id"], "ok": True, "result": {"pong": {"n": 7}}}
        assert [(c["name"], c["args"]) for c in device.commands] == [("ping", {"n": 7})]
        await expect(page.locator("#command-state")).to_contain_text("ok in")

        rows = page.locator("#rejection-rows tr")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_contain_text("dev-1")
        await expect(rows.first).to_contain_text("invalid_value")
        await expect(rows.first).to_contain_text('{"pressure": []}')
        await post(running, "dev-1", b"{not json")
        await page.click("#rejections-refresh")
        await expect(rows).to_have_count(2)
        await expect(rows.first).to_contain_text("invalid_json")

        # The token stays with the tab (sessionStorage): a reload is still unlocked.
        await page.reload()
        await page.click("#admin summary")
        await expect(page.locator("#admin-state")).to_have_text("admin connected")


async def test_device_strings_are_shown_as_text_and_run_nothing(
    settings: Settings, page: Page
) -> None:
    settings = replace(settings, auth=AuthSettings(admin_token="adm"))
    label = "<img src=x onerror=window.__pwned=1><b>bold</b>"
    async with serve_hub(settings) as running:
        body = {"temperature": 20, "label": label, "note": {"value": 2, "unit": "<i>u</i>"}}
        status, answer = await post(running, "x1", json.dumps(body))
        assert (status, answer["accepted"]) == (202, 2), answer
        bad = {"comment": "<script>window.__pwned=2</script>", "pressure": []}
        await post(running, "x1", json.dumps(bad))
        await open_dashboard(page, f"{running.url}/#device=x1")
        await page.evaluate("sessionStorage.setItem('telemetry-hub.admin-token', 'adm')")
        await page.reload()
        await page.click("#admin summary")
        await expect(page.locator("#rejection-rows tr")).to_have_count(1)

        await expect(page.locator("#attribute-rows")).to_contain_text(label)
        await expect(page.locator("#attribute-rows")).to_contain_text(bad["comment"])
        await expect(chip(page, "x1", "note")).to_have_text("2 <i>u</i>")
        await expect(page.locator('figure.chart[data-metric="note"] .chart-unit')).to_have_text(
            "in <i>u</i>"
        )
        await expect(page.locator("#rejection-rows")).to_contain_text("<script>window.__pwned=2")
        # An image of our own that fails to load, waited for: an injected
        # image's onerror, queued before it, would have fired by then.
        await page.evaluate(
            "new Promise(done => { const img = new Image(); img.onerror = done;"
            " img.src = '/no-such-image-' + Date.now() + '.png'; })"
        )
        assert await page.evaluate("window.__pwned") is None
        made = await page.evaluate(
            "document.querySelectorAll('main img, main b, main i, main script').length"
        )
        assert made == 0


async def test_history_ranges_draw_buckets_and_count_a_live_reading_once(
    settings: Settings, page: Page
) -> None:
    async with serve_hub(settings) as running:
        # Two hours of history, a reading a minute.
        now = now_ms()
        envelopes = [
            f'{{"ts": {now - (119 - i) * 60_000}, "seq": {i}, "values": {{"n": {i}}}}}'
            for i in range(120)
        ]
        status, _ = await post(running, "h1", "[" + ",".join(envelopes) + "]")
        assert status == 202
        await open_dashboard(page, f"{running.url}/#device=h1")

        def loaded(state: State) -> bool:
            return state["open"]["range"] != "live" and not series(state, "n")["loading"]

        # Live 5 min: the raw readings of the last five minutes.
        state = await wait_for_state(
            page, lambda s: series(s, "n")["points"] >= 5 and not series(s, "n")["loading"]
        )
        assert series(state, "n")["values"][-5:] == [115, 116, 117, 118, 119]
        assert series(state, "n")["counts"] is None

        # 1 h, chosen with the keyboard: 10 s buckets, one reading in each here.
        one_hour = page.locator('#ranges button[data-range="1h"]')
        await one_hour.focus()
        await page.keyboard.press("Enter")
        await expect(one_hour).to_have_attribute("aria-pressed", "true")
        assert page.url.endswith("#device=h1&range=1h")
        state = await wait_for_state(page, loaded, what="the 1 h buckets")
        counts = series(state, "n")["counts"]
        assert sum(counts) in (60, 61), counts
        assert set(counts) == {1}, counts
        assert series(state, "n")["values"][-1] == 119

        # A live reading lands in the last bucket, counted once.
        await post(running, "h1", f'{{"ts": {now_ms()}, "seq": 120, "values": {{"n": 500}}}}')
        state = await wait_for_state(
            page, lambda s: sum(series(s, "n")["counts"]) == sum(counts) + 1, what="live bucket"
        )
        # (in a bucket of its own, or in the one of the last stored reading, 119)
        last = (series(state, "n")["counts"][-1], series(state, "n")["values"][-1])
        assert last in ((1, 500), (2, (119 + 500) / 2)), last

        # 7 d: the whole history in a handful of 30 min buckets.
        await page.click('#ranges button[data-range="7d"]')
        state = await wait_for_state(
            page, lambda s: loaded(s) and s["open"]["range"] == "7d", what="the 7 d buckets"
        )
        counts = series(state, "n")["counts"]
        assert sum(counts) == 121, counts
        assert len(counts) <= 6, counts
        await expect(page.locator("#range-note")).to_contain_text("30m buckets")


async def test_stale_and_offline_devices_say_so(
    settings: Settings, mosquitto: Mosquitto, page: Page
) -> None:
    settings = replace(settings, dashboard=replace(settings.dashboard, stale_after=1.5))
    async with serve_hub(settings) as running:
        await post(running, "quiet-1", b'{"humidity": 40}')
        await publish(mosquitto, "devices/radio-1/status", "online", retain=True)
        await publish(mosquitto, "devices/radio-1/telemetry", b'{"humidity": 41}')
        await open_dashboard(page, running.url)
        quiet = page.locator('#device-rows tr[data-device="quiet-1"] .badge')
        radio = page.locator('#device-rows tr[data-device="radio-1"] .badge')
        await expect(quiet).to_have_text("online")
        # No data for longer than stale_after: stale, until it sends again.
        await expect(quiet).to_have_text("stale", timeout=5_000)
        await post(running, "quiet-1", b'{"humidity": 42}')
        await expect(quiet).to_have_text("online")
        # A device that says it went away is offline at once.
        await publish(mosquitto, "devices/radio-1/status", "offline", retain=True)
        await expect(radio).to_have_text("offline")
        await expect(page.locator('#device-rows tr[data-device="radio-1"] .seen')).not_to_be_empty()


async def test_a_phone_width_stacks_list_and_device_without_sideways_scrolling(
    settings: Settings, page: Page
) -> None:
    await page.set_viewport_size({"width": 390, "height": 844})
    async with serve_hub(settings) as running:
        body = {"temperature": 21.5, "humidity": 40, "pressure": 101_325, "label": "x" * 80}
        await post(running, "phone-with-a-rather-long-device-identifier", json.dumps(body))
        await open_dashboard(page, running.url)
        row = page.locator("#device-rows tr").first
        await expect(row).to_be_visible()
        await expect(page.locator("#detail-title")).to_be_hidden()

        async def sideways() -> int:
            width: int = await page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            return width

        assert await sideways() == 0
        await row.click()
        await expect(page.locator("#detail-title")).to_be_visible()
        await expect(page.locator("#detail-title")).to_be_focused()
        await expect(page.locator("#list")).to_be_hidden()
        await wait_for_state(page, lambda s: series(s, "temperature")["points"] == 1)
        chart = page.locator('figure.chart[data-metric="temperature"]')
        box = await chart.bounding_box()
        assert box is not None
        assert 0 <= box["x"] <= box["x"] + box["width"] <= 390, box
        assert await sideways() == 0
        await page.click("#detail-back")
        await expect(row).to_be_visible()
        await expect(row).to_be_focused()


async def test_a_recreated_store_resets_the_page_to_what_the_new_one_holds(
    settings: Settings, page: Page
) -> None:
    async with serve_hub(settings) as running:
        port = running.port
        await post(running, "old-1", b'{"humidity": 40}')
        await open_dashboard(page, running.url)
        await expect(chip(page, "old-1", "humidity")).to_have_text("40 %RH")
        before = await hub_state(page)

    # The same address, a new store (a new epoch): the old seqs mean nothing.
    fresh = replace(settings, storage=replace(settings.storage, path=settings.storage.path + "-2"))
    async with serve_hub(fresh, port=port) as running:
        await post(running, "new-1", b'{"humidity": 50}')
        await expect(chip(page, "new-1", "humidity")).to_have_text("50 %RH", timeout=15_000)
        await expect(page.locator('#device-rows tr[data-device="old-1"]')).to_have_count(0)
        # The chip may show the new hub's list before the page has adopted
        # its epoch; the reset then clears the list and loads it again.
        state = await wait_for_state(
            page,
            lambda s: s["stats"]["resets"] == 1 and list(s["devices"]) == ["new-1"],
            what="the new store's devices after one reset",
        )
        assert state["cursor"]["epoch"] != before["cursor"]["epoch"]
