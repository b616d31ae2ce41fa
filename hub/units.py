"""Units: spellings devices use, their SenML (RFC 8428) symbols, and conversions.

Every known unit belongs to a dimension and converts to and from that
dimension's base by a linear map `base = value * scale + offset`. A metric's
canonical unit is the one configured for it (`[normalize.units]`), or else the
default of the dimension of the unit it arrived in, so that one metric ends up
in one unit whichever device sent it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Unit:
    symbol: str  # SenML symbol where one exists
    dimension: str
    scale: float  # base = value * scale + offset
    offset: float = 0.0


_UNITS: tuple[Unit, ...] = (
    # temperature; base kelvin
    Unit("Cel", "temperature", 1.0, 273.15),
    Unit("K", "temperature", 1.0),
    Unit("degF", "temperature", 5.0 / 9.0, 273.15 - 32.0 * 5.0 / 9.0),
    # pressure; base pascal
    Unit("Pa", "pressure", 1.0),
    Unit("hPa", "pressure", 100.0),
    Unit("kPa", "pressure", 1000.0),
    Unit("mbar", "pressure", 100.0),
    Unit("bar", "pressure", 100_000.0),
    Unit("psi", "pressure", 6894.757293168361),
    Unit("atm", "pressure", 101_325.0),
    Unit("mmHg", "pressure", 133.322387415),
    Unit("inHg", "pressure", 3386.389),
    # relative humidity
    Unit("%RH", "humidity", 1.0),
    # electrical
    Unit("V", "voltage", 1.0),
    Unit("mV", "voltage", 0.001),
    Unit("kV", "voltage", 1000.0),
    Unit("A", "current", 1.0),
    Unit("mA", "current", 0.001),
    Unit("W", "power", 1.0),
    Unit("mW", "power", 0.001),
    Unit("kW", "power", 1000.0),
    Unit("J", "energy", 1.0),
    Unit("Wh", "energy", 3600.0),
    Unit("kWh", "energy", 3_600_000.0),
    # time, frequency, length, speed
    Unit("s", "time", 1.0),
    Unit("ms", "time", 0.001),
    Unit("min", "time", 60.0),
    Unit("h", "time", 3600.0),
    Unit("Hz", "frequency", 1.0),
    Unit("kHz", "frequency", 1000.0),
    Unit("MHz", "frequency", 1_000_000.0),
    Unit("m", "length", 1.0),
    Unit("mm", "length", 0.001),
    Unit("cm", "length", 0.01),
    Unit("km", "length", 1000.0),
    Unit("m/s", "speed", 1.0),
    Unit("km/h", "speed", 1000.0 / 3600.0),
    # dimensionless ratios that stay as they are
    Unit("%", "percent", 1.0),
    Unit("ppm", "concentration", 1.0),
    Unit("ppb", "concentration", 0.001),
    Unit("lx", "illuminance", 1.0),
    Unit("dB", "decibel", 1.0),
    Unit("dBm", "power_level", 1.0),
)

# Other spellings devices use.
_ALIASES: dict[str, str] = {
    "°C": "Cel",
    "C": "Cel",
    "degC": "Cel",
    "celsius": "Cel",
    "°F": "degF",
    "F": "degF",
    "fahrenheit": "degF",
    "kelvin": "K",
    "pa": "Pa",
    "hpa": "hPa",
    "kpa": "kPa",
    "millibar": "mbar",
    "RH": "%RH",
    "%rh": "%RH",
    "volt": "V",
    "watt": "W",
    "lux": "lx",
    "sec": "s",
}

UNITS: dict[str, Unit] = {unit.symbol: unit for unit in _UNITS}
_FOLDED: dict[str, str] = {
    **{symbol.lower(): symbol for symbol in UNITS},
    **{alias.lower(): symbol for alias, symbol in _ALIASES.items()},
}

# The canonical unit of each dimension when the metric has none configured.
DIMENSION_DEFAULTS: dict[str, str] = {
    "temperature": "Cel",
    "pressure": "Pa",
    "humidity": "%RH",
    "voltage": "V",
    "current": "A",
    "power": "W",
    "energy": "J",
    "time": "s",
    "frequency": "Hz",
    "length": "m",
    "speed": "m/s",
    "percent": "%",
    "concentration": "ppm",
    "illuminance": "lx",
    "decibel": "dB",
    "power_level": "dBm",
}

MAX_UNIT_LENGTH = 16


def lookup(spelling: str) -> Unit | None:
    """The unit a device meant by `spelling`, or None when it is not known."""
    spelling = spelling.strip()
    unit = UNITS.get(_ALIASES.get(spelling, spelling))
    if unit is not None:
        return unit
    symbol = _FOLDED.get(spelling.lower())
    if symbol is None:
        return None
    # Case is folded ("CEL", "hpa", "PSI"), except where it turns m (milli)
    # into M (mega) or back: "MV" is not "mV", "mhz" is not "MHz".
    if len(spelling) <= 4 and spelling[0] in "mM" and spelling[0] != symbol[0]:
        return None
    return UNITS[symbol]


def convert(value: float, source: Unit, target: Unit) -> float:
    """Convert between two units of one dimension, to 12 significant digits so
    that 1013.2 hPa becomes 101320 Pa rather than 101320.00000000001."""
    if source is target:
        return value
    base = value * source.scale + source.offset
    converted = (base - target.offset) / target.scale
    return float(f"{converted:.12g}")
