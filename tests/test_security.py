"""Who may connect where, and a device speaking only for itself: every
namespace and transport, and HTTP, with no, wrong, borrowed and right tokens."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from hub.config import AuthSettings, DeviceSettings, Settings
from tests.brokers import Mosquitto
from tests.hubs import RunningHub, dashboard, serve_hub
from tests.test_e2e import get, post, publish

TRANSPORTS = ["websocket", "polling"]


@pytest.fixture
def secured(settings: Settings, tmp_path: Path) -> Settings:
    token_file = tmp_path / "dev-c.token"
    token_file.write_text("tc\n")
    return replace(
        settings,
        auth=AuthSettings(dashboard_token="dash", admin_token="adm", enroll="auto"),
        devices=(
            DeviceSettings("dev-a", token="ta", group="greenhouse"),
            DeviceSettings(
                "dev-b", token_sha256=hashlib.sha256(b"tb").hexdigest(), group="greenhouse"
            ),
            DeviceSettings("dev-c", token_file=str(token_file), group="barn"),
        ),
    )


async def connects(
    running: RunningHub, namespace: str, auth: dict[str, Any], transport: str
) -> bool:
    """Whether a python-socketio client gets into `namespace` with `auth`."""
    session = aiohttp.ClientSession()
    client = socketio.AsyncClient(reconnection=False, http_session=session)
    try:
        await client.connect(
            running.url, namespaces=[namespace], transports=[transport], auth=auth, wait_timeout=10
        )
    except socketio.exceptions.ConnectionError:
        return False
    else:
        return True
    finally:
        await client.disconnect()
        await asyncio.sleep(0.05)
        await session.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_each_namespace_admits_only_its_own_token(secured: Settings, transport: str) -> None:
    async with serve_hub(secured) as running:
        cases = [
            ("/devices", {"device_id": "dev-a"}, False),  # no token
            ("/devices", {"device_id": "dev-a", "token": "wrong"}, False),
            ("/devices", {"device_id": "dev-a", "token": "tb"}, False),  # dev-b's token
            ("/devices", {"device_id": "dev-z", "token": "ta"}, False),  # not listed
            ("/devices", {"device_id": "../../etc", "token": "ta"}, False),  # not an id
            ("/devices", {"token": "ta"}, False),  # no id
            ("/devices", {"device_id": "dev-a", "token": "ta"}, True),
            ("/devices", {"device_id": "dev-b", "token": "tb"}, True),  # token_sha256
            ("/devices", {"device_id": "dev-c", "token": "tc"}, True),  # token_file
            ("/dashboard", {}, False),
            ("/dashboard", {"token": "adm"}, False),
            ("/dashboard", {"token": "dash"}, True),
            ("/admin", {}, False),
            ("/admin", {"token": "dash"}, False),
            ("/admin", {"token": "ta"}, False),
            ("/admin", {"token": "adm"}, True),
        ]
        for namespace, auth, admitted in cases:
            assert await connects(running, namespace, auth, transport) is admitted, (
                namespace,
                auth,
            )


async def test_admin_is_closed_without_an_admin_token(settings: Settings) -> None:
    async with serve_hub(settings) as running:
        for token in ("", "anything"):
            assert not await connects(running, "/admin", {"token": token}, "websocket")


async def test_http_ingest_wants_the_devices_own_bearer_token(secured: Settings) -> None:
    async with serve_hub(secured) as running, aiohttp.ClientSession() as http:

        async def post(device: str, authorization: str | None) -> int:
            headers = {"Authorization": authorization} if authorization else {}
            async with http.post(
                f"{running.url}/api/devices/{device}/telemetry",
                data=b'{"temperature": 1}',
                headers=headers,
            ) as response:
                return response.status

        assert await post("dev-a", None) == 401
        assert await post("dev-a", "Bearer wrong") == 401
        assert await post("dev-a", "Bearer tb") == 401  # dev-b's token
        assert await post("dev-a", "Basic ta") == 401
        assert await post("dev-z", "Bearer ta") == 403  # not listed
        assert await post("dev-a", "Bearer ta") == 202
        assert await post("dev-c", "bearer tc") == 202


async def test_a_device_speaks_only_for_itself(secured: Settings) -> None:
    async with (
        serve_hub(secured) as running,
        dashboard(running.url, auth={"token": "dash"}) as board,
    ):
        await board.subscribe(["*"])
        device = socketio.AsyncClient(reconnection=False)
        await device.connect(
            running.url, namespaces=["/devices"], auth={"device_id": "dev-a", "token": "ta"}
        )
        # naming another device inside the payload changes nothing
        await device.call(
            "telemetry", {"device_id": "dev-b", "temperature": 1}, namespace="/devices"
        )
        await device.call(
            "telemetry", [{"bn": "dev-b:", "n": "temperature", "v": 2}], namespace="/devices"
        )
        await device.disconnect()

        async def post_with_dev_a_token(route: str, body: bytes) -> int:
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"{running.url}/api/devices/{route}/telemetry",
                    data=body,
                    headers={"Authorization": "Bearer ta"},
                ) as response,
            ):
                return response.status

        # dev-a's token on dev-b's route is refused
        assert await post_with_dev_a_token("dev-b", b'{"temperature": 3}') == 401
        # a last reading of dev-a's own: once it is there, so is anything before it
        assert await post_with_dev_a_token("dev-a", b'{"temperature": 4}') == 202
        await board.wait_readings(3)
        assert {r["device_id"] for r in board.readings} == {"dev-a"}
        # SenML names the series "dev-b:temperature": a metric of dev-a's
        assert [(r["metric"], r["value"]) for r in board.readings] == [
            ("temperature", 1.0),
            ("dev_b_temperature", 2.0),
            ("temperature", 4.0),
        ]
        # the string is dev-a's attribute, not a device switch
        with sqlite3.connect(secured.storage.path) as db:
            rows = "SELECT device_id, name, value FROM attributes WHERE name != 'group'"
            assert db.execute(rows).fetchall() == [("dev-a", "device_id", "dev-b")]


async def test_mqtt_data_from_unlisted_devices_is_refused(
    secured: Settings, mosquitto: Mosquitto
) -> None:
    async with (
        serve_hub(secured) as running,
        dashboard(running.url, auth={"token": "dash"}) as board,
    ):
        await board.subscribe(["*"])
        await publish(mosquitto, "devices/intruder/telemetry", b'{"temperature": 9}')
        await publish(mosquitto, "devices/dev-a/telemetry", b'{"temperature": 1}')
        [reading] = await board.wait_readings(1)
        assert reading["device_id"] == "dev-a"
        rejections = await running.hub.store.rejections(10)
        assert [(r.device_id, r.reason) for r in rejections] == [("intruder", "unknown_device")]


async def test_dashboards_subscribe_to_groups(secured: Settings) -> None:
    async with (
        serve_hub(secured) as running,
        dashboard(running.url, auth={"token": "dash"}) as board,
    ):
        answer = await board.client.call(
            "subscribe", {"groups": ["greenhouse"]}, namespace="/dashboard"
        )
        assert answer["devices"] == ["dev-a", "dev-b"]
        bad = await board.client.call("subscribe", {"groups": ["nowhere"]}, namespace="/dashboard")
        assert bad["ok"] is False
        async with aiohttp.ClientSession() as http:
            for device, token in (("dev-c", "tc"), ("dev-a", "ta"), ("dev-b", "tb")):
                async with http.post(
                    f"{running.url}/api/devices/{device}/telemetry",
                    data=b'{"temperature": 1}',
                    headers={"Authorization": f"Bearer {token}"},
                ) as response:
                    assert response.status == 202
        # dev-c's reading was stored first: had it been sent to the group's
        # dashboard, it would have come before the other two
        await board.wait_readings(2)
        assert sorted(r["device_id"] for r in board.readings) == ["dev-a", "dev-b"]


@asynccontextmanager
async def hub_with_origins(settings: Settings, *origins: str) -> AsyncIterator[RunningHub]:
    server = replace(settings.server, cors_allowed_origins=origins)
    async with serve_hub(replace(settings, server=server)) as running:
        yield running


async def test_cross_origin_access_follows_the_allowed_origins(settings: Settings) -> None:
    async with (
        hub_with_origins(settings, "https://ops.example") as running,
        aiohttp.ClientSession() as http,
    ):
        for origin, allowed in (("https://ops.example", True), ("https://evil.example", False)):
            async with http.get(
                f"{running.url}/api/devices", headers={"Origin": origin}
            ) as response:
                assert (response.headers.get("Access-Control-Allow-Origin") == origin) is allowed
            async with http.options(
                f"{running.url}/api/devices/d1/telemetry",
                headers={
                    "Origin": origin,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization",
                },
            ) as response:
                assert response.status == 204
                assert (
                    "Authorization" in response.headers.get("Access-Control-Allow-Headers", "")
                ) is allowed
        # Socket.IO follows the same list
        polling = f"{running.url}/socket.io/?EIO=4&transport=polling"
        async with http.get(polling, headers={"Origin": "https://evil.example"}) as response:
            assert response.status == 400
        async with http.get(polling, headers={"Origin": "https://ops.example"}) as response:
            assert response.status == 200
    async with (
        serve_hub(settings) as running,
        aiohttp.ClientSession() as http,
        http.get(
            f"{running.url}/api/devices", headers={"Origin": "https://ops.example"}
        ) as response,
    ):
        assert "Access-Control-Allow-Origin" not in response.headers


async def test_the_http_reads_need_the_dashboard_token_when_one_is_set(
    settings: Settings,
) -> None:
    """The device list and history say what the live stream says: with a
    dashboard token set, they need it too (and not the admin's)."""
    guarded = replace(settings, auth=AuthSettings(dashboard_token="dash", admin_token="adm"))
    paths = ["/api/devices", "/api/devices/t-1/readings?metric=humidity"]
    async with serve_hub(guarded) as running, aiohttp.ClientSession() as http:
        status, _ = await post(running, "t-1", b'{"humidity": 50}')
        assert status == 202
        for path in paths:
            for authorization, expected in (
                (None, 401),
                ("Bearer wrong", 401),
                ("Bearer adm", 401),
                ("Basic dash", 401),
                ("Bearer dash", 200),
            ):
                headers = {"Authorization": authorization} if authorization else {}
                async with http.get(f"{running.url}{path}", headers=headers) as response:
                    assert response.status == expected, (path, authorization)
                    body = await response.json()
                    if expected == 401:
                        assert body == {"error": "wrong or missing token"}
                    else:
                        assert "t-1" in str(body)
        _, info = await get(running, "/api/info")
        assert info["dashboard_token_required"] is True  # the page asks before it reads
        status, _ = await get(running, "/healthz")
        assert status == 200
    async with serve_hub(settings) as running:  # no token set: open, as before
        for path in paths:
            status, _ = await get(running, path)
            assert status == 200
