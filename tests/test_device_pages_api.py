"""`GET /api/devices?limit=...` over HTTP from a real hub: the paged form's
shape, its parameters' errors, and the unpaged form unchanged."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from hub.config import DeviceSettings, Settings
from tests.hubs import RunningHub, serve_hub

pytestmark = pytest.mark.timeout(60)


async def get(running: RunningHub, **params: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{running.url}/api/devices", params=params) as response,
    ):
        return response.status, await response.json()


async def post(running: RunningHub, device_id: str, body: bytes) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{running.url}/api/devices/{device_id}/telemetry", data=body) as response,
    ):
        assert response.status == 202, await response.text()


async def test_pages_over_http(settings: Settings) -> None:
    settings = replace(
        settings,
        devices=(
            DeviceSettings(id="sensor-00", group="lab"),
            DeviceSettings(id="sensor-01", group="lab"),
            DeviceSettings(id="quiet-one", group="lab"),
        ),
    )
    async with serve_hub(settings) as running:
        for i in range(12):
            await post(running, f"sensor-{i:02d}", b'{"temperature": %d, "fw": "1.%d"}' % (i, i))
        status, first = await get(running, limit=5)
        assert status == 200
        assert set(first) == {"devices", "next", "total"}
        assert [d["device_id"] for d in first["devices"]] == [
            "quiet-one",
            *[f"sensor-{i:02d}" for i in range(4)],
        ]
        assert first["total"] == 13
        assert first["next"] == "sensor-03"
        quiet = first["devices"][0]
        assert (quiet["first_seen"], quiet["online"], quiet["group"]) == (None, False, "lab")
        assert first["devices"][1]["metrics"]["temperature"]["value"] == 0.0
        assert first["devices"][1]["attributes"]["fw"]["value"] == "1.0"

        _, second = await get(running, limit=5, after=first["next"])
        assert second["devices"][0]["device_id"] == "sensor-04"
        _, last = await get(running, limit=5, after="sensor-08")
        assert [d["device_id"] for d in last["devices"]] == ["sensor-09", "sensor-10", "sensor-11"]
        assert last["next"] is None

        _, lab = await get(running, limit=10, group="lab")
        assert [d["device_id"] for d in lab["devices"]] == ["quiet-one", "sensor-00", "sensor-01"]
        _, searched = await get(running, limit=10, q="1.1")
        assert [d["device_id"] for d in searched["devices"]] == [
            "sensor-01",
            "sensor-10",
            "sensor-11",
        ]
        _, by_group_name = await get(running, limit=2, q="LAB")
        assert by_group_name["total"] == 3
        _, online = await get(running, limit=100, status="online")
        assert online["total"] == 12
        _, offline = await get(running, limit=100, status="offline")
        assert [d["device_id"] for d in offline["devices"]] == ["quiet-one"]

        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{running.url}/api/devices/counts") as response,
        ):
            counts = await response.json()
        assert counts == {
            "total": 13,
            "status": {"online": 12, "stale": 0, "offline": 1},
            "groups": {"lab": 3},
        }

        _, jumped = await get(running, limit=3, offset=10)
        assert [d["device_id"] for d in jumped["devices"]] == [
            "sensor-09",
            "sensor-10",
            "sensor-11",
        ]
        _, jumped_after = await get(running, limit=2, after="sensor-00", offset=2)
        assert [d["device_id"] for d in jumped_after["devices"]] == ["sensor-03", "sensor-04"]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{running.url}/api/devices/sensor-07") as response:
                assert response.status == 200
                one = await response.json()
            async with session.get(f"{running.url}/api/devices/nobody") as response:
                assert response.status == 404
                assert "nobody" in (await response.json())["error"]
        assert one["device_id"] == "sensor-07"
        assert one["metrics"]["temperature"]["value"] == 7.0
        assert one["attributes"]["fw"]["value"] == "1.7"

        status, everything = await get(running)
        assert status == 200
        assert set(everything) == {"devices"}
        assert len(everything["devices"]) == 13


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"limit": "0"}, "limit='0': must be 1 to 1000"),
        ({"limit": "1001"}, "must be 1 to 1000"),
        ({"limit": "ten"}, "must be an integer"),
        ({"limit": ""}, "limit=''"),
        ({"limit": "5", "status": "sleeping"}, "must be online, offline or stale"),
        ({"limit": "5", "q": "x" * 101}, "at most 100 characters"),
        ({"limit": "5", "offset": "-1"}, "must be 0 to"),
    ],
)
async def test_bad_parameters_are_refused_with_a_reason(
    settings: Settings, params: dict[str, str], fragment: str
) -> None:
    async with serve_hub(settings) as running:
        status, body = await get(running, **params)
    assert status == 400
    assert fragment in body["error"]
