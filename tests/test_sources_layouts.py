"""Topic layouts of one's own, device ids from foreign names, and the rules
every source shares with the native topics (enrollment, one id per device,
retained messages), against a real Mosquitto and a real hub."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hub.config import AuthSettings, DeviceSettings, Settings, SourceSettings
from hub.sources.names import device_id_for
from tests.brokers import Mosquitto
from tests.hubs import RunningHub, serve_hub, wait_until
from tests.sources import (
    devices,
    publish,
    publisher,
    readings,
    rejections,
    until_device,
    with_sources,
)

pytestmark = pytest.mark.usefixtures("mosquitto")


async def test_a_layout_of_numbers_with_units_and_a_group(
    settings: Settings, mosquitto: Mosquitto
) -> None:
    farm = SourceSettings(
        topic="farm/{device}/{metric}",
        format="number",
        units={"temperature": "degF", "soil": "%"},
        group="farm",
    )
    settings = with_sources(settings, farm)
    async with serve_hub(settings) as running, publisher(mosquitto.url) as mqtt:
        await publish(mqtt, "farm/barn-1/temperature", "212")
        await publish(mqtt, "farm/barn-1/soil", "41.5")
        await publish(mqtt, "farm/barn-1/door", "ON")
        await publish(mqtt, "farm/barn-1/soil", "wet")  # not a number
        await publish(mqtt, "farm/barn-1/soil", "42")
        await publish(mqtt, "farm/barn-1/extra/level", "1")  # not this layout's topic
        await wait_until(
            lambda: _has(running, "barn-1", "soil", 2), what="two soil readings from barn-1"
        )
        barn = (await devices(running))["barn-1"]
        refused = await rejections(running)
    assert barn.metrics == {
        "temperature": (100.0, "Cel"),
        "soil": (42.0, "%"),
        "door": (1.0, None),
    }
    assert barn.group == "farm"
    assert barn.attributes["source"] == "farm/{device}/{metric}"
    assert refused == [
        ("barn-1", "invalid_value", "farm/{device}/{metric}: soil: 'wet' is not a number")
    ]


async def _has(running: RunningHub, device_id: str, metric: str, count: int) -> bool:
    return len(await readings(running, device_id, metric)) >= count


async def test_layouts_of_json_and_senml_with_wildcards(
    settings: Settings, mosquitto: Mosquitto
) -> None:
    settings = with_sources(
        settings,
        SourceSettings(topic="site/+/{device}/json", format="json"),
        SourceSettings(topic="lab/{device}/senml/#", format="senml", group="lab"),
        SourceSettings(topic="hall/{device}/{metric}", format="json"),
    )
    async with serve_hub(settings) as running, publisher(mosquitto.url) as mqtt:
        await publish(mqtt, "site/north/gw-7/json", {"env": {"temperature": 20.5}, "fw": "1.2"})
        await publish(
            mqtt,
            "lab/probe-2/senml/v1",
            [{"bn": "urn:dev:ow:10e2073a01080063:", "n": "voltage", "u": "V", "v": 120.1}],
        )
        await publish(mqtt, "lab/probe-2/senml", {"temperature": 20})  # not a pack
        await publish(mqtt, "hall/h1/pressure", {"value": 1013.2, "unit": "hPa"})
        await publish(mqtt, "hall/h1/humidity", "40")
        gateway = await until_device(running, "gw-7")
        probe = await until_device(running, "probe-2")
        hall = await until_device(running, "h1", metrics=2)
        refused = await rejections(running)
    assert gateway.metrics == {"env_temperature": (20.5, "Cel")}
    assert gateway.attributes["fw"] == "1.2"
    assert probe.metrics == {"voltage": (120.1, "V")}
    assert probe.attributes["senml_name"] == "urn:dev:ow:10e2073a01080063"
    assert probe.group == "lab"
    assert hall.metrics == {"pressure": (101320.0, "Pa"), "humidity": (40.0, "%RH")}
    assert refused == [("probe-2", "invalid_senml", "a SenML pack is a JSON array of records")]


async def test_foreign_names_map_to_ids_and_no_two_devices_share_one(
    settings: Settings, mosquitto: Mosquitto
) -> None:
    settings = with_sources(
        settings, SourceSettings(preset="tasmota"), SourceSettings(preset="zigbee2mqtt")
    )
    names = ["Living Room/Sensor", "living room sensor", "Küche", "kitchen"]
    async with publisher(mosquitto.url) as mqtt:
        async with serve_hub(settings) as running:
            await publish(mqtt, "tele/kitchen/SENSOR", {"AM2301": {"Temperature": 20}})
            await until_device(running, "kitchen")
            for index, name in enumerate(names):
                await publish(mqtt, f"zigbee2mqtt/{name}", {"temperature": 21 + index})
            await publish(mqtt, "devices/kitchen/telemetry", {"temperature": 30})  # native
            mapped = [device_id_for(name) for name in names[:3]]
            for device_id in mapped:
                await until_device(running, device_id)
            await wait_until(lambda: _count(running, 2), what="two refusals")
            shown = await devices(running)
            refused = await rejections(running)
        # After a restart the holder of an id is the same: the store remembers.
        async with serve_hub(settings) as running:
            await publish(mqtt, "zigbee2mqtt/kitchen", {"temperature": 40})
            await publish(mqtt, "tele/kitchen/SENSOR", {"AM2301": {"Temperature": 22}})
            await wait_until(lambda: _count(running, 3), what="a third refusal")
            after = await readings(running, "kitchen", "am2301_temperature")
            refused_after = await rejections(running)
    assert mapped == [
        "Living_Room_Sensor-" + mapped[0].rsplit("-", 1)[1],
        "living_room_sensor-" + mapped[1].rsplit("-", 1)[1],
        "Kuche-" + mapped[2].rsplit("-", 1)[1],
    ]
    assert len(set(mapped)) == 3
    for name, device_id in zip(names, mapped, strict=False):
        assert shown[device_id].attributes["name"] == name
    assert shown["kitchen"].metrics == {"am2301_temperature": (20.0, "Cel")}
    assert shown["kitchen"].attributes["source"] == "tasmota"
    assert sorted((device, reason) for device, reason, _ in refused) == [
        ("kitchen", "device_id_conflict"),
        ("kitchen", "device_id_conflict"),
    ]
    details = {detail for _, _, detail in refused}
    assert details == {
        "device id 'kitchen' from zigbee2mqtt 'kitchen' is held by tasmota 'kitchen'",
        "device id 'kitchen' from the native topics is held by tasmota 'kitchen'",
    }
    assert [value for value, _ in after] == [20.0, 22.0]
    assert refused_after[0][2] == (
        "device id 'kitchen' from zigbee2mqtt 'kitchen' is held by tasmota 'kitchen'"
    )


async def _count(running: RunningHub, count: int) -> bool:
    return len(await rejections(running)) >= count


async def test_listed_enrollment_applies_to_source_devices(
    settings: Settings, mosquitto: Mosquitto
) -> None:
    settings = replace(
        with_sources(settings, SourceSettings(preset="zigbee2mqtt")),
        auth=AuthSettings(enroll="listed"),
        devices=(DeviceSettings(id="listed-sensor"),),
    )
    async with serve_hub(settings) as running, publisher(mosquitto.url) as mqtt:
        await publish(mqtt, "zigbee2mqtt/stranger", {"temperature": 20})
        await publish(mqtt, "zigbee2mqtt/stranger/availability", "online")
        await publish(mqtt, "zigbee2mqtt/listed-sensor", {"temperature": 21})
        await until_device(running, "listed-sensor")
        await wait_until(lambda: _count(running, 1), what="a refusal")
        shown = await devices(running)
        refused = await rejections(running)
    assert "stranger" not in shown
    assert [(d, r) for d, r, _ in refused] == [("stranger", "unknown_device")]


async def test_retained_values_are_not_new_readings_but_their_attributes_are_kept(
    settings: Settings, mosquitto: Mosquitto
) -> None:
    settings = with_sources(settings, SourceSettings(preset="esphome"))
    async with publisher(mosquitto.url) as mqtt:
        await publish(mqtt, "node1/sensor/temperature/state", "19.5", retain=True)
        await publish(mqtt, "node1/text_sensor/version/state", "2024.4.1", retain=True)
        await publish(mqtt, "node1/status", "online", retain=True)
        async with serve_hub(settings) as running:

            async def described() -> bool:
                seen = (await devices(running)).get("node1")
                return seen is not None and "version" in seen.attributes and seen.online

            await wait_until(described, what="node1's retained attribute and status")
            before = await readings(running, "node1", "temperature")
            await publish(mqtt, "node1/sensor/temperature/state", "20.5", retain=True)
            await until_device(running, "node1")
            after = await readings(running, "node1", "temperature")
    assert before == []
    assert [value for value, _ in after] == [20.5]
