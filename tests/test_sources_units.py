"""The sources' pure parts: device ids from foreign names, who holds an id,
and what each decoder makes of a topic and payload (no broker here)."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.config import SourceSettings
from hub.models import KnownDevice, is_valid_device_id
from hub.sources import build_sources
from hub.sources.base import Availability, Refused, Telemetry
from hub.sources.esphome import EspHome
from hub.sources.homie import Homie
from hub.sources.layout import Layout
from hub.sources.names import NATIVE, DeviceNames, Holder, device_id_for
from hub.sources.tasmota import Tasmota
from hub.sources.zigbee2mqtt import Zigbee2Mqtt

pytestmark = pytest.mark.unit


# --- device ids -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["kitchen", "0x00158d0001a2b3c4", "super-car", "a.b_c-d"])
def test_a_valid_id_is_kept(name: str) -> None:
    assert device_id_for(name) == name


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("living room/weather", "living_room_weather"),
        ("Küche", "Kuche"),
        ("Lumi: salon", "Lumi_salon"),
        ("温度", "device"),
        ("x" * 70, "x" * 55),
    ],
)
def test_other_names_are_folded_and_get_a_hash(name: str, slug: str) -> None:
    device_id = device_id_for(name)
    assert device_id.rsplit("-", 1)[0] == slug
    assert len(device_id.rsplit("-", 1)[1]) == 8
    assert is_valid_device_id(device_id)


@settings(max_examples=500, deadline=None, database=None)
@given(a=st.text(min_size=1, max_size=80), b=st.text(min_size=1, max_size=80))
def test_ids_are_valid_deterministic_and_apart(a: str, b: str) -> None:
    assert is_valid_device_id(device_id_for(a))
    assert device_id_for(a) == device_id_for(a)
    if a != b:
        assert device_id_for(a) != device_id_for(b)


# --- holders ---------------------------------------------------------------------


def test_the_first_to_use_an_id_holds_it() -> None:
    names = DeviceNames()
    assert names.claim("kitchen", "tasmota", "kitchen") is None
    assert names.claim("kitchen", "tasmota", "kitchen") is None
    assert names.claim("kitchen", "zigbee2mqtt", "kitchen") == Holder("tasmota", "kitchen")
    assert names.claim("kitchen", NATIVE, "kitchen") == Holder("tasmota", "kitchen")
    assert names.claim("meter", NATIVE, "meter") is None
    assert str(names.claim("meter", "homie", "meter")) == "a native device"


def test_holders_are_read_back_from_the_store() -> None:
    names = DeviceNames()
    names.load(
        [
            KnownDevice("native-1", False, 1, None, None),
            KnownDevice("Lumi_salon-x", True, 1, "zigbee2mqtt", "Lumi: salon"),
            KnownDevice("listed-only", False, 0, None, None),  # in [[devices]], never heard
        ]
    )
    assert names.claim("native-1", "tasmota", "native-1") is not None
    assert names.claim("native-1", NATIVE, "native-1") is None
    assert names.claim("Lumi_salon-x", "zigbee2mqtt", "Lumi: salon") is None
    assert names.claim("Lumi_salon-x", NATIVE, "Lumi_salon-x") == Holder(
        "zigbee2mqtt", "Lumi: salon"
    )
    assert names.claim("listed-only", "tasmota", "listed-only") is None  # no one's yet


# --- decoders ----------------------------------------------------------------------


def test_sources_are_built_in_order() -> None:
    built = build_sources((SourceSettings(preset="homie"), SourceSettings(topic="a/{device}")))
    assert [s.label for s in built] == ["homie", "a/{device}"]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"state":"online"}', Availability("plug", True)),
        (b'{"state":"offline"}', Availability("plug", False)),
        (b"online", Availability("plug", True)),
        (b"offline", Availability("plug", False)),
        (b"maybe", Refused("plug", 'availability must be online/offline or {"state": ...}')),
        (b'{"state": 1}', Refused("plug", 'availability must be online/offline or {"state": ...}')),
    ],
)
def test_zigbee2mqtt_availability_in_both_forms(payload: bytes, expected: object) -> None:
    assert Zigbee2Mqtt(SourceSettings()).decode(
        "zigbee2mqtt/plug/availability", payload, False
    ) == [expected]


@pytest.mark.parametrize(
    "topic",
    [
        "zigbee2mqtt/bridge/state",  # online; offline: see below
        "zigbee2mqtt/bridge/logging",
        "zigbee2mqtt/plug/set",
        "zigbee2mqtt/plug/get",
        "zigbee2mqtt/plug/set/state",
    ],
)
def test_zigbee2mqtt_topics_that_are_not_readings(topic: str) -> None:
    assert Zigbee2Mqtt(SourceSettings()).decode(topic, b'{"state": "ON"}', False) == []


@pytest.mark.parametrize("offline", [b'{"state":"offline"}', b"offline"])
def test_zigbee2mqtt_bridge_offline_takes_offline_every_device_heard_through_it(
    offline: bytes,
) -> None:
    source = Zigbee2Mqtt(SourceSettings())
    assert source.decode("zigbee2mqtt/bridge/state", offline, True) == []  # none heard yet
    source.decode("zigbee2mqtt/living room/weather", b'{"temperature": 21}', False)
    source.decode("zigbee2mqtt/plug/availability", b'{"state":"online"}', False)
    source.decode("zigbee2mqtt/plug/set", b'{"state": "OFF"}', False)  # a command: not heard
    source.decode("zigbee2mqtt/bridge/devices", b"[]", True)
    assert source.decode("zigbee2mqtt/bridge/state", offline, True) == [
        Availability("living room/weather", False),
        Availability("plug", False),
    ]
    # Online again: each device comes back by its own availability or readings.
    assert source.decode("zigbee2mqtt/bridge/state", b'{"state":"online"}', True) == []


def test_zigbee2mqtt_reads_units_from_bridge_devices_features_included() -> None:
    source = Zigbee2Mqtt(SourceSettings())
    exposes = [
        {"type": "light", "features": [{"property": "color_temp", "unit": "mired"}]},
        {"property": "voltage", "unit": "V"},
    ]
    devices = orjson.dumps(
        [
            {"friendly_name": "lamp", "definition": {"exposes": exposes}},
            {"friendly_name": "x", "definition": None},
            5,
        ]
    )
    assert source.decode("zigbee2mqtt/bridge/devices", devices, True) == []
    ((telemetry),) = (
        source.decode("zigbee2mqtt/lamp", b'{"voltage": 230, "color_temp": 300}', False) or []
    )
    assert isinstance(telemetry, Telemetry)
    assert telemetry.units["voltage"] == "V"
    assert telemetry.units["color_temp"] == "mired"
    ((other),) = source.decode("zigbee2mqtt/sensor", b'{"voltage": 3000}', False) or []
    assert isinstance(other, Telemetry)
    assert other.units["voltage"] == "mV"


def test_homie_reads_values_by_their_datatype() -> None:
    homie = Homie(SourceSettings())
    for name, value in [("$datatype", "integer"), ("$unit", "#")]:
        assert homie.decode(f"homie/d1/n/count/{name}", value.encode(), True) == []
    assert homie.decode("homie/d1/n/count", b"7", False) == [
        Telemetry("d1", {"n": {"count": {"value": 7, "unit": "#"}}})
    ]
    assert homie.decode("homie/d1/n/count", b"7.5x", False) == [
        Refused("d1", "n/count: '7.5x' is not a integer")
    ]
    homie.decode("homie/d1/n/on/$datatype", b"boolean", True)
    assert homie.decode("homie/d1/n/on", b"TRUE", False) == [
        Refused("d1", "n/on: 'TRUE' is not true or false")
    ]
    assert homie.decode("homie/d1/$state", b"sleeping", True) == [
        Telemetry("d1", {"state": "sleeping"}),
        Availability("d1", False),
    ]
    assert homie.decode("homie/$broadcast/alert", b"x", False) is None
    assert homie.decode("homie/d1/n/on/set", b"true", False) == []


def test_esphome_discovery_with_abbreviations_and_base() -> None:
    esphome = EspHome(SourceSettings())
    config = b'{"~": "n1/sensor/t", "stat_t": "~/state", "unit_of_meas": "\\u00b0F"}'
    assert esphome.decode("homeassistant/sensor/n1/t/config", config, True) == []
    assert esphome.decode("n1/sensor/t/state", b"70", False) == [
        Telemetry("n1", {"t": {"value": 70, "unit": "°F"}})
    ]
    assert esphome.decode("n1/sensor/t/state", b"nan", False) == []
    assert esphome.decode("n1/light/t/state", b"ON", False) is None


@pytest.mark.parametrize(
    ("pattern", "topic", "matches"),
    [
        ("farm/{device}/{metric}", "farm/a/t", True),
        ("farm/{device}/{metric}", "farm/a/t/x", False),
        ("farm/{device}/{metric}", "farm//t", False),
        ("site/+/{device}/json", "site/n/a/json", True),
        ("lab/{device}/#", "lab/a", True),
        ("lab/{device}/#", "lab/a/b/c", True),
        ("lab/{device}/#", "other/a/b", False),
    ],
)
def test_layout_topics(pattern: str, topic: str, matches: bool) -> None:
    layout = Layout(SourceSettings(topic=pattern, format="json"))
    assert (layout.decode(topic, b"1", False) is not None) is matches


# --- base topics set up in the firmware (`base`) ----------------------------


@pytest.mark.parametrize(
    ("full_topic", "topic", "name"),
    [
        ("%prefix%/%topic%/", "tele/kitchen/SENSOR", "kitchen"),
        ("tasmota/%topic%/%prefix%/", "tasmota/kitchen/tele/SENSOR", "kitchen"),
        ("%prefix%/%hostname%/%topic%", "tele/tasmota-1234/kitchen/SENSOR", "kitchen"),
        ("tasmota/%topic%/%prefix%/", "tasmota/kitchen/stat/SENSOR", None),  # not telemetry
        ("tasmota/%topic%/%prefix%/", "tele/kitchen/SENSOR", None),
        ("%prefix%/%topic%/", "tele/kitchen/x/SENSOR", None),
    ],
)
def test_tasmota_reads_the_full_topic_it_was_given(
    full_topic: str, topic: str, name: str | None
) -> None:
    tasmota = Tasmota(SourceSettings(preset="tasmota", base=full_topic))
    decoded = tasmota.decode(topic, b'{"AM2301": {"Temperature": 21}}', False)
    if name is None:
        assert decoded is None
    else:
        assert decoded is not None
        assert [item.name for item in decoded] == [name]


def test_each_preset_subscribes_and_is_allowed_under_its_base() -> None:
    tasmota = Tasmota(SourceSettings(preset="tasmota", base="tasmota/%topic%/%prefix%/"))
    assert [s.filter for s in tasmota.subscriptions()] == [
        "tasmota/+/tele/SENSOR",
        "tasmota/+/tele/STATE",
        "tasmota/+/tele/LWT",
    ]
    assert tasmota.device_topics("%u") == (
        ["tasmota/%u/tele/#", "tasmota/%u/stat/#"],
        ["tasmota/%u/cmnd/#"],
    )
    zigbee = Zigbee2Mqtt(SourceSettings(preset="zigbee2mqtt", base="site/zigbee"))
    assert [s.filter for s in zigbee.subscriptions()] == [
        "site/zigbee/#",
        "site/zigbee/bridge/devices",
        "site/zigbee/bridge/state",
    ]
    assert zigbee.bridge_user == "site-zigbee"
    assert zigbee.decode("site/zigbee/plug", b'{"power": 5}', False) is not None
    assert zigbee.decode("zigbee2mqtt/plug", b'{"power": 5}', False) is None
    assert zigbee.decode("site/zigbee/bridge/info", b"{}", True) == []
    homie = Homie(SourceSettings(preset="homie", base="site/homie"))
    assert homie.device_topics("%u") == (["site/homie/%u/#"], ["site/homie/%u/+/+/set"])
    assert homie.decode("site/homie/car/$state", b"ready", True) == [
        Telemetry("car", {"state": "ready"}),
        Availability("car", True),
    ]
    assert homie.decode("site/homie/car/engine/rpm", b"900", False) == [
        Telemetry("car", {"engine": {"rpm": 900}})
    ]
    assert homie.decode("homie/car/$state", b"ready", True) is None
    esphome = EspHome(SourceSettings(preset="esphome", base="ha/discovery"))
    config = b'{"stat_t": "n1/sensor/t/state", "unit_of_meas": "\\u00b0C"}'
    assert esphome.decode("ha/discovery/sensor/n1/t/config", config, True) == []
    assert esphome.decode("n1/sensor/t/state", b"21", False) == [
        Telemetry("n1", {"t": {"value": 21, "unit": "°C"}})
    ]
    assert esphome.device_topics("%u")[0] == ["%u/#", "ha/discovery/+/%u/+/config"]
