"""SenML packs as RFC 8428 writes them: every example of its section 5
stored as the RFC means it, the rules of sections 4.4 to 4.6, and a property:
a pack and its resolved form (4.6) are stored alike."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.models import Attribute, Normalized, PendingReading, RejectReason, Source
from hub.normalize import Rules, normalize

pytestmark = pytest.mark.unit

NOW = 1_764_138_000_123  # when the hub received the pack
DEVICE = "ow-sensor"
URN = "urn:dev:ow:10e2073a01080063"
# The examples date from 2010 and 2011: accept times that old.
RULES = Rules(max_past_ms=20 * 365 * 86_400_000)


def run(pack: Any, rules: Rules = RULES) -> Normalized:
    return normalize(
        orjson.dumps(pack), device_id=DEVICE, source=Source.MQTT, received_ms=NOW, rules=rules
    )


def stored(pack: Any) -> list[tuple[str, float, str | None, int]]:
    result = run(pack)
    assert result.rejections == ()
    return [(r.metric, r.value, r.unit, r.ts) for r in result.readings]


# --- section 5.1, each example as printed --------------------------------------

EXAMPLE_5_1_1 = [{"n": "urn:dev:ow:10e2073a01080063", "u": "Cel", "v": 23.1}]
EXAMPLE_5_1_2 = [
    {"bn": "urn:dev:ow:10e2073a01080063:", "n": "voltage", "u": "V", "v": 120.1},
    {"n": "current", "u": "A", "v": 1.2},
]
EXAMPLE_5_1_2_TIMED = [
    {
        "bn": "urn:dev:ow:10e2073a0108006:",
        "bt": 1.276020076001e09,
        "bu": "A",
        "bver": 5,
        "n": "voltage",
        "u": "V",
        "v": 120.1,
    },
    {"n": "current", "t": -5, "v": 1.2},
    {"n": "current", "t": -4, "v": 1.3},
    {"n": "current", "t": -3, "v": 1.4},
    {"n": "current", "t": -2, "v": 1.5},
    {"n": "current", "t": -1, "v": 1.6},
    {"n": "current", "v": 1.7},
]
# The SenSML stream of 5.1.2, as far as the RFC prints it (it ends in "...").
EXAMPLE_5_1_2_STREAM = [
    {"bn": "urn:dev:ow:10e2073a01080063", "bt": 1.320067464e09, "bu": "%RH", "v": 21.2},
    {"t": 10, "v": 21.3},
    {"t": 20, "v": 21.4},
    {"t": 30, "v": 21.4},
    {"t": 40, "v": 21.5},
    {"t": 50, "v": 21.5},
    {"t": 60, "v": 21.5},
    {"t": 70, "v": 21.6},
    {"t": 80, "v": 21.7},
]
EXAMPLE_5_1_3 = [
    {"bn": "urn:dev:ow:10e2073a01080063", "bt": 1.320067464e09, "bu": "%RH", "v": 20},
    {"u": "lon", "v": 24.30621},
    {"u": "lat", "v": 60.07965},
    {"t": 60, "v": 20.3},
    {"u": "lon", "t": 60, "v": 24.30622},
    {"u": "lat", "t": 60, "v": 60.07965},
    {"t": 120, "v": 20.7},
    {"u": "lon", "t": 120, "v": 24.30623},
    {"u": "lat", "t": 120, "v": 60.07966},
    {"u": "%EL", "t": 150, "v": 98},
    {"t": 180, "v": 21.2},
    {"u": "lon", "t": 180, "v": 24.30628},
    {"u": "lat", "t": 180, "v": 60.07967},
]
EXAMPLE_5_1_4 = [
    {"n": URN, "u": "%RH", "t": 1.320067464e09, "v": 20},
    {"n": URN, "u": "lon", "t": 1.320067464e09, "v": 24.30621},
    {"n": URN, "u": "lat", "t": 1.320067464e09, "v": 60.07965},
    {"n": URN, "u": "%RH", "t": 1.320067524e09, "v": 20.3},
    {"n": URN, "u": "lon", "t": 1.320067524e09, "v": 24.30622},
    {"n": URN, "u": "lat", "t": 1.320067524e09, "v": 60.07965},
    {"n": URN, "u": "%RH", "t": 1.320067584e09, "v": 20.7},
    {"n": URN, "u": "lon", "t": 1.320067584e09, "v": 24.30623},
    {"n": URN, "u": "lat", "t": 1.320067584e09, "v": 60.07966},
    {"n": URN, "u": "%EL", "t": 1.320067614e09, "v": 98},
    {"n": URN, "u": "%RH", "t": 1.320067644e09, "v": 21.2},
    {"n": URN, "u": "lon", "t": 1.320067644e09, "v": 24.30628},
    {"n": URN, "u": "lat", "t": 1.320067644e09, "v": 60.07967},
]
EXAMPLE_5_1_5 = [
    {"bn": "urn:dev:ow:10e2073a01080063:", "n": "temp", "u": "Cel", "v": 23.1},
    {"n": "label", "vs": "Machine Room"},
    {"n": "open", "vb": False},
    {"n": "nfc-reader", "vd": "aGkgCg"},
]
EXAMPLE_5_1_6 = [
    {"bn": "2001:db8::2/", "bt": 1.320078429e09, "n": "temperature", "u": "Cel", "v": 25.2},
    {"n": "humidity", "u": "%RH", "v": 30},
    {"bn": "2001:db8::1/", "n": "temperature", "u": "Cel", "v": 12.3},
    {"n": "humidity", "u": "%RH", "v": 67},
]
EXAMPLE_5_1_7_THERMOSTAT = [
    {"bn": "urn:dev:ow:10e2073a01080063:"},
    {"n": "temp", "u": "Cel", "v": 23.1},
    {"n": "heat", "u": "/", "v": 1},
    {"n": "fan", "u": "/", "v": 0},
]
EXAMPLE_5_1_7_LIGHTS_ON = [
    {"bt": 1.320078429e09, "bu": "/", "n": "2001:db8::3", "v": 1},
    {"n": "2001:db8::4", "v": 1},
]
EXAMPLE_5_1_7_LIGHTS_OFF = [
    {"bt": 1.320078429e09, "bu": "/", "n": "2001:db8::3", "v": 0.5},
    {"n": "2001:db8::4", "v": 0.5},
    {"n": "2001:db8::3", "t": 0.1, "v": 0},
    {"n": "2001:db8::4", "t": 0.1, "v": 0},
]

T_2011 = 1_320_067_464_000  # Mon Oct 31 13:24:24 UTC 2011


def test_5_1_1_single_data_point_a_temperature_now() -> None:
    result = run(EXAMPLE_5_1_1)
    assert [(r.metric, r.value, r.unit, r.ts) for r in result.readings] == [
        ("temperature", 23.1, "Cel", NOW)
    ]
    assert result.attributes == (Attribute(DEVICE, "senml_name", URN, NOW),)


def test_5_1_2_voltage_and_current_now() -> None:
    assert stored(EXAMPLE_5_1_2) == [("voltage", 120.1, "V", NOW), ("current", 1.2, "A", NOW)]


def test_5_1_2_current_each_second_for_five_seconds_bver_5() -> None:
    at = 1_276_020_076_001  # Tue Jun 8 18:01:16.001 UTC 2010
    assert stored(EXAMPLE_5_1_2_TIMED) == [
        ("voltage", 120.1, "V", at),
        *[("current", 1.2 + i / 10, "A", at - (5 - i) * 1000) for i in range(6)],
    ]


def test_5_1_2_sensml_stream_humidity_every_ten_seconds() -> None:
    values = [21.2, 21.3, 21.4, 21.4, 21.5, 21.5, 21.5, 21.6, 21.7]
    assert stored(EXAMPLE_5_1_2_STREAM) == [
        ("humidity", v, "%RH", T_2011 + i * 10_000) for i, v in enumerate(values)
    ]


def test_5_1_3_humidity_position_and_battery_are_separate_series() -> None:
    readings = stored(EXAMPLE_5_1_3)
    series = {(metric, unit) for metric, _, unit, _ in readings}
    assert series == {
        ("humidity", "%RH"),
        ("longitude", "lon"),
        ("latitude", "lat"),
        ("battery", "%EL"),
    }
    assert [(m, v, ts) for m, v, _, ts in readings if m == "humidity"] == [
        ("humidity", 20.0, T_2011),
        ("humidity", 20.3, T_2011 + 60_000),
        ("humidity", 20.7, T_2011 + 120_000),
        ("humidity", 21.2, T_2011 + 180_000),
    ]
    assert ("battery", 98.0, "%EL", T_2011 + 150_000) in readings
    assert ("longitude", 24.30628, "lon", T_2011 + 180_000) in readings


def test_5_1_4_the_resolved_form_is_stored_as_5_1_3() -> None:
    assert stored(EXAMPLE_5_1_4) == stored(EXAMPLE_5_1_3)


def test_5_1_5_numbers_booleans_strings_and_data() -> None:
    result = run(EXAMPLE_5_1_5)
    assert result.rejections == ()
    assert [(r.metric, r.value, r.unit) for r in result.readings] == [
        ("temp", 23.1, "Cel"),
        ("open", 0.0, None),
    ]
    assert {(a.name, a.value) for a in result.attributes} == {
        ("label", "Machine Room"),
        ("nfc_reader", "aGkgCg"),
        ("senml_name", URN),
    }


def test_5_1_6_two_devices_in_one_pack_stay_apart_with_the_first_base_time() -> None:
    at = 1_320_078_429_000
    assert stored(EXAMPLE_5_1_6) == [
        ("2001_db8_2_temperature", 25.2, "Cel", at),
        ("2001_db8_2_humidity", 30.0, "%RH", at),
        ("2001_db8_1_temperature", 12.3, "Cel", at),
        ("2001_db8_1_humidity", 67.0, "%RH", at),
    ]


def test_5_1_7_a_record_of_base_fields_alone_and_ratios() -> None:
    assert stored(EXAMPLE_5_1_7_THERMOSTAT) == [
        ("temp", 23.1, "Cel", NOW),
        ("heat", 1.0, "/", NOW),
        ("fan", 0.0, "/", NOW),
    ]


def test_5_1_7_lights_on_and_off_at_their_times() -> None:
    at = 1_320_078_429_000
    assert stored(EXAMPLE_5_1_7_LIGHTS_ON) == [
        ("2001_db8_3", 1.0, "/", at),
        ("2001_db8_4", 1.0, "/", at),
    ]
    assert stored(EXAMPLE_5_1_7_LIGHTS_OFF) == [
        ("2001_db8_3", 0.5, "/", at),
        ("2001_db8_4", 0.5, "/", at),
        ("2001_db8_3", 0.0, "/", at + 100),
        ("2001_db8_4", 0.0, "/", at + 100),
    ]


def test_the_examples_times_are_refused_as_too_old_by_default() -> None:
    result = run(EXAMPLE_5_1_6, Rules())
    assert result.readings == ()
    assert {r.reason for r in result.rejections} == {RejectReason.TIMESTAMP_TOO_OLD}


# --- sections 4.4 to 4.6 -----------------------------------------------------------


def test_unknown_fields_are_ignored() -> None:
    pack = [{"n": "temperature", "v": 21.5, "foo": 1, "bfoo": "x"}]
    assert stored(pack) == [("temperature", 21.5, "Cel", NOW)]


@pytest.mark.parametrize(
    "pack",
    [
        [{"n": "temperature", "v": 21.5, "foo_": 1}],
        [{"bn": "a:", "n": "temperature", "v": 21.5}, {"n": "b", "v": 1, "bx_": True}],
    ],
    ids=["in the only record", "in a later record"],
)
def test_a_must_understand_field_refuses_the_whole_pack(pack: Any) -> None:
    result = run(pack)
    assert result.readings == ()
    ((rejection),) = result.rejections
    assert rejection.reason == RejectReason.INVALID_SENML
    assert "must be understood" in rejection.detail


@pytest.mark.parametrize("bver", [1, 5, 10, 26])
def test_versions_the_hub_understands(bver: int) -> None:
    assert stored([{"bver": bver, "n": "temperature", "v": 21.5}]) == [
        ("temperature", 21.5, "Cel", NOW)
    ]


@pytest.mark.parametrize(
    ("pack", "fragment"),
    [
        ([{"bver": 11, "n": "a", "v": 1}], "supports SenML version 10"),
        ([{"bver": 42, "n": "a", "v": 1}], "supports SenML version 10"),
        ([{"bver": 18, "n": "a", "v": 1}], "supports SenML version 10"),
        ([{"bver": 10.5, "n": "a", "v": 1}], "positive integer"),
        ([{"bver": "10", "n": "a", "v": 1}], "not a number"),
        ([{"bver": 10, "n": "a", "v": 1}, {"bver": 5, "n": "b", "v": 1}], "different versions"),
    ],
)
def test_versions_the_hub_refuses(pack: Any, fragment: str) -> None:
    result = run(pack)
    assert result.readings == ()
    ((rejection),) = result.rejections
    assert rejection.reason == RejectReason.INVALID_SENML
    assert fragment in rejection.detail


@pytest.mark.parametrize(
    ("record", "fragment"),
    [
        ({"n": "a", "v": 1, "vs": "x"}, "one is allowed"),
        ({"n": "a"}, "no value"),
        ({"n": "a", "t": 5}, "no value"),
        ({"n": "a b", "v": 1}, "must be A-Z"),
        ({"n": "a", "vd": "aGk="}, "base64url"),
        ({"n": "a", "v": 1, "ut": "soon"}, "ut must be a number"),
    ],
)
def test_a_bad_record_is_refused_alone(record: dict[str, Any], fragment: str) -> None:
    pack = [{"bn": "urn:dev:ow:1:", "n": "good", "v": 1}, record, {"n": "after", "v": 2}]
    result = run(pack)
    assert [r.metric for r in result.readings] == ["good", "after"]
    ((rejection),) = result.rejections
    assert rejection.reason == RejectReason.INVALID_SENML
    assert "record 1" in rejection.detail
    assert fragment in rejection.detail


def test_a_name_must_start_with_a_letter_or_digit() -> None:
    ((rejection),) = run([{"n": "-a", "v": 1}]).rejections
    assert "must be A-Z" in rejection.detail


def test_records_naming_another_device_urn_than_the_first_are_refused() -> None:
    pack = [
        {"bn": "urn:dev:ow:1:", "n": "temperature", "v": 20},
        {"bn": "urn:dev:ow:2:", "n": "temperature", "v": 30},
        {"bn": "urn:dev:ow:1:", "n": "humidity", "v": 40},
    ]
    result = run(pack)
    assert [(r.metric, r.value) for r in result.readings] == [
        ("temperature", 20.0),
        ("humidity", 40.0),
    ]
    ((rejection),) = result.rejections
    assert "one device URN per pack" in rejection.detail


def test_sums_and_base_sums() -> None:
    pack = [{"bn": "meter/", "bs": 1000, "n": "power", "u": "W", "v": 230, "s": 50}]
    assert stored(pack) == [("meter_power", 230.0, "W", NOW), ("meter_power_sum", 1050.0, "J", NOW)]
    assert stored([{"n": "flow", "u": "l/s", "s": 7}]) == [("flow_sum", 7.0, "l", NOW)]


def test_a_record_naming_the_sender_names_its_metric() -> None:
    pack = [{"bn": f"{DEVICE}/", "n": "temperature", "v": 20}, {"n": f"{DEVICE}:humidity", "v": 40}]
    assert stored(pack) == [
        ("temperature", 20.0, "Cel", NOW),
        ("ow_sensor_humidity", 40.0, None, NOW),
    ]


def test_a_pack_is_never_read_as_a_batch() -> None:
    result = run([{"n": "temperature", "v": 21.5, "foo": 1}, {"n": "humidity", "v": 40}])
    assert [r.metric for r in result.readings] == ["temperature", "humidity"]
    assert result.rejections == ()


# --- a property: a pack and its resolved form are stored alike ------------------

_UNITS = st.sampled_from([None, "Cel", "%RH", "V", "A", "lon", "/"])
_NAMES = st.sampled_from(["", "temperature", "humidity", "a/b", "x:y", "v1"])
_BASE_NAMES = st.sampled_from(["", "urn:dev:ow:10e2073a01080063:", "urn:dev:mac:0024befffe804ff1/"])


@st.composite
def packs(draw: st.DrawFn) -> list[dict[str, Any]]:
    records = []
    for index in range(draw(st.integers(1, 6))):
        record: dict[str, Any] = {}
        if index == 0 or draw(st.booleans()):
            if draw(st.booleans()):
                record["bt"] = draw(st.sampled_from([-120, 0, 1.7641e9]))
            if draw(st.booleans()):
                record["bu"] = draw(st.sampled_from(["Cel", "%RH", "A"]))
            if draw(st.booleans()):
                record["bv"] = draw(st.integers(-5, 5))
        if index == 0:
            record["bn"] = draw(_BASE_NAMES)
        name = draw(_NAMES)
        if name or not record.get("bn"):
            record["n"] = name or "value"
        unit = draw(_UNITS)
        if unit:
            record["u"] = unit
        if draw(st.booleans()):
            record["t"] = draw(st.integers(-60, 60))
        record["v"] = draw(st.floats(-1000, 1000, allow_nan=False))
        records.append(record)
    return records


def _resolve(pack: list[dict[str, Any]], now_s: float) -> list[dict[str, Any]]:
    """RFC 8428 4.6, written out independently of the hub's resolver."""
    bn, bt, bu, bv = "", 0.0, None, 0.0
    resolved = []
    for record in pack:
        bn = record.get("bn", bn)
        bt = record.get("bt", bt)
        bu = record.get("bu", bu)
        bv = record.get("bv", bv)
        out: dict[str, Any] = {"n": bn + record.get("n", "")}
        unit = record.get("u", bu)
        if unit:
            out["u"] = unit
        time = bt + record.get("t", 0)
        out["t"] = time if time >= 2**28 else now_s + time
        out["v"] = record["v"] + bv
        resolved.append(out)
    return resolved


@settings(max_examples=300, deadline=None, database=None)
@given(pack=packs())
def test_a_pack_and_its_resolved_form_are_stored_alike(pack: list[dict[str, Any]]) -> None:
    as_sent = run(pack)
    resolved = run(_resolve(pack, NOW / 1000))
    key = [(r.metric, r.unit, r.ts) for r in as_sent.readings]
    assert key == [(r.metric, r.unit, r.ts) for r in resolved.readings]
    for a, b in zip(as_sent.readings, resolved.readings, strict=True):
        assert a.value == pytest.approx(b.value, rel=1e-9, abs=1e-9)
    assert [r.reason for r in as_sent.rejections] == [r.reason for r in resolved.rejections]


def test_readings_are_pending_readings_of_the_sender() -> None:
    (reading,) = run(EXAMPLE_5_1_1).readings
    assert reading == PendingReading(DEVICE, "temperature", NOW, 23.1, "Cel")
