"""Units: the spellings devices use, their SenML symbols, and conversions."""

from __future__ import annotations

import pytest

from hub import units
from hub.units import DIMENSION_DEFAULTS, UNITS, convert, lookup

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("spelling", "symbol", "dimension"),
    [
        # temperature
        ("Cel", "Cel", "temperature"),
        ("°C", "Cel", "temperature"),
        ("C", "Cel", "temperature"),
        ("degC", "Cel", "temperature"),
        ("celsius", "Cel", "temperature"),
        ("Celsius", "Cel", "temperature"),
        ("CEL", "Cel", "temperature"),
        ("degF", "degF", "temperature"),
        ("°F", "degF", "temperature"),
        ("F", "degF", "temperature"),
        ("fahrenheit", "degF", "temperature"),
        ("DEGF", "degF", "temperature"),
        ("K", "K", "temperature"),
        ("kelvin", "K", "temperature"),
        ("Kelvin", "K", "temperature"),
        # pressure
        ("Pa", "Pa", "pressure"),
        ("pa", "Pa", "pressure"),
        ("PA", "Pa", "pressure"),
        ("hPa", "hPa", "pressure"),
        ("hpa", "hPa", "pressure"),
        ("HPA", "hPa", "pressure"),
        ("kPa", "kPa", "pressure"),
        ("kpa", "kPa", "pressure"),
        ("mbar", "mbar", "pressure"),
        ("millibar", "mbar", "pressure"),
        ("bar", "bar", "pressure"),
        ("psi", "psi", "pressure"),
        ("PSI", "psi", "pressure"),
        ("atm", "atm", "pressure"),
        ("mmHg", "mmHg", "pressure"),
        ("mmhg", "mmHg", "pressure"),
        ("inHg", "inHg", "pressure"),
        # humidity and plain percentages
        ("%RH", "%RH", "humidity"),
        ("%rh", "%RH", "humidity"),
        ("RH", "%RH", "humidity"),
        ("rh", "%RH", "humidity"),
        ("%", "%", "percent"),
        # others
        ("V", "V", "voltage"),
        ("volt", "V", "voltage"),
        ("mV", "mV", "voltage"),
        ("W", "W", "power"),
        ("watt", "W", "power"),
        ("kWh", "kWh", "energy"),
        ("s", "s", "time"),
        ("sec", "s", "time"),
        ("lux", "lx", "illuminance"),
        ("km/h", "km/h", "speed"),
        ("dBm", "dBm", "power_level"),
    ],
)
def test_lookup(spelling: str, symbol: str, dimension: str) -> None:
    unit = lookup(spelling)
    assert unit is not None
    assert unit.symbol == symbol
    assert unit.dimension == dimension
    assert unit is UNITS[symbol]


@pytest.mark.parametrize(
    "spelling", ["", "furlong", "°", "degR", "Cel2", "hectopascal", "%%", "C°", "\n"]
)
def test_lookup_of_an_unknown_spelling_is_none(spelling: str) -> None:
    assert lookup(spelling) is None


@pytest.mark.parametrize(
    ("value", "source", "target", "expected"),
    [
        (21.5, "Cel", "Cel", 21.5),
        (0, "K", "Cel", -273.15),
        (212, "degF", "Cel", 100.0),
        (32, "degF", "Cel", 0.0),
        (-40, "degF", "Cel", -40.0),
        (98.6, "degF", "Cel", 37.0),
        (37, "Cel", "degF", 98.6),
        (25, "Cel", "K", 298.15),
        (300, "K", "Cel", 26.85),
        (1013.2, "hPa", "Pa", 101320.0),
        (101320, "Pa", "hPa", 1013.2),
        (101.325, "kPa", "Pa", 101325.0),
        (1013.25, "mbar", "hPa", 1013.25),
        (1.01325, "bar", "Pa", 101325.0),
        (1, "atm", "hPa", 1013.25),
        (1, "psi", "Pa", 6894.75729317),
        (1, "mmHg", "Pa", 133.322387415),
        (1, "inHg", "Pa", 3386.389),
        (3300, "mV", "V", 3.3),
        (1.5, "kW", "W", 1500.0),
        (1, "kWh", "J", 3_600_000.0),
        (1, "Wh", "kWh", 0.001),
        (36, "km/h", "m/s", 10.0),
        (1500, "ms", "s", 1.5),
        (2, "h", "min", 120.0),
        (5, "ppb", "ppm", 0.005),
        (2.4, "MHz", "kHz", 2400.0),
    ],
)
def test_convert(value: float, source: str, target: str, expected: float) -> None:
    assert convert(value, UNITS[source], UNITS[target]) == expected


def test_convert_rounds_to_twelve_significant_digits() -> None:
    assert 3300 * 0.001 == 3.3000000000000003  # what plain float arithmetic gives
    assert convert(3300, UNITS["mV"], UNITS["V"]) == 3.3
    assert convert(1013.2, UNITS["hPa"], UNITS["Pa"]) == 101320.0


@pytest.mark.parametrize("unit", UNITS.values(), ids=lambda unit: unit.symbol)
@pytest.mark.parametrize("value", [-40.0, 0.0, 0.1, 21.5, 1013.25, 123456.789])
def test_convert_round_trips_through_the_dimension_default(unit: units.Unit, value: float) -> None:
    default = UNITS[DIMENSION_DEFAULTS[unit.dimension]]
    there = convert(value, unit, default)
    assert convert(there, default, unit) == pytest.approx(value, rel=1e-11, abs=1e-9)


@pytest.mark.parametrize("unit", UNITS.values(), ids=lambda unit: unit.symbol)
def test_convert_to_the_same_unit_is_the_identity(unit: units.Unit) -> None:
    assert convert(0.1 + 0.2, unit, unit) == 0.1 + 0.2


def test_every_dimension_has_a_default_of_its_own_kind() -> None:
    dimensions = {unit.dimension for unit in UNITS.values()}
    assert dimensions == DIMENSION_DEFAULTS.keys()
    for dimension, symbol in DIMENSION_DEFAULTS.items():
        assert UNITS[symbol].dimension == dimension
        assert UNITS[symbol].scale == 1.0
        assert UNITS[symbol].offset == 0.0 or dimension == "temperature"


@pytest.mark.parametrize("symbol", [s for s in UNITS if not s.startswith("M")])
def test_every_symbol_looks_up_itself_also_in_lower_case(symbol: str) -> None:
    assert lookup(symbol) is UNITS[symbol]
    assert lookup(symbol.lower()) is UNITS[symbol]


@pytest.mark.parametrize("spelling", ["MV", "MW", "MA", "mhz", "MS"])
def test_case_folding_never_turns_milli_into_mega_or_back(spelling: str) -> None:
    assert lookup(spelling) is None


def test_surrounding_spaces_are_ignored() -> None:
    assert lookup(" Cel ") is UNITS["Cel"]
