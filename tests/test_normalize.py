"""The normalizer: device payloads in, readings, attributes and rejections out.

Each table row is one payload a device could send and what the hub makes of
it. Payloads are written as Python values and encoded with orjson, or as the
raw bytes when the bytes themselves are the point.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.config import NormalizeSettings
from hub.models import Attribute, Normalized, PendingReading, RejectReason, Source
from hub.normalize import EXCERPT_BYTES, Rules, normalize, normalize_document

pytestmark = pytest.mark.unit

FIXED_NOW = 1_764_138_000_123  # 2025-11-26T06:20:00.123Z, the hub's receive time
NOW_S = 1_764_138_000  # the same second, as epoch seconds
DEVICE = "greenhouse-3"


def run(payload: Any, rules: Rules | None = None, *, device_id: str = DEVICE) -> Normalized:
    """Normalize `payload` (bytes as they are, anything else as its JSON) from MQTT."""
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return normalize(
        raw,
        device_id=device_id,
        source=Source.MQTT,
        received_ms=FIXED_NOW,
        rules=rules or Rules(),
    )


def run_document(document: Any, rules: Rules | None = None) -> Normalized:
    """Normalize a document a transport already parsed (as Socket.IO does)."""
    return normalize_document(
        document,
        raw=_encoded(document),
        device_id=DEVICE,
        source=Source.SOCKETIO,
        received_ms=FIXED_NOW,
        rules=rules or Rules(),
    )


def _encoded(document: Any) -> bytes:
    try:
        return json.dumps(document).encode()
    except (TypeError, ValueError):  # an int too long for str(), or a key JSON cannot hold
        return b""


def reading(
    metric: str,
    value: float,
    unit: str | None = None,
    *,
    ts: int = FIXED_NOW,
    seq: int | None = None,
) -> PendingReading:
    return PendingReading(DEVICE, metric, ts, value, unit, seq)


def only_rejection(result: Normalized) -> tuple[str, str]:
    """The reason and detail of the single rejection, when nothing was accepted."""
    assert result.readings == ()
    assert result.attributes == ()
    assert len(result.rejections) == 1, result.rejections
    rejection = result.rejections[0]
    return rejection.reason, rejection.detail


# ---------------------------------------------------------------------------
# payload forms


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(
            {"temperature": 21.5, "humidity": 40},
            [reading("temperature", 21.5, "Cel"), reading("humidity", 40.0, "%RH")],
            id="flat object",
        ),
        pytest.param(
            {
                "ts": 1764138000123,
                "seq": 17,
                "values": {"temperature": 21.5, "pressure": {"value": 1013.2, "unit": "hPa"}},
            },
            [
                reading("temperature", 21.5, "Cel", seq=17),
                reading("pressure", 101320.0, "Pa", seq=17),
            ],
            id="envelope of the contract",
        ),
        pytest.param(
            {"ts": NOW_S, "values": {"temperature": 21.5}},
            [reading("temperature", 21.5, "Cel", ts=NOW_S * 1000)],
            id="envelope, ts in epoch seconds",
        ),
        pytest.param(
            {"ts": NOW_S + 0.5, "values": {"temperature": 21.5}},
            [reading("temperature", 21.5, "Cel", ts=NOW_S * 1000 + 500)],
            id="envelope, ts in fractional epoch seconds",
        ),
        pytest.param(
            {"ts": FIXED_NOW - 5000, "values": {"temperature": 21.5}},
            [reading("temperature", 21.5, "Cel", ts=FIXED_NOW - 5000)],
            id="envelope, ts in epoch ms",
        ),
        pytest.param(
            {"ts": "2025-11-26T06:20:00.123Z", "values": {"temperature": 21.5}},
            [reading("temperature", 21.5, "Cel")],
            id="envelope, ISO 8601 UTC",
        ),
        pytest.param(
            {"ts": "2025-11-26T07:20:00.123+01:00", "values": {"temperature": 21.5}},
            [reading("temperature", 21.5, "Cel")],
            id="envelope, ISO 8601 with an offset",
        ),
        pytest.param(
            {"ts": "2025-11-26T06:20:00.123", "values": {"temperature": 21.5}},
            [reading("temperature", 21.5, "Cel")],
            id="envelope, naive ISO 8601 taken as UTC",
        ),
        pytest.param(
            {"ts": str(NOW_S), "values": {"temperature": 21.5}},
            [reading("temperature", 21.5, "Cel", ts=NOW_S * 1000)],
            id="envelope, epoch seconds as a string",
        ),
        pytest.param(
            {"seq": 0, "values": {"temperature": 21.5}},
            [reading("temperature", 21.5, "Cel", seq=0)],
            id="envelope without ts: the hub's receive time",
        ),
        pytest.param(
            {"ts": FIXED_NOW - 1000, "seq": 3, "temperature": 21.5},
            [reading("temperature", 21.5, "Cel", ts=FIXED_NOW - 1000, seq=3)],
            id="flat object with ts and seq",
        ),
        pytest.param(
            {
                "ts": FIXED_NOW - 9000,
                "values": {
                    "temperature": {"value": 21.5, "ts": FIXED_NOW - 1000},
                    "humidity": {"value": 40, "unit": "%RH", "ts": "2025-11-26T06:19:00Z"},
                    "pressure": 101325,
                },
            },
            [
                reading("temperature", 21.5, "Cel", ts=FIXED_NOW - 1000),
                reading("humidity", 40.0, "%RH", ts=NOW_S * 1000 - 60_000),
                reading("pressure", 101325.0, "Pa", ts=FIXED_NOW - 9000),
            ],
            id="per-value object with its own ts",
        ),
        pytest.param(
            [
                {"ts": FIXED_NOW - 2000, "seq": 1, "values": {"temperature": 20.0}},
                {"ts": FIXED_NOW - 1000, "seq": 2, "values": {"temperature": 20.5}},
            ],
            [
                reading("temperature", 20.0, "Cel", ts=FIXED_NOW - 2000, seq=1),
                reading("temperature", 20.5, "Cel", ts=FIXED_NOW - 1000, seq=2),
            ],
            id="batch of envelopes",
        ),
        pytest.param(
            [{"ts": NOW_S - 60, "temperature": 20.0}, {"ts": NOW_S, "temperature": 20.5}],
            [
                reading("temperature", 20.0, "Cel", ts=(NOW_S - 60) * 1000),
                reading("temperature", 20.5, "Cel", ts=NOW_S * 1000),
            ],
            id="batch of flat objects with ts",
        ),
        pytest.param(
            [
                {"bn": "urn:dev:mac:0024befffe804ff1:", "bt": NOW_S, "bu": "Cel"},
                {"n": "temperature", "v": 21.5},
                {"n": "pressure", "u": "hPa", "v": 1013.2, "t": -1},
            ],
            [
                reading("temperature", 21.5, "Cel", ts=NOW_S * 1000),
                reading("pressure", 101320.0, "Pa", ts=(NOW_S - 1) * 1000),
            ],
            id="SenML with bn, bt, bu, n, u, v, t",
        ),
        pytest.param(
            [{"bv": 20.0, "n": "temperature", "v": 1.5}, {"n": "temperature", "v": -0.5}],
            [reading("temperature", 21.5, "Cel"), reading("temperature", 19.5, "Cel")],
            id="SenML base value is added to v",
        ),
        pytest.param(
            [{"bu": "degF", "n": "temperature", "v": 212}, {"n": "temperature", "u": "K", "v": 0}],
            [reading("temperature", 100.0, "Cel"), reading("temperature", -273.15, "Cel")],
            id="SenML u overrides bu",
        ),
        pytest.param(
            [{"n": "door_open", "vb": True}, {"n": "alarm", "vb": False}],
            [reading("door_open", 1.0), reading("alarm", 0.0)],
            id="SenML vb",
        ),
        pytest.param(
            [{"n": "temperature", "v": 21.5, "t": -10}],
            [reading("temperature", 21.5, "Cel", ts=FIXED_NOW - 10_000)],
            id="SenML relative t: before the receive time",
        ),
        pytest.param(
            [{"bt": -60, "n": "a", "v": 1}, {"n": "a", "t": 30, "v": 2}],
            [reading("a", 1.0, ts=FIXED_NOW - 60_000), reading("a", 2.0, ts=FIXED_NOW - 30_000)],
            id="SenML relative bt plus t",
        ),
        pytest.param(
            [{"n": "a", "v": 1, "t": NOW_S - 5}],
            [reading("a", 1.0, ts=(NOW_S - 5) * 1000)],
            id="SenML absolute t (at least 2**28)",
        ),
        pytest.param(
            [{"bn": "greenhouse-3/temperature", "v": 21.5}],
            [reading("temperature", 21.5, "Cel")],
            id="SenML base name as the metric when n is missing",
        ),
        pytest.param(
            [{"bn": "urn:dev:ow:10e2073a01080063:humidity:", "v": 40}],
            [reading("humidity", 40.0, "%RH")],
            id="SenML base name's last segment as the metric",
        ),
        pytest.param(
            [{"bver": 10, "n": "a", "v": 1, "ut": 60}],
            [reading("a", 1.0)],
            id="SenML bver and ut are allowed",
        ),
    ],
)
def test_payload_forms(payload: Any, expected: list[PendingReading]) -> None:
    result = run(payload)
    assert result.rejections == ()
    assert list(result.readings) == expected


def test_senml_string_values_are_attributes() -> None:
    result = run([{"bt": NOW_S, "n": "firmware", "vs": "1.2.3"}, {"n": "temperature", "v": 21.5}])
    assert result.attributes == (Attribute(DEVICE, "firmware", "1.2.3", NOW_S * 1000),)
    assert result.readings == (reading("temperature", 21.5, "Cel", ts=NOW_S * 1000),)
    assert result.rejections == ()


def test_document_and_bytes_give_the_same_result() -> None:
    payload = {"ts": FIXED_NOW - 1000, "seq": 5, "values": {"temperature": 21.5, "fw": "1.0"}}
    from_bytes = run(payload)
    from_document = run_document(payload)
    assert from_document.readings == from_bytes.readings
    assert from_document.attributes == from_bytes.attributes
    assert from_document.rejections == from_bytes.rejections == ()


# ---------------------------------------------------------------------------
# metric names


@pytest.mark.parametrize(
    ("name", "metric"),
    [
        ("temperature", "temperature"),
        ("batteryLevel", "battery_level"),
        ("Air Temp", "air_temp"),
        ("CO2-ppm", "co2_ppm"),
        ("wind.speed", "wind_speed"),
        ("HUMIDITY", "humidity"),
        ("HTTPStatus", "http_status"),
        ("PM2.5", "pm2_5"),
        ("  padded  ", "padded"),
        ("a__b--c", "a_b_c"),
        ("x" * 64, "x" * 64),
    ],
)
def test_metric_names_become_snake_case(name: str, metric: str) -> None:
    assert run({name: 1}, Rules(units={})).readings == (reading(metric, 1.0),)


@pytest.mark.parametrize(
    ("name", "metric", "unit"),
    [
        ("temp", "temperature", "Cel"),
        ("Temp", "temperature", "Cel"),
        ("hum", "humidity", "%RH"),
        ("pressure", "pressure", "Pa"),
    ],
)
def test_metric_aliases(name: str, metric: str, unit: str) -> None:
    rules = Rules(aliases={"temp": "temperature", "hum": "humidity"})
    assert run({name: 1}, rules).readings == (reading(metric, 1.0, unit),)


def test_aliases_from_settings_are_snake_cased() -> None:
    rules = Rules.from_settings(NormalizeSettings(aliases={"airTemp": "Air Temperature"}))
    assert run({"air_temp": 1}, rules).readings == (reading("air_temperature", 1.0),)


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        pytest.param({"": 1}, "is not a string", id="empty"),
        pytest.param({"x" * 65: 1}, "must have 1-64", id="65 characters"),
        pytest.param({"---": 1}, "must have 1-64", id="punctuation only"),
        pytest.param({"温度": 1}, "must have 1-64", id="no ASCII letter or digit"),
        pytest.param({5: 1}, "5", id="not a string"),
        pytest.param({None: 1}, "None", id="null"),
    ],
)
def test_invalid_metric(document: dict[Any, Any], fragment: str) -> None:
    reason, detail = only_rejection(run_document(document))
    assert reason == RejectReason.INVALID_METRIC
    assert fragment in detail


# ---------------------------------------------------------------------------
# units


@pytest.mark.parametrize(
    ("metric", "value", "unit", "expected_value", "expected_unit"),
    [
        # temperature -> Cel
        ("temperature", 21.5, "Cel", 21.5, "Cel"),
        ("temperature", 21.5, "°C", 21.5, "Cel"),
        ("temperature", 21.5, "C", 21.5, "Cel"),
        ("temperature", 21.5, "degC", 21.5, "Cel"),
        ("temperature", 212, "degF", 100.0, "Cel"),
        ("temperature", 32, "°F", 0.0, "Cel"),
        ("temperature", -40, "F", -40.0, "Cel"),
        ("temperature", 98.6, "degF", 37.0, "Cel"),
        ("temperature", 0, "K", -273.15, "Cel"),
        ("temperature", 300, "kelvin", 26.85, "Cel"),
        # pressure -> Pa
        ("pressure", 101325, "Pa", 101325.0, "Pa"),
        ("pressure", 1013.2, "hPa", 101320.0, "Pa"),
        ("pressure", 101.325, "kPa", 101325.0, "Pa"),
        ("pressure", 1013.25, "mbar", 101325.0, "Pa"),
        ("pressure", 1.01325, "bar", 101325.0, "Pa"),
        ("pressure", 1, "psi", 6894.75729317, "Pa"),
        ("pressure", 1, "atm", 101325.0, "Pa"),
        ("pressure", 1, "mmHg", 133.322387415, "Pa"),
        ("pressure", 1, "inHg", 3386.389, "Pa"),
        # relative humidity -> %RH
        ("humidity", 40, "%RH", 40.0, "%RH"),
        ("humidity", 40, "RH", 40.0, "%RH"),
        ("humidity", 40, "%", 40.0, "%RH"),
        # no configured unit: the dimension's default
        ("voltage", 3300, "mV", 3.3, "V"),
        ("power", 1.5, "kW", 1500.0, "W"),
        ("battery", 87, "%", 87.0, "%"),
        ("interval", 1500, "ms", 1.5, "s"),
        # an unknown unit on a metric with no configured unit is kept as sent
        ("distance", 3, "furlong", 3.0, "furlong"),
    ],
)
def test_unit_conversion(
    metric: str, value: float, unit: str, expected_value: float, expected_unit: str
) -> None:
    result = run({metric: {"value": value, "unit": unit}})
    assert result.readings == (reading(metric, expected_value, expected_unit),)
    assert result.rejections == ()


@pytest.mark.parametrize(
    ("metric", "value", "expected_unit"),
    [
        ("temperature", 21.5, "Cel"),
        ("pressure", 101325, "Pa"),
        ("humidity", 40, "%RH"),
        ("voltage", 3.3, None),
        ("rssi", -70, None),
    ],
)
def test_a_value_without_unit_is_in_the_canonical_unit(
    metric: str, value: float, expected_unit: str | None
) -> None:
    expected = (reading(metric, float(value), expected_unit),)
    assert run({metric: value}).readings == expected
    assert run({metric: {"value": value}}).readings == expected
    assert run({metric: {"value": value, "unit": ""}}).readings == expected


@pytest.mark.parametrize(
    ("units", "payload", "expected"),
    [
        pytest.param(
            {"temperature": "K"},
            {"temperature": {"value": 25, "unit": "Cel"}},
            reading("temperature", 298.15, "K"),
            id="Cel to configured K",
        ),
        pytest.param(
            {"temperature": "K"},
            {"temperature": 298.15},
            reading("temperature", 298.15, "K"),
            id="no unit: configured K",
        ),
        pytest.param(
            {"temperature": "degC"},
            {"temperature": 21.5},
            reading("temperature", 21.5, "Cel"),
            id="configured spelling is labelled by its SenML symbol",
        ),
        pytest.param(
            {"pressure": "hPa"},
            {"pressure": {"value": 101320, "unit": "Pa"}},
            reading("pressure", 1013.2, "hPa"),
            id="Pa to configured hPa",
        ),
        pytest.param(
            {"pressure": "hPa"},
            {"pressure": {"value": 1013.2, "unit": "hPa"}},
            reading("pressure", 1013.2, "hPa"),
            id="hPa stays hPa",
        ),
        pytest.param(
            {"outdoor_temp": "degF"},
            {"outdoorTemp": {"value": 100, "unit": "Cel"}},
            reading("outdoor_temp", 212.0, "degF"),
            id="any metric can be given a unit",
        ),
        pytest.param(
            {},
            {"temperature": 21.5},
            reading("temperature", 21.5),
            id="no configured units: no unit",
        ),
    ],
)
def test_configured_canonical_units(
    units: dict[str, str], payload: Any, expected: PendingReading
) -> None:
    result = run(payload, Rules(units=units))
    assert result.readings == (expected,)
    assert result.rejections == ()


# ---------------------------------------------------------------------------
# booleans and strings


def test_booleans_are_readings_of_one_and_zero() -> None:
    result = run({"door_open": True, "alarm": False})
    assert result.readings == (reading("door_open", 1.0), reading("alarm", 0.0))


def test_strings_are_attributes_not_readings() -> None:
    result = run({"ts": FIXED_NOW - 1000, "firmware": "1.2.3", "status": ""})
    assert result.readings == ()
    assert result.attributes == (
        Attribute(DEVICE, "firmware", "1.2.3", FIXED_NOW - 1000),
        Attribute(DEVICE, "status", "", FIXED_NOW - 1000),
    )
    assert result.rejections == ()


def test_numbers_booleans_and_strings_in_one_payload() -> None:
    result = run(
        {"values": {"temperature": 21.5, "heater": True, "mode": "eco", "batteryLevel": 87}}
    )
    assert result.readings == (
        reading("temperature", 21.5, "Cel"),
        reading("heater", 1.0),
        reading("battery_level", 87.0),
    )
    assert result.attributes == (Attribute(DEVICE, "mode", "eco", FIXED_NOW),)
    assert result.rejections == ()


# ---------------------------------------------------------------------------
# rejections: nothing accepted, one reason


REJECTIONS = [
    # payload_too_large
    pytest.param(
        {"temperature": 21.5},
        Rules(max_payload_bytes=16),
        RejectReason.PAYLOAD_TOO_LARGE,
        "20 bytes exceeds the limit of 16",
        id="payload_too_large",
    ),
    # invalid_encoding
    pytest.param(
        b'{"firmware": "\xff"}',
        None,
        RejectReason.INVALID_ENCODING,
        "not UTF-8",
        id="bad UTF-8",
    ),
    pytest.param(
        '{"firmware": "é"}'.encode("latin-1"),
        None,
        RejectReason.INVALID_ENCODING,
        "not UTF-8",
        id="latin-1",
    ),
    # invalid_json
    pytest.param(b"", None, RejectReason.INVALID_JSON, "", id="no bytes"),
    pytest.param(b'{"temperature": ', None, RejectReason.INVALID_JSON, "", id="truncated"),
    pytest.param(b"{'a': 1}", None, RejectReason.INVALID_JSON, "", id="single quotes"),
    pytest.param(b'{"a": NaN}', None, RejectReason.INVALID_JSON, "", id="NaN in bytes"),
    pytest.param(b"NaN", None, RejectReason.INVALID_JSON, "", id="bare NaN"),
    pytest.param(b'{"a": Infinity}', None, RejectReason.INVALID_JSON, "", id="Infinity"),
    pytest.param(b'{"a": 1e400}', None, RejectReason.INVALID_JSON, "infinity", id="1e400"),
    # too_deep
    pytest.param(
        {"values": {"t": {"value": 1}}},
        Rules(max_depth=2),
        RejectReason.TOO_DEEP,
        "deeper than 2 levels",
        id="too_deep, limit 2",
    ),
    pytest.param(
        {"a": [[[[[[[[1]]]]]]]]},
        None,
        RejectReason.TOO_DEEP,
        "deeper than 8 levels",
        id="too_deep, default limit",
    ),
    # too_many_values
    pytest.param(
        {"a": 1, "b": 2, "c": 3},
        Rules(max_values=2),
        RejectReason.TOO_MANY_VALUES,
        "3 values exceed the limit of 2",
        id="too_many_values, flat",
    ),
    pytest.param(
        [{"values": {"a": 1, "b": 2}}, {"values": {"c": 3}}],
        Rules(max_values=2),
        RejectReason.TOO_MANY_VALUES,
        "3 values",
        id="too_many_values, batch",
    ),
    pytest.param(
        [{"n": "a", "v": 1}, {"n": "b", "v": 2}, {"n": "c", "v": 3}],
        Rules(max_values=2),
        RejectReason.TOO_MANY_VALUES,
        "3 values",
        id="too_many_values, SenML",
    ),
    # unsupported_form
    pytest.param(b"21.5", None, RejectReason.UNSUPPORTED_FORM, "float", id="number"),
    pytest.param(b"17", None, RejectReason.UNSUPPORTED_FORM, "int", id="integer"),
    pytest.param(b'"online"', None, RejectReason.UNSUPPORTED_FORM, "str", id="string"),
    pytest.param(b"null", None, RejectReason.UNSUPPORTED_FORM, "NoneType", id="null"),
    pytest.param(b"true", None, RejectReason.UNSUPPORTED_FORM, "bool", id="true"),
    pytest.param(
        {"ts": FIXED_NOW, "values": {"a": 1}, "device": "x"},
        None,
        RejectReason.UNSUPPORTED_FORM,
        "unexpected envelope keys ['device']",
        id="envelope with an extra key",
    ),
    pytest.param(
        [5],
        None,
        RejectReason.UNSUPPORTED_FORM,
        "batch item 0: not an object",
        id="batch of non-objects",
    ),
    # empty
    pytest.param({}, None, RejectReason.EMPTY, "no values", id="{}"),
    pytest.param([], None, RejectReason.EMPTY, "empty array", id="[]"),
    pytest.param({"values": {}}, None, RejectReason.EMPTY, "no values", id="empty values"),
    pytest.param({"ts": FIXED_NOW, "seq": 1}, None, RejectReason.EMPTY, "", id="ts and seq"),
    pytest.param([{"bn": "dev:"}], None, RejectReason.EMPTY, "", id="SenML without values"),
    # invalid_timestamp
    *(
        pytest.param(
            {"ts": ts, "a": 1}, None, RejectReason.INVALID_TIMESTAMP, "ts ", id=f"ts={ts!r}"
        )
        for ts in ["yesterday", "2025-13-01T00:00:00Z", "", True, None, [], {"s": 1}]
    ),
    pytest.param(
        {"a": {"value": 1, "ts": "later"}},
        None,
        RejectReason.INVALID_TIMESTAMP,
        "later",
        id="per-value ts",
    ),
    # timestamp_in_future / timestamp_too_old
    pytest.param(
        {"ts": FIXED_NOW + 300_001, "a": 1},
        None,
        RejectReason.TIMESTAMP_IN_FUTURE,
        "300 s ahead",
        id="in future, default 5 min",
    ),
    pytest.param(
        {"ts": FIXED_NOW + 1001, "a": 1},
        Rules(max_future_ms=1000),
        RejectReason.TIMESTAMP_IN_FUTURE,
        "ahead of the hub's clock",
        id="in future, max_future_ms",
    ),
    pytest.param(
        {"ts": 1, "a": 1},
        None,
        RejectReason.TIMESTAMP_TOO_OLD,
        "days old",
        id="1970, default 30 days",
    ),
    pytest.param(
        {"ts": FIXED_NOW - 1001, "a": 1},
        Rules(max_past_ms=1000),
        RejectReason.TIMESTAMP_TOO_OLD,
        "days old",
        id="too old, max_past_ms",
    ),
    pytest.param(
        [{"n": "a", "v": 1, "t": 600}],
        None,
        RejectReason.TIMESTAMP_IN_FUTURE,
        "",
        id="SenML relative t in future",
    ),
    # invalid_seq
    *(
        pytest.param(
            {"seq": seq, "a": 1}, None, RejectReason.INVALID_SEQ, "seq ", id=f"seq={seq!r}"
        )
        for seq in [-1, 1.5, 1.0, True, "17", None, 2**63]
    ),
    # invalid_metric
    pytest.param({"x" * 65: 1}, None, RejectReason.INVALID_METRIC, "x", id="long metric"),
    # invalid_value
    pytest.param({"a": None}, None, RejectReason.INVALID_VALUE, "null", id="null value"),
    pytest.param({"a": []}, None, RejectReason.INVALID_VALUE, "empty list", id="empty list"),
    pytest.param({"a": {}}, None, RejectReason.EMPTY, "no values", id="empty group"),
    pytest.param(
        {"a": {"value": {"value": 1}}},
        None,
        RejectReason.INVALID_VALUE,
        "dict",
        id="nested value object",
    ),
    pytest.param(
        {"motd": "x" * 1025},
        None,
        RejectReason.INVALID_VALUE,
        "longer than 1024",
        id="attribute too long",
    ),
    # unknown_unit
    pytest.param(
        {"temperature": {"value": 1, "unit": "furlong"}},
        None,
        RejectReason.UNKNOWN_UNIT,
        "unknown unit 'furlong' (expected Cel)",
        id="unknown unit on a configured metric",
    ),
    pytest.param(
        {"a": {"value": 1, "unit": 5}},
        None,
        RejectReason.UNKNOWN_UNIT,
        "unit must be a string",
        id="unit not a string",
    ),
    pytest.param(
        {"a": {"value": 1, "unit": "u" * 17}},
        None,
        RejectReason.UNKNOWN_UNIT,
        "uuu",
        id="unit too long",
    ),
    pytest.param(
        {"a": {"value": 1, "unit": "m\x00s"}},
        None,
        RejectReason.UNKNOWN_UNIT,
        "",
        id="unit not printable",
    ),
    # incompatible_unit
    pytest.param(
        {"temperature": {"value": 1, "unit": "Pa"}},
        None,
        RejectReason.INCOMPATIBLE_UNIT,
        "'Pa' is a pressure unit, not temperature (Cel)",
        id="temperature in Pa",
    ),
    pytest.param(
        {"pressure": {"value": 1, "unit": "degF"}},
        None,
        RejectReason.INCOMPATIBLE_UNIT,
        "not pressure (Pa)",
        id="pressure in degF",
    ),
    pytest.param(
        {"humidity": {"value": 1, "unit": "Cel"}},
        None,
        RejectReason.INCOMPATIBLE_UNIT,
        "not humidity (%RH)",
        id="humidity in Cel",
    ),
    pytest.param(
        {"co2": {"value": 400, "unit": "ppm"}},
        Rules(units={"co2": "ppmv"}),
        RejectReason.INCOMPATIBLE_UNIT,
        "cannot convert 'ppm' to 'ppmv'",
        id="configured unit the table does not know",
    ),
    # non_finite after a conversion
    pytest.param(
        {"voltage": {"value": 1e308, "unit": "kV"}},
        None,
        RejectReason.NON_FINITE,
        "overflows in V",
        id="conversion overflows",
    ),
    # invalid_senml
    pytest.param(
        [{"n": "a", "v": "21.5"}],
        None,
        RejectReason.INVALID_SENML,
        "record 0: v must be a number",
        id="SenML v string",
    ),
    pytest.param(
        [{"n": "a", "v": True}],
        None,
        RejectReason.INVALID_SENML,
        "v must be a number",
        id="SenML v boolean",
    ),
    pytest.param(
        [{"n": "a", "vb": 1}],
        None,
        RejectReason.INVALID_SENML,
        "vb must be a boolean",
        id="SenML vb number",
    ),
    pytest.param(
        [{"n": "a", "vs": 1}],
        None,
        RejectReason.INVALID_SENML,
        "vs must be a string",
        id="SenML vs number",
    ),
    pytest.param(
        [{"n": 5, "v": 1}], None, RejectReason.INVALID_SENML, "n must be", id="SenML n number"
    ),
    pytest.param(
        [{"bn": ["x"], "n": "a", "v": 1}],
        None,
        RejectReason.INVALID_SENML,
        "bn must be a string",
        id="SenML bn list",
    ),
    pytest.param(
        [{"bt": "now", "n": "a", "v": 1}],
        None,
        RejectReason.INVALID_SENML,
        "bt must be a number",
        id="SenML bt string",
    ),
    pytest.param(
        [{"bu": 1, "n": "a", "v": 1}],
        None,
        RejectReason.INVALID_SENML,
        "bu must be a string",
        id="SenML bu number",
    ),
]


@pytest.mark.parametrize(("payload", "rules", "reason", "fragment"), REJECTIONS)
def test_rejections(payload: Any, rules: Rules | None, reason: RejectReason, fragment: str) -> None:
    got_reason, detail = only_rejection(run(payload, rules))
    assert got_reason == reason
    assert fragment in detail


def test_the_table_covers_every_reason_the_normalizer_gives() -> None:
    tested = {param.values[2] for param in REJECTIONS}
    tested |= {RejectReason.INVALID_DEVICE_ID}  # test_invalid_device_id
    by_adapters = {
        RejectReason.UNKNOWN_DEVICE,
        RejectReason.INVALID_STATUS,
        RejectReason.RATE_LIMITED,
        RejectReason.DEVICE_ID_CONFLICT,
    }
    assert tested == set(RejectReason) - by_adapters


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        pytest.param({"temperature": math.nan}, "nan", id="NaN"),
        pytest.param({"temperature": math.inf}, "inf", id="inf"),
        pytest.param({"temperature": {"value": -math.inf, "unit": "Cel"}}, "-inf", id="-inf"),
        pytest.param({"count": 10**400}, "1000", id="integer beyond float"),
        pytest.param([{"n": "a", "v": math.nan}], "nan", id="SenML v NaN"),
        pytest.param([{"n": "a", "v": 10**400}], "v is too large", id="SenML v beyond float"),
        pytest.param([{"n": "a", "v": 1e308, "bv": 1e308}], "inf", id="SenML v plus bv overflows"),
    ],
)
def test_non_finite_values_from_a_parsed_document(document: Any, fragment: str) -> None:
    reason, detail = only_rejection(run_document(document))
    assert reason == RejectReason.NON_FINITE
    assert fragment in detail


@pytest.mark.parametrize(
    "document",
    [
        pytest.param({"ts": math.inf, "a": 1}, id="inf"),
        pytest.param({"ts": math.nan, "a": 1}, id="NaN"),
        pytest.param({"ts": 10**400, "a": 1}, id="integer beyond float"),
        pytest.param({"ts": 10**5000, "a": 1}, id="integer beyond str()"),
        pytest.param({"ts": "9" * 400, "a": 1}, id="digits beyond float"),
    ],
)
def test_non_finite_timestamps_from_a_parsed_document(document: Any) -> None:
    reason, _ = only_rejection(run_document(document))
    assert reason == RejectReason.INVALID_TIMESTAMP


@pytest.mark.parametrize(
    "device_id", ["", "green house", "dev/1", "dev+", "dev#", "x" * 65, "température"]
)
def test_invalid_device_id(device_id: str) -> None:
    result = run({"temperature": 21.5}, device_id=device_id)
    reason, detail = only_rejection(result)
    assert reason == RejectReason.INVALID_DEVICE_ID
    assert "1-64 of A-Z a-z 0-9 _ . -" in detail
    assert result.rejections[0].device_id == device_id[:64]


def test_invalid_device_id_through_normalize_document() -> None:
    result = normalize_document(
        {"a": 1}, raw=b'{"a": 1}', device_id="a b", source=Source.HTTP, received_ms=0, rules=Rules()
    )
    assert only_rejection(result)[0] == RejectReason.INVALID_DEVICE_ID


def test_normalize_document_checks_the_size_of_raw() -> None:
    result = normalize_document(
        {"a": 1},
        raw=b'{"a": 1}',
        device_id=DEVICE,
        source=Source.SOCKETIO,
        received_ms=FIXED_NOW,
        rules=Rules(max_payload_bytes=7),
    )
    assert only_rejection(result) == (
        RejectReason.PAYLOAD_TOO_LARGE,
        "8 bytes exceeds the limit of 7",
    )


# ---------------------------------------------------------------------------
# limits at their boundary are accepted


@pytest.mark.parametrize(
    ("payload", "rules"),
    [
        pytest.param({"a": 1}, Rules(max_payload_bytes=7), id="max_payload_bytes"),
        pytest.param({"values": {"t": 1}}, Rules(max_depth=2), id="max_depth"),
        pytest.param(
            {"ts": FIXED_NOW, "seq": 1, "a": 1, "b": 2},
            Rules(max_values=2),
            id="ts, seq not counted",
        ),
        pytest.param(
            [{"bn": "dev:", "n": "a", "u": "V", "v": 1, "t": -1}, {"n": "b", "v": 2}],
            Rules(max_values=2),
            id="a SenML record is one value",
        ),
        pytest.param({"ts": FIXED_NOW + 1000, "a": 1}, Rules(max_future_ms=1000), id="future"),
        pytest.param({"ts": FIXED_NOW - 1000, "a": 1}, Rules(max_past_ms=1000), id="past"),
        pytest.param({"seq": 2**63 - 1, "a": 1}, None, id="largest seq"),
        pytest.param({"motd": "x" * 1024}, None, id="longest attribute"),
    ],
)
def test_limits_are_inclusive(payload: Any, rules: Rules | None) -> None:
    result = run(payload, rules)
    assert result.rejections == ()
    assert result.readings or result.attributes


# ---------------------------------------------------------------------------
# partial rejection


def test_a_bad_value_rejects_only_itself() -> None:
    result = run(
        {
            "ts": FIXED_NOW - 1000,
            "seq": 9,
            "values": {
                "temperature": 21.5,
                "humidity": None,
                "pressure": {"value": 1, "unit": "Cel"},
                "x" * 65: 1,
                "battery": 87,
            },
        }
    )
    assert result.readings == (
        reading("temperature", 21.5, "Cel", ts=FIXED_NOW - 1000, seq=9),
        reading("battery", 87.0, ts=FIXED_NOW - 1000, seq=9),
    )
    assert [r.reason for r in result.rejections] == [
        RejectReason.INVALID_VALUE,
        RejectReason.INCOMPATIBLE_UNIT,
        RejectReason.INVALID_METRIC,
    ]
    assert "'humidity'" in result.rejections[0].detail
    assert "'pressure'" in result.rejections[1].detail


def test_a_bad_envelope_rejects_only_itself() -> None:
    result = run(
        [
            {"ts": FIXED_NOW - 2000, "seq": 1, "values": {"temperature": 20.0}},
            {"ts": "garbage", "seq": 2, "values": {"temperature": 20.5}},
            {"seq": -3, "values": {"temperature": 21.0}},
            "not an envelope",
            {"ts": FIXED_NOW, "seq": 4, "values": {"temperature": 21.5}},
        ]
    )
    assert result.readings == (
        reading("temperature", 20.0, "Cel", ts=FIXED_NOW - 2000, seq=1),
        reading("temperature", 21.5, "Cel", seq=4),
    )
    assert [(r.reason, r.detail.split(":")[0]) for r in result.rejections] == [
        (RejectReason.INVALID_TIMESTAMP, "batch item 1"),
        (RejectReason.INVALID_SEQ, "batch item 2"),
        (RejectReason.UNSUPPORTED_FORM, "batch item 3"),
    ]


def test_a_bad_senml_record_rejects_only_itself() -> None:
    result = run(
        [
            {"bn": "greenhouse-3/", "n": "temperature", "v": 21.5},
            {"n": "humidity", "v": "high"},
            {"n": "pressure", "u": "Cel", "v": 1},
            {"n": "battery", "v": 87},
        ]
    )
    assert result.readings == (reading("temperature", 21.5, "Cel"), reading("battery", 87.0))
    assert [r.reason for r in result.rejections] == [
        RejectReason.INVALID_SENML,
        RejectReason.INCOMPATIBLE_UNIT,
    ]
    assert "record 1" in result.rejections[0].detail


# ---------------------------------------------------------------------------
# rejection records


@pytest.mark.parametrize("source", list(Source))
def test_a_rejection_names_source_device_and_time(source: Source) -> None:
    raw = b'{"temperature": null}'
    result = normalize(raw, device_id=DEVICE, source=source, received_ms=FIXED_NOW, rules=Rules())
    (rejection,) = result.rejections
    assert rejection.source == source
    assert rejection.device_id == DEVICE
    assert rejection.received_ms == FIXED_NOW
    assert rejection.excerpt == raw.decode()
    assert rejection.to_wire() == {
        "source": str(source),
        "device_id": DEVICE,
        "reason": "invalid_value",
        "detail": rejection.detail,
        "received_ms": FIXED_NOW,
        "excerpt": '{"temperature": null}',
    }


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"motd": "' + b"x" * 2000 + b'"', id="long invalid JSON"),
        pytest.param(b"[" + b"1," * 40_000 + b"1]", id="larger than max_payload_bytes"),
    ],
)
def test_the_excerpt_is_the_first_256_bytes(raw: bytes) -> None:
    (rejection,) = run(raw).rejections
    assert EXCERPT_BYTES == 256
    assert rejection.excerpt == raw[:256].decode()


def test_the_excerpt_of_bad_utf8_is_readable_and_bounded() -> None:
    raw = b'{"name":"' + "é".encode() * 200 + b'\xff"}'  # byte 256 splits an é
    (rejection,) = run(raw).rejections
    assert rejection.reason == RejectReason.INVALID_ENCODING
    assert rejection.excerpt == '{"name":"' + "é" * 123 + "\ufffd"


# ---------------------------------------------------------------------------
# properties

_KEYS = st.sampled_from(
    ["ts", "seq", "values", "value", "unit", "temperature", "pressure", "humidity", "batteryLevel"]
) | st.sampled_from(["n", "v", "vb", "vs", "bn", "bt", "bu", "bv", "t", "u"])
_UNITS = st.sampled_from(["Cel", "degF", "K", "Pa", "hPa", "psi", "%", "%RH", "mV", "kW", "x"])
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(FIXED_NOW - 40 * 86_400_000, FIXED_NOW + 600_000)
    | st.integers(NOW_S - 40 * 86_400, NOW_S + 600)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([10**400, -(10**400), 1e308, -1e308])  # beyond float, or near its end
    | st.text(max_size=20)
    | _UNITS
)
JSON_LIKE = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(_KEYS | st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
METRIC = re.compile(r"[a-z0-9_]{1,64}")


@settings(max_examples=500, deadline=None, database=None)
@given(document=JSON_LIKE)
def test_any_document_gives_only_well_formed_readings(document: Any) -> None:
    rules = Rules()
    result = run_document(document, rules)
    for r in result.readings:
        assert type(r.value) is float
        assert math.isfinite(r.value)
        assert METRIC.fullmatch(r.metric), r.metric
        assert type(r.ts) is int
        assert FIXED_NOW - rules.max_past_ms <= r.ts <= FIXED_NOW + rules.max_future_ms
        assert r.device_id == DEVICE
    for a in result.attributes:
        assert METRIC.fullmatch(a.name), a.name
    for rejection in result.rejections:
        assert isinstance(rejection.reason, RejectReason)
    assert result.readings or result.attributes or result.rejections


@settings(max_examples=500, deadline=None, database=None)
@given(raw=st.binary(max_size=300) | JSON_LIKE.map(lambda d: json.dumps(d).encode()))
def test_any_bytes_are_normalized_without_raising(raw: bytes) -> None:
    result = run(raw)
    assert result.readings or result.attributes or result.rejections
    for r in result.readings:
        assert math.isfinite(r.value)


_FLAT_VALUES = (
    st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.none()
    | st.text(max_size=5)
    | st.lists(st.integers(-(2**63), 2**63 - 1), max_size=2)
    | st.dictionaries(st.sampled_from(["v", "u"]), st.integers(-(2**63), 2**63 - 1), max_size=2)
)
_FLAT_KEYS = _KEYS | st.sampled_from(["Air Temp", "batteryLevel", "co2", "x" * 70, "", "%%"])
ALIASED = Rules.from_settings(
    NormalizeSettings(aliases={"temp": "temperature", "bat": "battery_level"})
)


@settings(max_examples=500, deadline=None, database=None)
@given(document=st.dictionaries(_FLAT_KEYS | st.text(max_size=8), _FLAT_VALUES, max_size=6))
def test_flat_objects_come_out_of_bytes_as_out_of_a_parsed_document(document: Any) -> None:
    # Bytes take a shortcut for plain flat objects; a parsed document always
    # takes the general path. Both must say exactly the same.
    raw = orjson.dumps(document)
    for rules in (Rules(), ALIASED):
        from_bytes = normalize(
            raw, device_id=DEVICE, source=Source.MQTT, received_ms=FIXED_NOW, rules=rules
        )
        from_document = normalize_document(
            orjson.loads(raw),
            raw=raw,
            device_id=DEVICE,
            source=Source.MQTT,
            received_ms=FIXED_NOW,
            rules=rules,
        )
        assert from_bytes == from_document


def test_plain_flat_objects_take_the_shortcut_and_others_do_not() -> None:
    rules = Rules.from_settings(NormalizeSettings(aliases={"temp": "temperature"}))
    result = run({"temp": 21, "relativeHumidity": 40.5, "batteryLevel": 87}, rules)
    assert result.readings == (
        PendingReading(DEVICE, "temperature", FIXED_NOW, 21.0, "Cel"),
        PendingReading(DEVICE, "relative_humidity", FIXED_NOW, 40.5, None),
        PendingReading(DEVICE, "battery_level", FIXED_NOW, 87.0, None),
    )
    assert rules.plain_names == {
        "temp": ("temperature", "Cel"),
        "relativeHumidity": ("relative_humidity", None),
        "batteryLevel": ("battery_level", None),
    }
    # A timestamp, a string or a bad name: the general path, which remembers nothing.
    for payload in ({"ts": NOW_S, "x": 1}, {"y": "on"}, {"": 1}, {"values": 3}):
        run(payload, rules)
    assert set(rules.plain_names) == {"temp", "relativeHumidity", "batteryLevel"}
