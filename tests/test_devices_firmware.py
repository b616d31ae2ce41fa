"""What `telemetry-sim --firmware` publishes, per firmware: topics, payloads,
retained flags and Last Wills, and that the hub's presets read them."""

from __future__ import annotations

import re
import time
from typing import Any, Literal

import orjson
import pytest

from devices.errors import SetupError
from devices.firmware import EspHome, Homie, Message, Sample, Tasmota, Zigbee2Mqtt, fleet
from devices.firmware.base import slug
from devices.firmware.esphome import ENTITIES, esphome_name
from devices.firmware.tasmota import STATE_EVERY, tasmota_time, tasmota_uptime
from devices.firmware.zigbee2mqtt import check_friendly_name
from devices.progress import Tally
from devices.sim import main
from hub.config import PRESETS as PRESET_NAMES
from hub.config import SourceSettings, load_settings
from hub.demo import with_presets
from hub.sources import PRESETS
from hub.sources.base import Availability, Telemetry

pytestmark = pytest.mark.unit

Preset = Literal["tasmota", "zigbee2mqtt", "homie", "esphome"]

# 2024-01-01T00:00:00Z
SAMPLE = Sample(
    time=1_704_067_200.0,
    temperature=21.74,
    humidity=66.61,
    pressure=988.63,
    battery=93,
    voltage=2990,
    linkquality=145,
    rssi=-57,
    motion=True,
    uptime=66_972,
)


def text(message: Message) -> str:
    return message.payload.decode()


def json_of(message: Message) -> Any:
    return orjson.loads(message.payload)


def decoded(preset: Preset, messages: list[Message]) -> list[Any]:
    """What the hub's preset makes of `messages`, in order (as received live)."""
    source = PRESETS[preset](SourceSettings(preset=preset))
    found: list[Any] = []
    for message in messages:
        result = source.decode(message.topic, message.payload, False)
        assert result is not None, message.topic
        found += result
    return found


# --- names


def test_the_fleet_names_follow_the_id_prefix() -> None:
    assert [f.devices for f in fleet("tasmota", 2, "lab")] == [
        ("lab-tasmota-000",),
        ("lab-tasmota-001",),
    ]
    assert [f.devices for f in fleet("homie", 1, "Lab_2")] == [("lab-2-homie-000",)]
    assert [f.devices for f in fleet("esphome", 1, "lab")] == [("lab-esp-000",)]
    (bridge,) = fleet("zigbee2mqtt", 3, "lab")
    assert bridge.devices == ("lab room 0/weather", "lab-zigbee-001", "lab room 2/weather")


def test_each_client_has_an_id_of_its_own() -> None:
    firmwares = [f for name in ("tasmota", "homie", "esphome") for f in fleet(name, 3, "sim")]
    ids = [f.client_id for f in firmwares]
    assert len(set(ids)) == len(ids) == 9
    assert re.fullmatch(r"DVES_[0-9A-F]{6}", ids[0])  # Tasmota's default MqttClient


@pytest.mark.parametrize("prefix", ["has space", "a/b", "x" * 70])
def test_a_bad_id_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(SetupError):
        fleet("tasmota", 1, prefix)


def test_names_are_made_valid_for_homie_and_esphome() -> None:
    assert slug("Sim_Lab.North-000") == "sim-lab-north-000"
    assert slug("--x--") == "x"
    assert esphome_name("Kitchen.Sensor") == "kitchen-sensor"
    with pytest.raises(SetupError):
        esphome_name("x" * 32)
    with pytest.raises(SetupError):
        Homie("Not-Lowercase")
    with pytest.raises(SetupError):
        EspHome("not_hyphens")


@pytest.mark.parametrize(
    "name", ["", "/kitchen", "kitchen/", "kitchen/4", "a+b", "a#b", "bridge", "bridge/x"]
)
def test_zigbee_friendly_names_follow_zigbee2mqtt_rules(name: str) -> None:
    with pytest.raises(SetupError):
        check_friendly_name(name)


# --- Tasmota


def test_tasmota_announces_online_and_leaves_offline_as_its_will() -> None:
    device = Tasmota("kitchen")
    assert device.will() == Message("tele/kitchen/LWT", b"Offline", retain=True)
    assert device.hello() == [Message("tele/kitchen/LWT", b"Online", retain=True)]
    assert device.goodbye() == [device.will()]


def test_tasmota_reports_a_bme280_as_its_docs_show() -> None:
    device = Tasmota("kitchen")
    state, sensor = device.report("kitchen", SAMPLE)
    assert sensor.topic == "tele/kitchen/SENSOR"
    assert not sensor.retain
    # Key order as Tasmota writes it: Time first, units last.
    assert text(sensor) == (
        f'{{"Time":"{tasmota_time(SAMPLE.time)}","BME280":{{"Temperature":21.7,'
        '"Humidity":66.6,"Pressure":988.6},"PressureUnit":"hPa","TempUnit":"C"}'
    )
    assert sensor.values == 3
    assert state.topic == "tele/kitchen/STATE"
    body = json_of(state)
    assert body["UptimeSec"] == 66_972
    assert body["Uptime"] == "0T18:36:12"
    assert body["Heap"] == 28
    assert body["Wifi"]["Signal"] == -57
    assert body["Wifi"]["RSSI"] == 86  # Tasmota's quality: 2 x (dBm + 100)
    assert state.values == 10


def test_tasmota_sends_state_with_the_first_report_and_then_now_and_then() -> None:
    device = Tasmota("kitchen")
    kinds = [
        [m.topic.rsplit("/", 1)[1] for m in device.report("kitchen", SAMPLE)]
        for _ in range(STATE_EVERY + 1)
    ]
    assert kinds[0] == ["STATE", "SENSOR"]
    assert kinds[1:STATE_EVERY] == [["SENSOR"]] * (STATE_EVERY - 1)
    assert kinds[STATE_EVERY] == ["STATE", "SENSOR"]


def test_tasmota_time_is_local_without_an_offset() -> None:
    stamp = tasmota_time(SAMPLE.time)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", stamp)
    assert stamp == time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(SAMPLE.time))
    assert tasmota_uptime(13) == "0T00:00:13"
    assert tasmota_uptime(3 * 86_400 + 3_600 + 61) == "3T01:01:01"


def test_the_tasmota_preset_reads_the_simulated_device() -> None:
    device = Tasmota("kitchen")
    found = decoded("tasmota", [*device.hello(), *device.report("kitchen", SAMPLE)])
    assert found[0] == Availability("kitchen", True)
    sensor = found[-1]
    assert isinstance(sensor, Telemetry)
    assert sensor.document["BME280"] == {"Temperature": 21.7, "Humidity": 66.6, "Pressure": 988.6}
    assert sensor.units["temperature"] == "Cel"
    assert sensor.units["pressure"] == "hPa"
    assert decoded("tasmota", [device.will()]) == [Availability("kitchen", False)]


# --- Zigbee2MQTT


def test_zigbee2mqtt_is_one_bridge_with_its_will_and_retained_descriptions() -> None:
    bridge = Zigbee2Mqtt(["room 1/weather", "hall"])
    offline, online = b'{"state":"offline"}', b'{"state":"online"}'
    assert bridge.will() == Message("zigbee2mqtt/bridge/state", offline, retain=True)
    state, devices, *availability = bridge.hello()
    assert state == Message("zigbee2mqtt/bridge/state", online, retain=True)
    assert devices.topic == "zigbee2mqtt/bridge/devices"
    assert devices.retain
    assert availability == [
        Message("zigbee2mqtt/room 1/weather/availability", online, retain=True),
        Message("zigbee2mqtt/hall/availability", online, retain=True),
    ]
    described = json_of(devices)
    assert [d["friendly_name"] for d in described] == ["Coordinator", "room 1/weather", "hall"]
    assert described[0]["type"] == "Coordinator"
    assert described[0]["definition"] is None
    units = {e["property"]: e["unit"] for e in described[1]["definition"]["exposes"]}
    assert units == {
        "battery": "%",
        "temperature": "°C",
        "humidity": "%",
        "pressure": "hPa",
        "voltage": "mV",
        "linkquality": "lqi",
    }
    assert len({d["ieee_address"] for d in described}) == 3
    assert bridge.goodbye() == [bridge.will()]


def test_zigbee2mqtt_reports_each_device_as_json_on_its_friendly_name() -> None:
    bridge = Zigbee2Mqtt(["room 1/weather"])
    (message,) = bridge.report("room 1/weather", SAMPLE)
    assert message.topic == "zigbee2mqtt/room 1/weather"
    assert not message.retain
    assert text(message) == (
        '{"battery":93,"humidity":66.61,"linkquality":145,"pressure":988.6,'
        '"temperature":21.74,"voltage":2990}'
    )
    assert message.values == 6


def test_the_zigbee2mqtt_preset_reads_the_simulated_bridge() -> None:
    bridge = Zigbee2Mqtt(["room 1/weather"])
    found = decoded("zigbee2mqtt", [*bridge.hello(), *bridge.report("room 1/weather", SAMPLE)])
    assert found[0] == Availability("room 1/weather", True)
    telemetry = found[1]
    assert isinstance(telemetry, Telemetry)
    assert telemetry.name == "room 1/weather"
    assert telemetry.units["voltage"] == "mV"
    assert telemetry.units["pressure"] == "hPa"


# --- Homie


def test_homie_announces_its_tree_between_init_and_ready() -> None:
    device = Homie("greenhouse-1")
    assert device.will() == Message("homie/greenhouse-1/$state", b"lost", retain=True)
    hello = device.hello()
    assert all(m.retain for m in hello)
    listed = {m.topic.removeprefix("homie/greenhouse-1/"): text(m) for m in hello}
    assert listed == {
        "$homie": "4.0.0",
        "$name": "Simulated greenhouse-1",
        "$state": "ready",
        "$nodes": "climate",
        "climate/$name": "Climate",
        "climate/$type": "BME280",
        "climate/$properties": "temperature,humidity",
        "climate/temperature/$name": "Temperature",
        "climate/temperature/$datatype": "float",
        "climate/temperature/$unit": "°C",
        "climate/humidity/$name": "Humidity",
        "climate/humidity/$datatype": "float",
        "climate/humidity/$unit": "%",
    }
    states = [text(m) for m in hello if m.topic.endswith("/$state")]
    assert states == ["init", "ready"]
    assert hello[-1].topic == "homie/greenhouse-1/$state"
    assert device.goodbye() == [Message("homie/greenhouse-1/$state", b"disconnected", retain=True)]


def test_homie_reports_retained_values_as_text() -> None:
    assert Homie("greenhouse-1").report("greenhouse-1", SAMPLE) == [
        Message("homie/greenhouse-1/climate/temperature", b"21.7", retain=True, values=1),
        Message("homie/greenhouse-1/climate/humidity", b"66.6", retain=True, values=1),
    ]


def test_the_homie_preset_reads_the_simulated_device() -> None:
    device = Homie("greenhouse-1")
    found = decoded("homie", [*device.hello(), *device.report("greenhouse-1", SAMPLE)])
    assert Availability("greenhouse-1", True) in found
    values = [item.document for item in found if isinstance(item, Telemetry)][-2:]
    assert values == [
        {"climate": {"temperature": {"value": 21.7, "unit": "°C"}}},
        {"climate": {"humidity": {"value": 66.6, "unit": "%"}}},
    ]
    assert Availability("greenhouse-1", False) in decoded("homie", [device.will()])


# --- ESPHome


def test_esphome_announces_online_and_discovery_with_abbreviated_keys() -> None:
    node = EspHome("living-room")
    assert node.will() == Message("living-room/status", b"offline", retain=True)
    status, *discovery = node.hello()
    assert status == Message("living-room/status", b"online", retain=True)
    assert [m.topic for m in discovery] == [
        "homeassistant/sensor/living-room/temperature/config",
        "homeassistant/sensor/living-room/humidity/config",
        "homeassistant/binary_sensor/living-room/motion/config",
    ]
    assert all(m.retain for m in discovery)
    temperature = json_of(discovery[0])
    assert temperature == {
        "dev_cla": "temperature",
        "unit_of_meas": "°C",
        "stat_cla": "measurement",
        "name": "Temperature",
        "stat_t": "living-room/sensor/temperature/state",
        "avty_t": "living-room/status",
        "uniq_id": "ESPsensortemperature",
        "dev": {
            "ids": node.mac,
            "name": "living-room",
            "sw": "esphome v2024.11.0",
            "mdl": "esp32dev",
            "mf": "espressif",
        },
    }
    assert "unit_of_meas" not in json_of(discovery[2])
    assert len(discovery) == len(ENTITIES)
    assert node.goodbye() == [node.will()]


def test_esphome_reports_states_as_text_and_motion_when_it_changes() -> None:
    node = EspHome("living-room")
    first = node.report("living-room", SAMPLE)
    assert first == [
        Message("living-room/sensor/temperature/state", b"21.7", retain=True, values=1),
        Message("living-room/sensor/humidity/state", b"66.6", retain=True, values=1),
        Message("living-room/binary_sensor/motion/state", b"ON", retain=True, values=1),
    ]
    assert len(node.report("living-room", SAMPLE)) == 2  # motion unchanged
    still = Sample(SAMPLE.time + 1, 21.8, 66.0, 988.0, motion=False)
    assert node.report("living-room", still)[-1].payload == b"OFF"
    node.hello()  # after a reconnect the state goes out again
    assert len(node.report("living-room", still)) == 3


def test_the_esphome_preset_reads_the_simulated_node() -> None:
    node = EspHome("living-room")
    found = decoded("esphome", [*node.hello(), *node.report("living-room", SAMPLE)])
    assert found[0] == Availability("living-room", True)
    values = [item.document for item in found if isinstance(item, Telemetry)]
    assert values == [
        {"temperature": {"value": 21.7, "unit": "°C"}},
        {"humidity": {"value": 66.6, "unit": "%"}},
        {"motion": True},
    ]


# --- the command line


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--firmware", "tasmota", "--protocol", "http"], "cannot go with --protocol http"),
        (["--firmware", "homie", "--protocol", "socketio"], "cannot go with --protocol socketio"),
        (
            ["--firmware", "esphome", "--offline-every", "2", "--offline-for", "1"],
            "--offline-every does not go with --firmware",
        ),
        (["--firmware", "wled"], "invalid choice"),
    ],
)
def test_firmware_options_that_cannot_work_exit_2(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert error in captured.err
    assert captured.out == ""


def test_help_names_the_firmwares(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--firmware {tasmota,zigbee2mqtt,homie,esphome}" in text


def test_the_summary_counts_the_readings_of_firmware_reports() -> None:
    tally = Tally(sent=10, acknowledged=10, readings=26)
    assert "readings=26 " in tally.summary(1.0, 3)
    assert "readings=30 " in Tally(sent=10, acknowledged=10).summary(1.0, 3)


def test_the_demo_gives_the_hub_the_four_presets_beside_its_own_sources() -> None:
    farm = SourceSettings(topic="farm/{device}/{metric}", format="number", group="farm")
    tasmota = SourceSettings(preset="tasmota", group="plugs")
    for configured in [(), (farm, tasmota)]:
        environ = {"HUB_MQTT__SOURCES": with_presets(configured)}
        sources = load_settings(None, environ).mqtt.sources
        assert sources[: len(configured)] == configured
        assert sorted(s.preset for s in sources if s.preset) == sorted(PRESET_NAMES)
