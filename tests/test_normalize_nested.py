"""Nested payload objects: groups of values whose names are joined with `_`
(contract, "Nested payload objects"), on every path that takes a payload."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.models import Attribute, Normalized, PendingReading, RejectReason, Source
from hub.normalize import Rules, normalize, normalize_document

pytestmark = pytest.mark.unit

NOW = 1_764_138_000_123
DEVICE = "tasmota-kitchen"


def run(
    payload: Any, rules: Rules | None = None, units: dict[str, str] | None = None
) -> Normalized:
    return normalize(
        orjson.dumps(payload),
        device_id=DEVICE,
        source=Source.MQTT,
        received_ms=NOW,
        rules=rules or Rules(),
        units=units or {},
    )


def reading(metric: str, value: float, unit: str | None = None, ts: int = NOW) -> PendingReading:
    return PendingReading(DEVICE, metric, ts, value, unit)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(
            {"env": {"temperature": 20}},
            [reading("env_temperature", 20.0, "Cel")],
            id="the contract's example; the unit of its last name",
        ),
        pytest.param(
            {"AM2301": {"Temperature": 22, "Humidity": 59.0}},
            [reading("am2301_temperature", 22.0, "Cel"), reading("am2301_humidity", 59.0, "%RH")],
            id="names normalized, then joined",
        ),
        pytest.param(
            {"a": {"b": {"c": {"d": 1}}}},
            [reading("a_b_c_d", 1.0)],
            id="any depth",
        ),
        pytest.param(
            {"pressure": {"value": 1013.2, "unit": "hPa"}},
            [reading("pressure", 101320.0, "Pa")],
            id="a value object keeps its meaning",
        ),
        pytest.param(
            {"BME280": {"Pressure": {"value": 1013.2, "unit": "hPa"}}},
            [reading("bme280_pressure", 101320.0, "Pa")],
            id="a value object inside a group",
        ),
        pytest.param(
            {"ts": NOW - 5000, "values": {"Wifi": {"RSSI": 100, "Signal": -48}}},
            [
                reading("wifi_rssi", 100.0, ts=NOW - 5000),
                reading("wifi_signal", -48.0, ts=NOW - 5000),
            ],
            id="inside an envelope, with its time",
        ),
        pytest.param(
            {"ENERGY": {"Power": [12, 0]}},
            [reading("energy_power_1", 12.0), reading("energy_power_2", 0.0)],
            id="an array is a group of channels 1, 2, ...",
        ),
        pytest.param(
            {"a": {"value": 1, "scale": 10}},
            [reading("a_value", 1.0), reading("a_scale", 10.0)],
            id="an object with other keys than a value object's is a group",
        ),
    ],
)
def test_groups_become_joined_metrics(payload: Any, expected: list[PendingReading]) -> None:
    result = run(payload)
    assert result.rejections == ()
    assert list(result.readings) == expected


def test_strings_in_groups_are_attributes_and_bad_members_are_rejected_alone() -> None:
    result = run({"Wifi": {"SSId": "home", "RSSI": 100, "Bad": None}, "temperature": 21})
    assert result.attributes == (Attribute(DEVICE, "wifi_ss_id", "home", NOW),)
    assert result.readings == (reading("wifi_rssi", 100.0), reading("temperature", 21.0, "Cel"))
    ((reason, detail),) = [(r.reason, r.detail) for r in result.rejections]
    assert reason == RejectReason.INVALID_VALUE
    assert "'wifi_bad'" in detail


def test_aliases_apply_to_the_joined_name() -> None:
    rules = Rules(aliases={"am2301_temperature": "temperature"})
    assert run({"AM2301": {"Temperature": 22}}, rules).readings == (
        reading("temperature", 22.0, "Cel"),
    )


def test_a_joined_name_longer_than_64_is_rejected() -> None:
    result = run({"g" * 40: {"m" * 40: 1}, "ok": 2})
    assert result.readings == (reading("ok", 2.0),)
    assert [r.reason for r in result.rejections] == [RejectReason.INVALID_METRIC]


def test_depth_beyond_max_depth_is_rejected() -> None:
    deep: Any = 1
    for _ in range(9):
        deep = {"x": deep}
    ((rejection),) = run(deep).rejections
    assert rejection.reason == RejectReason.TOO_DEEP


def test_leaves_count_against_max_values() -> None:
    payload = {"g": {f"m{i}": i for i in range(11)}}
    ((rejection),) = run(payload, Rules(max_values=10)).rejections
    assert rejection.reason == RejectReason.TOO_MANY_VALUES


def test_units_of_the_source_apply_by_metric_or_last_name() -> None:
    units = {"temperature": "degF", "am2301_humidity": "%"}
    result = run({"AM2301": {"Temperature": 212, "Humidity": 40}}, units=units)
    assert result.readings == (
        reading("am2301_temperature", 100.0, "Cel"),
        reading("am2301_humidity", 40.0, "%RH"),
    )


# ---------------------------------------------------------------------------
# properties

# Not the envelope's keys (ts, seq, values) nor a value object's (value, unit).
_KEYS = st.from_regex(r"[a-z][a-z0-9]{0,4}", fullmatch=True).filter(
    lambda key: key not in ("ts", "seq", "values", "value", "unit")
)
_LEAVES = st.integers(-(10**6), 10**6) | st.floats(-1e6, 1e6, allow_nan=False) | st.booleans()
_GROUPS = st.recursive(
    _LEAVES, lambda inner: st.dictionaries(_KEYS, inner, min_size=1, max_size=4), max_leaves=20
)


def _flattened(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}_{key}" if prefix else key
        if isinstance(value, dict):
            flat.update(_flattened(value, name))
        else:
            flat[name] = value
    return flat


@settings(max_examples=300, deadline=None, database=None)
@given(document=st.dictionaries(_KEYS, _GROUPS, min_size=1, max_size=4))
def test_a_nested_object_reads_as_its_flattened_form(document: dict[str, Any]) -> None:
    """Whatever the nesting, the readings are those of the flat object whose
    keys are the joined paths (when the joined names are distinct), in the
    same order; via bytes and via a parsed document alike."""
    flat = _flattened(document)
    rules = Rules(units={})
    nested = run(document, rules)
    assert nested.rejections == ()
    assert [(r.metric, r.value) for r in nested.readings] == [
        (r.metric, r.value) for r in run(flat, rules).readings
    ]
    assert [r.metric for r in nested.readings] == list(flat)
    parsed = normalize_document(
        document,
        raw=orjson.dumps(document),
        device_id=DEVICE,
        source=Source.SOCKETIO,
        received_ms=NOW,
        rules=rules,
    )
    assert parsed.readings == nested.readings
