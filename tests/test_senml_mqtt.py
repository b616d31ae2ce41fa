"""RFC 8428's section 5 examples through a real Mosquitto and a real hub:
each pack published as a device would, on the native telemetry topic and on
a `senml` layout, and read back over HTTP as stored. What each example
means is asserted value by value in tests/test_senml.py; here the whole
path must keep all of it (every record, its unit, its time), refuse a pack
with a must-understand field or a newer `bver` with a reason, and store
the next good pack."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from hub.config import Settings, SourceSettings
from tests import test_senml as rfc
from tests.brokers import Mosquitto
from tests.hubs import RunningHub, serve_hub, wait_until
from tests.sources import publish, publisher, rejections, with_sources

pytestmark = pytest.mark.usefixtures("mosquitto")

EXAMPLES: dict[str, list[dict[str, Any]]] = {
    "ex-5-1-1": rfc.EXAMPLE_5_1_1,
    "ex-5-1-2": rfc.EXAMPLE_5_1_2,
    "ex-5-1-2-timed": rfc.EXAMPLE_5_1_2_TIMED,
    "ex-5-1-2-stream": rfc.EXAMPLE_5_1_2_STREAM,
    "ex-5-1-3": rfc.EXAMPLE_5_1_3,
    "ex-5-1-4": rfc.EXAMPLE_5_1_4,
    "ex-5-1-5": rfc.EXAMPLE_5_1_5,
    "ex-5-1-6": rfc.EXAMPLE_5_1_6,
    "ex-5-1-7-thermostat": rfc.EXAMPLE_5_1_7_THERMOSTAT,
    "ex-5-1-7-lights": rfc.EXAMPLE_5_1_7_LIGHTS_ON + rfc.EXAMPLE_5_1_7_LIGHTS_OFF,
}
Stored = list[tuple[str, float, str | None, int]]


def accepting_2010(settings: Settings) -> Settings:
    """The examples date from 2010 and 2011: a hub that takes readings that old."""
    normalize = replace(settings.normalize, max_past=20 * 365 * 86_400.0)
    return replace(settings, normalize=normalize)


async def stored(running: RunningHub, device_id: str) -> Stored:
    """Every reading of the device, by metric and then as stored (oldest first)."""
    found: Stored = []
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{running.url}/api/devices/{device_id}") as response:
            if response.status == 404:
                return found  # not heard yet
            metrics = sorted((await response.json())["metrics"])
        for metric in metrics:
            params = {"metric": metric, "from": "0"}
            url = f"{running.url}/api/devices/{device_id}/readings"
            async with session.get(url, params=params) as response:
                body = await response.json()
            found += [(metric, r["value"], body["unit"], r["ts"]) for r in body["readings"]]
    return found


def meant(pack: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What the RFC means by the pack (tests/test_senml.py), in the order
    `stored` reads it back; a reading without a time of its own is "now"."""
    readings = sorted(rfc.stored(pack), key=lambda r: (r[0], r[3]))
    return [(m, v, u, "now" if ts == rfc.NOW else ts) for m, v, u, ts in readings]


def as_read(found: Stored, sent_from: int, sent_to: int) -> list[tuple[Any, ...]]:
    """The readings read back, "now" for a time the hub gave on receipt."""
    return [(m, v, u, "now" if sent_from <= ts <= sent_to else ts) for m, v, u, ts in found]


@pytest.mark.parametrize("path", ["native topic", "senml layout"])
async def test_every_section_5_example_is_stored_as_the_rfc_means_it(
    settings: Settings, mosquitto: Mosquitto, path: str
) -> None:
    settings = with_sources(
        accepting_2010(settings), SourceSettings(topic="lab/{device}/senml", format="senml")
    )
    topic = "devices/{}/telemetry" if path == "native topic" else "lab/{}/senml"
    async with serve_hub(settings) as running, publisher(mosquitto.url) as mqtt:
        sent_from = int(time.time() * 1000)
        for device_id, pack in EXAMPLES.items():
            await publish(mqtt, topic.format(device_id), pack)
        expected = {device_id: len(rfc.stored(pack)) for device_id, pack in EXAMPLES.items()}
        found: dict[str, Stored] = {}

        async def all_stored() -> bool:
            for device_id, count in expected.items():
                if len(found.get(device_id, ())) < count:
                    found[device_id] = await stored(running, device_id)
            return all(len(found[d]) >= count for d, count in expected.items())

        await wait_until(all_stored, what="every example's readings")
        sent_to = int(time.time() * 1000)
        refused = await rejections(running)
    assert refused == []
    for device_id, pack in EXAMPLES.items():
        assert as_read(found[device_id], sent_from, sent_to) == meant(pack), device_id


@pytest.mark.parametrize(
    ("pack", "reason"),
    [
        ([{"n": "temperature", "v": 99, "foo_": 1}], "must be understood"),
        ([{"bver": 11, "n": "temperature", "v": 99}], "supports SenML version 10"),
    ],
    ids=["must-understand field", "bver 11"],
)
async def test_a_pack_the_hub_cannot_understand_is_refused_and_the_next_is_stored(
    settings: Settings, mosquitto: Mosquitto, pack: list[dict[str, Any]], reason: str
) -> None:
    async with serve_hub(settings) as running, publisher(mosquitto.url) as mqtt:
        await publish(mqtt, "devices/probe/telemetry", pack)
        good = [{"bver": 10, "n": "temperature", "v": 21.5, "ignored": True}]
        await publish(mqtt, "devices/probe/telemetry", good)

        async def stored_the_good_one() -> bool:
            return len(await stored(running, "probe")) == 1

        await wait_until(stored_the_good_one, what="the good pack")
        (reading,) = await stored(running, "probe")
        refused = await rejections(running)
    assert reading[:3] == ("temperature", 21.5, "Cel")
    ((device_id, why, detail),) = refused
    assert (device_id, why) == ("probe", "invalid_senml")
    assert reason in detail
