"""The firmware presets against a real Mosquitto and a real hub, with the
payloads of each firmware's own documentation (docs/devices.md cites them):
readings in canonical units, attributes, and availability."""

from __future__ import annotations

import pytest

from hub.config import Settings, SourceSettings
from hub.sources.names import device_id_for
from tests.brokers import Mosquitto
from tests.hubs import serve_hub, wait_until
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

# --- Tasmota: https://tasmota.github.io/docs/ (AM2301, BME280, DS18x20, Sonoff Pow R2, ADC)

TASMOTA_AM2301 = (
    b'{"Time": "2019-01-01T00:00:00", "AM2301": {"Temperature": 24.6, "Humidity": 58.2},'
    b' "TempUnit": "C"}'
)
TASMOTA_BME280 = (
    b'{"Time": "2019-11-03T19:34:28", "BME280": {"Temperature": 21.7, "Humidity": 66.6,'
    b' "Pressure": 988.6}, "PressureUnit": "hPa", "TempUnit": "C"}'
)
TASMOTA_DS18B20 = (
    b'{"Time":"2021-01-02T09:09:44","DS18B20-1":{"Id":"00000566CC39","Temperature":13.3},'
    b'"DS18B20-2":{"Id":"0000059352D4","Temperature":1.2},'
    b'"DS18B20-3":{"Id":"000005937C90","Temperature":22.5},"TempUnit":"C"}'
)
TASMOTA_ENERGY = (
    b'{"Time":"2018-02-15T17:37:10","ENERGY":{"TotalStartTime":"2018-11-14T18:39:40",'
    b'"Total":6.294,"Yesterday":5.340,"Today":0.954,"Period":217,"Power":2635,'
    b'"ApparentPower":2650,"ReactivePower":282,"Factor":0.99,"Voltage":227,"Current":11.661}}'
)
TASMOTA_STATE = (
    b'{"Time":"2019-10-31T11:14:59","Uptime":"0T18:36:12","UptimeSec":66972,"Vcc":3.423,'
    b'"Heap":28,"SleepMode":"Dynamic","Sleep":50,"LoadAvg":19,"MqttCount":6,"POWER":"OFF",'
    b'"Wifi":{"AP":1,"SSId":"Tasmota","BSSId":"00:00:00:00:00:00","Channel":13,"RSSI":100,'
    b'"LinkCount":1,"Downtime":"0T00:00:06"}}'
)


async def test_tasmota(settings: Settings, mosquitto: Mosquitto) -> None:
    settings = with_sources(settings, SourceSettings(preset="tasmota", group="tasmota"))
    async with serve_hub(settings) as running, publisher(mosquitto.url) as mqtt:
        await publish(mqtt, "tele/kitchen/LWT", "Online", retain=True)
        await publish(mqtt, "tele/kitchen/SENSOR", TASMOTA_AM2301)
        await publish(mqtt, "tele/kitchen/SENSOR", TASMOTA_BME280)
        await publish(mqtt, "tele/kitchen/SENSOR", TASMOTA_DS18B20)
        await publish(mqtt, "tele/pow1/SENSOR", TASMOTA_ENERGY)
        await publish(mqtt, "tele/kitchen/STATE", TASMOTA_STATE)
        kitchen = await until_device(running, "kitchen", metrics=18, online=True)
        pow1 = await until_device(running, "pow1", metrics=10)
        # Fahrenheit (SetOption8 1): the same sensor, in Celsius once stored.
        await publish(mqtt, "tele/attic/SENSOR", b'{"AM2301":{"Temperature":75.2},"TempUnit":"F"}')
        attic = await until_device(running, "attic")
        await publish(mqtt, "tele/kitchen/LWT", "Offline", retain=True)
        await until_device(running, "kitchen", online=False)
    assert kitchen.metrics["am2301_temperature"] == (24.6, "Cel")
    assert kitchen.metrics["am2301_humidity"] == (58.2, "%RH")
    assert kitchen.metrics["bme280_pressure"] == (98860.0, "Pa")
    assert kitchen.metrics["bme280_temperature"] == (21.7, "Cel")
    assert kitchen.metrics["ds18b20_3_temperature"] == (22.5, "Cel")
    assert kitchen.attributes["ds18b20_3_id"] == "000005937C90"
    assert kitchen.metrics["uptime_sec"] == (66972.0, None)
    assert kitchen.metrics["wifi_rssi"] == (100.0, None)
    assert kitchen.attributes["power"] == "OFF"
    assert kitchen.attributes["wifi_ss_id"] == "Tasmota"
    assert "time" not in kitchen.attributes
    assert "temp_unit" not in kitchen.attributes
    assert kitchen.attributes["source"] == "tasmota"
    assert kitchen.group == "tasmota"
    assert pow1.metrics["energy_power"] == (2635.0, "W")
    assert pow1.metrics["energy_voltage"] == (227.0, "V")
    assert pow1.metrics["energy_current"] == (11.661, "A")
    assert pow1.metrics["energy_total"] == (6.294 * 3_600_000, "J")
    assert pow1.metrics["energy_period"] == (217 * 3600.0, "J")
    assert pow1.metrics["energy_apparent_power"] == (2650.0, "VA")
    assert attic.metrics["am2301_temperature"] == (24.0, "Cel")


# --- Zigbee2MQTT: https://www.zigbee2mqtt.io/guide/usage/mqtt_topics_and_messages.html

# bridge/devices, as Zigbee2MQTT 2.x describes a WSDCGQ11LM and a plug
# (exposes from its test/extensions/bridge.test.ts and the TS011F device page).
Z2M_DEVICES = [
    {
        "ieee_address": "0x00",
        "type": "Coordinator",
        "friendly_name": "Coordinator",
        "definition": None,
    },
    {
        "ieee_address": "0x00158d00018255df",
        "friendly_name": "living room/weather",
        "definition": {
            "model": "WSDCGQ11LM",
            "exposes": [
                {
                    "type": "numeric",
                    "name": "temperature",
                    "property": "temperature",
                    "unit": "°C",
                    "access": 1,
                },
                {
                    "type": "numeric",
                    "name": "humidity",
                    "property": "humidity",
                    "unit": "%",
                    "access": 1,
                },
                {
                    "type": "numeric",
                    "name": "pressure",
                    "property": "pressure",
                    "unit": "hPa",
                    "access": 1,
                },
                {
                    "type": "numeric",
                    "name": "voltage",
                    "property": "voltage",
                    "unit": "mV",
                    "access": 1,
                },
            ],
        },
    },
    {
        "ieee_address": "0xa4c138d2b1cf1389",
        "friendly_name": "plug",
        "definition": {
            "model": "TS011F_plug_1",
            "exposes": [
                {
                    "type": "switch",
                    "features": [{"type": "binary", "name": "state", "property": "state"}],
                },
                {
                    "type": "numeric",
                    "name": "voltage",
                    "property": "voltage",
                    "unit": "V",
                    "access": 5,
                },
                {"type": "numeric", "name": "power", "property": "power", "unit": "W", "access": 5},
            ],
        },
    },
]


async def test_zigbee2mqtt(settings: Settings, mosquitto: Mosquitto) -> None:
    settings = with_sources(settings, SourceSettings(preset="zigbee2mqtt"))
    weather = device_id_for("living room/weather")
    salon = device_id_for("Lumi: salon")
    async with publisher(mosquitto.url) as mqtt:
        await publish(mqtt, "zigbee2mqtt/bridge/devices", Z2M_DEVICES, retain=True)
        await publish(mqtt, "zigbee2mqtt/bridge/state", {"state": "online"}, retain=True)
        async with serve_hub(settings) as running:
            await publish(mqtt, "zigbee2mqtt/living room/weather/availability", {"state": "online"})
            await publish(
                mqtt,
                "zigbee2mqtt/living room/weather",
                {"temperature": 27.34, "humidity": 44.72, "pressure": 1013.2, "voltage": 3064},
            )
            await publish(mqtt, "zigbee2mqtt/plug", {"state": "ON", "voltage": 230.1, "power": 12})
            await publish(
                mqtt, "zigbee2mqtt/plug/set", {"state": "OFF"}
            )  # a command, not a reading
            # Not described by bridge/devices: the docs' units. A 2.0 log line
            # from a real device (null, nested update, last_seen).
            await publish(
                mqtt,
                "zigbee2mqtt/Lumi: salon",
                b'{"battery":100,"detection_period":36,"device_temperature":25,"illuminance":196,'
                b'"last_seen":"2025-01-07T10:49:36.461Z","linkquality":145,"power_outage_count":39,'
                b'"state":"OFF","update":{"installed_version":-1,"latest_version":-1,"state":null},'
                b'"voltage":3064}',
            )
            await publish(mqtt, "zigbee2mqtt/Lumi: salon/availability", "offline")  # legacy form
            seen_weather = await until_device(running, weather, metrics=4, online=True)
            seen_plug = await until_device(running, "plug", metrics=2)
            seen_salon = await until_device(running, salon, metrics=8)
            shown = await devices(running)
            # The bridge's Last Will: its devices' availability keeps its last
            # value, yet none of them can be reached.
            await publish(mqtt, "zigbee2mqtt/bridge/state", {"state": "offline"}, retain=True)
            await until_device(running, weather, online=False)
            await until_device(running, "plug", online=False)
            # Back: a device returns by its own availability.
            await publish(mqtt, "zigbee2mqtt/bridge/state", {"state": "online"}, retain=True)
            await publish(mqtt, "zigbee2mqtt/living room/weather/availability", {"state": "online"})
            await until_device(running, weather, online=True)
    assert seen_weather.metrics == {
        "temperature": (27.34, "Cel"),
        "humidity": (44.72, "%RH"),
        "pressure": (101320.0, "Pa"),
        "voltage": (3.064, "V"),
    }
    assert seen_weather.attributes["name"] == "living room/weather"
    assert seen_weather.attributes["source"] == "zigbee2mqtt"
    assert seen_plug.online
    assert seen_plug.metrics == {"voltage": (230.1, "V"), "power": (12.0, "W")}
    assert seen_plug.attributes["state"] == "ON"
    assert seen_salon.metrics["voltage"] == (3.064, "V")
    assert seen_salon.metrics["illuminance"] == (196.0, "lx")
    assert seen_salon.metrics["update_installed_version"] == (-1.0, None)
    assert seen_salon.metrics["linkquality"] == (145.0, "lqi")
    assert "last_seen" not in seen_salon.attributes
    assert "update_state" not in seen_salon.attributes
    assert seen_salon.attributes["name"] == "Lumi: salon"
    assert not seen_salon.online
    assert not any(d.startswith("bridge") or d == "Coordinator" for d in shown)


# --- Homie: https://homieiot.github.io/specification/spec-core-v4_0_0/ (and v3_0_1)


async def test_homie_v4(settings: Settings, mosquitto: Mosquitto) -> None:
    settings = with_sources(settings, SourceSettings(preset="homie"))
    car = "homie/super-car"
    async with publisher(mosquitto.url) as mqtt:
        # A value retained before the hub subscribes: the last state, of unknown age.
        await publish(mqtt, f"{car}/engine/temperature/$unit", "°C", retain=True)
        await publish(mqtt, f"{car}/engine/temperature/$datatype", "float", retain=True)
        await publish(mqtt, f"{car}/engine/temperature", "19.0", retain=True)
        await publish(mqtt, f"{car}/$name", "Super car", retain=True)
        async with serve_hub(settings) as running:
            for topic, payload in [
                (f"{car}/$homie", "4.0.0"),
                (f"{car}/$nodes", "wheels,engine,lights"),
                (f"{car}/$implementation", "esp8266"),
                (f"{car}/$state", "ready"),
                (f"{car}/engine/$properties", "speed,direction,temperature"),
                (f"{car}/engine/temperature/$name", "Engine temperature"),
                (f"{car}/engine/temperature/$settable", "false"),
                (f"{car}/engine/temperature/$format", "-20:120"),
                (f"{car}/engine/temperature", "21.5"),
                (f"{car}/lights/power/$datatype", "boolean"),
                (f"{car}/lights/power", "true"),
                (f"{car}/engine/mode/$datatype", "enum"),
                (f"{car}/engine/mode", "sport"),
                (f"{car}/wheels/pressure/$unit", "psi"),
                (f"{car}/wheels/pressure/$datatype", "float"),
                (f"{car}/wheels/pressure", "32"),
                (f"{car}/lights/power/set", "false"),  # a command to the device
            ]:
                await publish(mqtt, topic, payload, retain=not topic.endswith("/set"))
            seen = await until_device(running, "super-car", metrics=3, online=True)
            history = await readings(running, "super-car", "engine_temperature")
            await publish(mqtt, f"{car}/$state", "lost", retain=True)  # its Last Will
            await until_device(running, "super-car", online=False)
    assert seen.metrics == {
        "engine_temperature": (21.5, "Cel"),
        "lights_power": (1.0, None),
        "wheels_pressure": (220632.233381, "Pa"),
    }
    assert [value for value, _ in history] == [21.5]  # not the retained 19.0
    assert seen.attributes["engine_mode"] == "sport"
    assert seen.attributes["label"] == "Super car"
    assert seen.attributes["homie"] == "4.0.0"
    assert seen.attributes["implementation"] == "esp8266"
    assert seen.attributes["state"] == "ready"


async def test_homie_v3_stats_and_firmware(settings: Settings, mosquitto: Mosquitto) -> None:
    settings = with_sources(settings, SourceSettings(preset="homie"))
    car = "homie/super-car"
    async with serve_hub(settings) as running, publisher(mosquitto.url) as mqtt:
        for topic, payload in [
            (f"{car}/$homie", "3.0.1"),
            (f"{car}/$localip", "192.168.0.10"),
            (f"{car}/$mac", "DE:AD:BE:EF:FE:ED"),
            (f"{car}/$fw/name", "weatherstation-firmware"),
            (f"{car}/$fw/version", "1.0.0"),
            (f"{car}/$stats/interval", "60"),
            (f"{car}/$state", "ready"),
            (f"{car}/$stats", "uptime,cputemp,signal,battery"),
            (f"{car}/$stats/uptime", "120"),
            (f"{car}/$stats/cputemp", "48"),
            (f"{car}/$stats/signal", "24"),
            (f"{car}/$stats/battery", "80"),
        ]:
            await publish(mqtt, topic, payload)
        seen = await until_device(running, "super-car", metrics=5, online=True)
    assert seen.metrics == {
        "stats_interval": (60.0, None),
        "stats_uptime": (120.0, "s"),
        "stats_cputemp": (48.0, "Cel"),
        "stats_signal": (24.0, "%"),
        "stats_battery": (80.0, "%"),
    }
    assert seen.attributes["fw_name"] == "weatherstation-firmware"
    assert seen.attributes["fw_version"] == "1.0.0"
    assert seen.attributes["localip"] == "192.168.0.10"
    assert seen.attributes["mac"] == "DE:AD:BE:EF:FE:ED"


# --- ESPHome: https://esphome.io/components/mqtt.html


async def test_esphome(settings: Settings, mosquitto: Mosquitto) -> None:
    settings = with_sources(settings, SourceSettings(preset="esphome"))
    discovery = {
        "dev_cla": "temperature",
        "unit_of_meas": "°C",
        "stat_cla": "measurement",
        "name": "Living Room Temperature",
        "stat_t": "livingroom/sensor/living_room_temperature/state",
        "avty_t": "livingroom/status",
        "uniq_id": "ESPsensorliving_room_temperature",
        "dev": {"ids": "84fce6123456", "name": "livingroom", "sw": "esphome v2024.4.1"},
    }
    async with publisher(mosquitto.url) as mqtt:
        await publish(
            mqtt,
            "homeassistant/sensor/livingroom/living_room_temperature/config",
            discovery,
            retain=True,
        )
        await publish(
            mqtt,
            "homeassistant/sensor/livingroom/pressure/config",
            {
                "unit_of_measurement": "hPa",
                "~": "livingroom/sensor/pressure",
                "state_topic": "~/state",
            },
            retain=True,
        )
        async with serve_hub(settings) as running:
            await publish(mqtt, "livingroom/status", "online", retain=True)
            await publish(mqtt, "livingroom/sensor/living_room_temperature/state", "nan")
            await publish(mqtt, "livingroom/sensor/living_room_temperature/state", "21.5")
            await publish(mqtt, "livingroom/sensor/pressure/state", "1013.2")
            # (the attribute before the last reading: stored in order, it is
            # there once the reading is)
            await publish(mqtt, "livingroom/text_sensor/wifi_ssid/state", "home")
            await publish(mqtt, "livingroom/binary_sensor/window/state", "ON")
            await publish(mqtt, "livingroom/switch/relay/state", "OFF")
            await publish(mqtt, "livingroom/switch/relay/command", "ON")  # to the device
            seen = await until_device(running, "livingroom", metrics=4, online=True)
            await publish(mqtt, "livingroom/status", "offline", retain=True)  # its Last Will
            await until_device(running, "livingroom", online=False)
            refused = await rejections(running)
    assert seen.metrics == {
        "living_room_temperature": (21.5, "Cel"),
        "pressure": (101320.0, "Pa"),
        "window": (1.0, None),
        "relay": (0.0, None),
    }
    assert seen.attributes["wifi_ssid"] == "home"
    assert refused == []  # "nan" (no value yet) is not an error


async def test_each_preset_under_the_base_topic_its_firmware_was_given(
    settings: Settings, mosquitto: Mosquitto
) -> None:
    settings = with_sources(
        settings,
        SourceSettings(preset="tasmota", base="tasmota/%topic%/%prefix%/"),
        SourceSettings(preset="zigbee2mqtt", base="garage/zigbee"),
        SourceSettings(preset="homie", base="site/homie"),
        SourceSettings(preset="esphome", base="ha"),
    )
    discovery = {"unit_of_meas": "°C", "stat_t": "node1/sensor/t/state"}
    async with publisher(mosquitto.url) as mqtt:
        await publish(mqtt, "ha/sensor/node1/t/config", discovery, retain=True)
        async with serve_hub(settings) as running:
            for topic, payload in [
                ("tasmota/kitchen/tele/LWT", "Online"),
                ("tasmota/kitchen/tele/SENSOR", TASMOTA_AM2301),
                ("garage/zigbee/plug/availability", {"state": "online"}),
                ("garage/zigbee/plug", {"state": "ON", "power": 12}),
                ("site/homie/car/$state", "ready"),
                ("site/homie/car/engine/$unit", "°C"),  # a node attribute, not a property's
                ("site/homie/car/engine/temperature/$unit", "°C"),
                ("site/homie/car/engine/temperature", "21.5"),
                ("node1/status", "online"),
                ("node1/sensor/t/state", "19.5"),
            ]:
                await publish(mqtt, topic, payload)
            kitchen = await until_device(running, "kitchen", metrics=2, online=True)
            plug = await until_device(running, "plug", online=True)
            car = await until_device(running, "car", online=True)
            node = await until_device(running, "node1", online=True)
            await publish(mqtt, "garage/zigbee/bridge/state", {"state": "offline"})
            await until_device(running, "plug", online=False)
            shown = await devices(running)
    assert kitchen.metrics["am2301_temperature"] == (24.6, "Cel")
    assert plug.metrics == {"power": (12.0, "W")}
    assert car.metrics == {"engine_temperature": (21.5, "Cel")}
    assert node.metrics == {"t": (19.5, "Cel")}
    assert sorted(shown) == ["car", "kitchen", "node1", "plug"]


async def test_each_preset_refuses_what_it_cannot_read_and_stores_the_next(
    settings: Settings, mosquitto: Mosquitto
) -> None:
    settings = with_sources(
        settings,
        *(SourceSettings(preset=p) for p in ("tasmota", "zigbee2mqtt", "homie", "esphome")),
    )
    bad_then_good = [
        ("tele/t1/SENSOR", b"\xff\xfe", b'{"AM2301":{"Temperature":20}}'),
        ("tele/t2/SENSOR", b'{"AM2301":{"Temperature":NaN}}', b'{"AM2301":{"Temperature":21}}'),
        ("tele/t3/LWT", b"Maybe", b'{"Heap":28}'),
        ("zigbee2mqtt/z1", b"[1, 2", b'{"temperature": 22}'),
        ("zigbee2mqtt/z2", b'{"temperature": {"value": [1]}}', b'{"temperature": 23}'),
        ("homie/h1/node/temperature", b"\xff", b"24"),
        ("esphome1/sensor/temperature/state", b"warm", b"25"),
    ]
    async with serve_hub(settings) as running, publisher(mosquitto.url) as mqtt:
        for topic, bad, good in bad_then_good:
            await publish(mqtt, topic, bad)
            good_topic = topic if not topic.endswith("LWT") else topic.replace("LWT", "STATE")
            await publish(mqtt, good_topic, good)
        ids = ["t1", "t2", "t3", "z1", "z2", "h1", "esphome1"]

        async def all_stored() -> bool:
            shown = await devices(running)
            return all(i in shown and shown[i].metrics for i in ids)

        await wait_until(all_stored, what="a good reading from every device")
        refused = await rejections(running)
    assert sorted(device for device, _, _ in refused) == sorted(ids)
    reasons = {device: reason for device, reason, _ in refused}
    assert reasons["t1"] == "invalid_encoding"
    assert reasons["t2"] == "invalid_json"
    assert reasons["z1"] == "invalid_json"
    assert reasons["z2"] == "invalid_value"
    assert all(detail for _, _, detail in refused)
