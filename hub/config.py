"""Settings: `config.toml` read once with tomllib, typed, frozen, passed in.

Every key can be overridden from the environment as `HUB_<SECTION>__<KEY>`
(for example `HUB_SERVER__PORT=9000`). Unknown keys and bad values raise
`ConfigError` naming the key and the value, with a did-you-mean where one fits.
Durations are written `"250ms"`, `"5s"`, `"10m"`, `"2h"`, `"30d"` or as a number
of seconds; they are held as float seconds.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import orjson

from hub.errors import ConfigError
from hub.models import is_valid_device_id


@dataclass(frozen=True, slots=True)
class Range:
    """Annotated marker: the number must lie in [low, high]."""

    low: float
    high: float


class Duration:
    """Annotated marker: a duration, held as float seconds."""


class Size:
    """Annotated marker: a size, held as int bytes."""


ENV_PREFIX = "HUB_"
CONFIG_ENV = "HUB_CONFIG"
DEFAULT_CONFIG = "config.toml"

Port = Annotated[int, Range(0, 65535)]
Seconds = Annotated[float, Duration(), Range(0, 10 * 365 * 86400)]
Positive = Annotated[int, Range(1, 1 << 40)]
Transport = Literal["polling", "websocket"]


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: Port = 8080
    transports: tuple[Transport, ...] = ("polling", "websocket")
    cors_allowed_origins: tuple[str, ...] = ()
    ping_interval: Seconds = 25.0
    ping_timeout: Seconds = 20.0
    shutdown_timeout: Seconds = 10.0
    websocket_compression: bool = False


@dataclass(frozen=True, slots=True)
class StorageSettings:
    path: str = "data/hub.db"
    url: str = ""  # postgresql://...: the store shared by a cluster's hubs
    synchronous: Literal["off", "normal", "full"] = "normal"
    batch_max: Positive = 2000
    commit_linger: Seconds = 0.0
    commit_linger_busy: Seconds = 0.02
    queue_max: Positive = 1000
    ack_timeout: Seconds = 10.0
    retention: Seconds = 0.0
    retention_batch: Positive = 5000
    wal_target: Annotated[int, Size(), Range(64 * 1024, 1 << 40)] = 16 * 1024 * 1024


PRESETS = ("tasmota", "zigbee2mqtt", "homie", "esphome")


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """One `[[mqtt.sources]]`: a firmware's preset, or a topic layout of one's own."""

    preset: Literal["", "tasmota", "zigbee2mqtt", "homie", "esphome"] = ""
    topic: str = ""  # a layout's pattern: {device} required, {metric} optional
    format: Literal["json", "senml", "number"] = "json"
    units: Mapping[str, str] = field(default_factory=lambda: types.MappingProxyType({}))
    group: str = ""
    # a preset's base topic, as its firmware names the setting ("": the firmware's
    # default): Tasmota's FullTopic, Zigbee2MQTT's mqtt.base_topic, Homie's root
    # topic, ESPHome's discovery_prefix
    base: str = ""


@dataclass(frozen=True, slots=True)
class MqttSettings:
    enabled: bool = True
    url: str = "mqtt://127.0.0.1:1883"
    topic_prefix: str = "devices"
    qos: Annotated[int, Range(0, 1)] = 1
    client_id: str = "telemetry-hub"
    keepalive: Annotated[int, Range(5, 65535)] = 30
    clean_start: bool = False
    session_expiry: Seconds = 3600.0
    receive_maximum: Annotated[int, Range(1, 65535)] = 1000
    ack: Literal["after_commit", "on_receipt"] = "after_commit"
    protocol: Literal["5", "3.1.1"] = "5"
    reconnect_min: Seconds = 0.5
    reconnect_max: Seconds = 30.0
    shared_group: str = ""  # telemetry as $share/{group}/...: the hubs split it
    sources: tuple[SourceSettings, ...] = ()  # [[mqtt.sources]]


@dataclass(frozen=True, slots=True)
class AuthSettings:
    dashboard_token: str = ""
    admin_token: str = ""
    enroll: Literal["open", "listed", "auto"] = "auto"


@dataclass(frozen=True, slots=True)
class DeviceSettings:
    id: str
    token: str = ""
    token_sha256: str = ""
    token_file: str = ""
    group: str = ""


@dataclass(frozen=True, slots=True)
class LimitsSettings:
    device_rate: Annotated[float, Range(0, 1e9)] = 200.0  # messages/s per device; 0: no limit
    device_burst: Positive = 400


@dataclass(frozen=True, slots=True)
class CommandSettings:
    timeout: Seconds = 10.0  # when the admin gives no timeout_ms
    max_timeout: Seconds = 300.0
    ttl: Seconds = 0.0  # > 0: a command to an offline device waits this long for it


@dataclass(frozen=True, slots=True)
class ReplaySettings:
    rate: Positive = 2000
    burst: Positive = 2000
    max_backlog: Positive = 100_000
    max_concurrent: Positive = 8
    page_size: Positive = 200
    hub_rate: Positive = 20_000


DEFAULT_UNITS: Mapping[str, str] = types.MappingProxyType(
    {"temperature": "Cel", "pressure": "Pa", "humidity": "%RH"}
)


@dataclass(frozen=True, slots=True)
class NormalizeSettings:
    max_payload_bytes: Positive = 65536
    max_depth: Annotated[int, Range(2, 64)] = 8
    max_values: Positive = 1000
    max_future: Seconds = 300.0
    max_past: Seconds = 30 * 86400.0
    aliases: Mapping[str, str] = field(default_factory=lambda: types.MappingProxyType({}))
    units: Mapping[str, str] = field(default_factory=lambda: DEFAULT_UNITS)


@dataclass(frozen=True, slots=True)
class BroadcastSettings:
    tick: Seconds = 0.02
    frame_rate: Annotated[float, Range(0, 1_000_000)] = 5000.0
    poll_rate: Annotated[float, Range(0, 1_000_000)] = 2000.0
    presence_rate: Annotated[float, Range(1, 1_000_000)] = 5000.0


@dataclass(frozen=True, slots=True)
class PresenceSettings:
    offline_after: Seconds = 120.0


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    stale_after: Seconds = 60.0


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    node_id: str = ""  # this hub's name in logs, /readyz and /metrics


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    devices: tuple[DeviceSettings, ...] = ()
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    commands: CommandSettings = field(default_factory=CommandSettings)
    replay: ReplaySettings = field(default_factory=ReplaySettings)
    normalize: NormalizeSettings = field(default_factory=NormalizeSettings)
    broadcast: BroadcastSettings = field(default_factory=BroadcastSettings)
    presence: PresenceSettings = field(default_factory=PresenceSettings)
    dashboard: DashboardSettings = field(default_factory=DashboardSettings)
    log: LogSettings = field(default_factory=LogSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)


SECRET_KEYS = frozenset({"dashboard_token", "admin_token", "token", "token_sha256"})

# ---------------------------------------------------------------------------
# loading


def config_path(explicit: str | None, environ: Mapping[str, str]) -> Path:
    """`--config` wins, then `HUB_CONFIG`, then `config.toml` in the working directory."""
    return Path(explicit or environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_settings(path: Path | None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read `path` (a missing default file means all defaults), apply env overrides."""
    environ = os.environ if environ is None else environ
    document: dict[str, Any] = {}
    if path is not None:
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError("--config", str(path), "no such file") from exc
        except OSError as exc:
            raise ConfigError("--config", str(path), exc.strerror or str(exc)) from exc
        except UnicodeDecodeError as exc:
            raise ConfigError("--config", str(path), f"not UTF-8: {exc.reason}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(path), "<file>", f"not valid TOML: {exc}") from exc
    _apply_environment(document, environ)
    return settings_from_document(document)


def settings_from_document(document: Mapping[str, Any]) -> Settings:
    sections = {f.name: f for f in dataclasses.fields(Settings)}
    _refuse_unknown(document, sections.keys(), "")
    values: dict[str, Any] = {}
    for name, raw in document.items():
        if name == "devices":
            values[name] = _devices(raw)
        else:
            section_type = _hints(Settings)[name]
            if not isinstance(raw, Mapping):
                raise ConfigError(name, raw, "must be a table ([" + name + "])")
            values[name] = _build(section_type, raw, name)
    if "normalize" in values:
        # [normalize.units] adds to (or changes) the defaults rather than replacing them all.
        normalize = values["normalize"]
        merged = {**DEFAULT_UNITS, **normalize.units}
        values["normalize"] = dataclasses.replace(normalize, units=types.MappingProxyType(merged))
    settings = Settings(**values)
    _check_consistency(settings)
    return settings


def _apply_environment(document: dict[str, Any], environ: Mapping[str, str]) -> None:
    sections = {f.name for f in dataclasses.fields(Settings)} - {"devices"}
    for variable, text in sorted(environ.items()):
        if not variable.startswith(ENV_PREFIX) or "__" not in variable or variable == CONFIG_ENV:
            continue
        section, _, key = variable[len(ENV_PREFIX) :].lower().partition("__")
        if section not in sections:
            raise ConfigError(variable, text, "no such section", _close(section, sections))
        table = document.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(section, table, "must be a table")
        # The raw string is converted by the field's type, like a TOML value.
        table[key] = _EnvText(text)


class _EnvText(str):
    """A value that came from the environment, still text, to be parsed by type."""


def _devices(raw: Any) -> tuple[DeviceSettings, ...]:
    if not isinstance(raw, list):
        raise ConfigError("devices", raw, "must be an array of tables ([[devices]])")
    devices = []
    seen: set[str] = set()
    for index, entry in enumerate(raw):
        where = f"devices[{index}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(where, entry, "must be a table")
        device = _build(DeviceSettings, entry, where)
        if not is_valid_device_id(device.id):
            raise ConfigError(f"{where}.id", device.id, "must be 1-64 of A-Z a-z 0-9 _ . -")
        if device.id in seen:
            raise ConfigError(f"{where}.id", device.id, "listed twice")
        seen.add(device.id)
        secrets = [k for k in ("token", "token_sha256", "token_file") if getattr(device, k)]
        if len(secrets) > 1:
            raise ConfigError(where, secrets, "give only one of token, token_sha256, token_file")
        if device.token_sha256 and not _is_sha256_hex(device.token_sha256):
            raise ConfigError(f"{where}.token_sha256", "***", "must be 64 hexadecimal digits")
        if device.token_file and not Path(device.token_file).is_file():
            raise ConfigError(f"{where}.token_file", device.token_file, "no such file")
        devices.append(device)
    return tuple(devices)


def _is_sha256_hex(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text)


def _check_consistency(settings: Settings) -> None:
    url = urlsplit(settings.mqtt.url)
    if url.scheme not in ("mqtt", "mqtts") or not url.hostname:
        raise ConfigError("mqtt.url", settings.mqtt.url, "must look like mqtt://host:port")
    try:
        url.port  # noqa: B018 - parsing the port validates it
    except ValueError as exc:
        raise ConfigError("mqtt.url", settings.mqtt.url, "bad port") from exc
    if settings.storage.url:
        store = urlsplit(settings.storage.url)
        if store.scheme not in ("postgresql", "postgres") or not store.path.strip("/"):
            raise ConfigError(
                "storage.url",
                settings.storage.url,
                "must look like postgresql://user:pass@host:5432/database",
            )
    group = settings.mqtt.shared_group
    if group and any(c in group for c in "+#/"):
        raise ConfigError("mqtt.shared_group", group, "must be a plain name without + # or /")
    prefix = settings.mqtt.topic_prefix
    if not prefix or any(c in prefix for c in "+#") or prefix.startswith("/"):
        raise ConfigError("mqtt.topic_prefix", prefix, "must be a plain topic without + # or /")
    for index, source in enumerate(settings.mqtt.sources):
        _check_source(source, f"mqtt.sources[{index}]")
    if settings.mqtt.reconnect_min > settings.mqtt.reconnect_max:
        raise ConfigError(
            "mqtt.reconnect_min", settings.mqtt.reconnect_min, "exceeds mqtt.reconnect_max"
        )
    if not settings.server.transports:
        raise ConfigError("server.transports", [], "needs at least one transport")
    if settings.replay.page_size > settings.replay.max_backlog:
        raise ConfigError(
            "replay.page_size", settings.replay.page_size, "exceeds replay.max_backlog"
        )


def _check_source(source: SourceSettings, where: str) -> None:
    if bool(source.preset) == bool(source.topic):
        raise ConfigError(
            where, source.preset or source.topic or "{}", "give either preset or topic"
        )
    if source.preset and source.format != "json":
        raise ConfigError(f"{where}.format", source.format, "a preset knows its own format")
    if source.group and not is_valid_device_id(source.group):
        raise ConfigError(f"{where}.group", source.group, "must be 1-64 of A-Z a-z 0-9 _ . -")
    if source.base:
        _check_base(source, f"{where}.base")
    if not source.topic:
        return
    levels = source.topic.split("/")
    if levels.count("{device}") != 1:
        raise ConfigError(f"{where}.topic", source.topic, "needs {device} as one whole level")
    if levels.count("{metric}") > 1:
        raise ConfigError(f"{where}.topic", source.topic, "has {metric} more than once")
    if source.format == "senml" and "{metric}" in levels:
        raise ConfigError(f"{where}.format", source.format, "a SenML pack names its own metrics")
    if source.format == "number" and "{metric}" not in levels:
        raise ConfigError(
            f"{where}.topic", source.topic, "a number payload needs {metric} in its topic"
        )
    for index, level in enumerate(levels):
        if level in ("{device}", "{metric}", "+") or (level == "#" and index == len(levels) - 1):
            continue
        if not level or any(c in level for c in "+#{}") or level.startswith("$"):
            raise ConfigError(
                f"{where}.topic",
                source.topic,
                f"level {level!r}: a name, {{device}}, {{metric}}, + or a final #",
            )


# The tokens of Tasmota's FullTopic that stand for a whole level (hub.sources.tasmota).
TASMOTA_TOKENS = ("%prefix%", "%topic%", "%hostname%", "%id%")


def _check_base(source: SourceSettings, where: str) -> None:
    if not source.preset:
        raise ConfigError(where, source.base, "only a preset has a base topic")
    tasmota = source.preset == "tasmota"
    # Tasmota's FullTopic ends with /; Tasmota adds it when it does not.
    levels = (source.base.removesuffix("/") if tasmota else source.base).split("/")
    rule = "levels of A-Z a-z 0-9 _ . - joined by /"
    if tasmota:
        rule += f", or whole levels {', '.join(TASMOTA_TOKENS)}"
        for token in ("%prefix%", "%topic%"):
            if levels.count(token) != 1:
                raise ConfigError(where, source.base, f"a FullTopic needs {token} as one level")
    for level in levels:
        if not is_valid_device_id(level) and not (tasmota and level in TASMOTA_TOKENS):
            raise ConfigError(where, source.base, f"must be {rule}")


# ---------------------------------------------------------------------------
# typed conversion


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """A settings class's field types, resolved once (100,000 [[devices]]
    entries took 6.2 s resolving them again for each)."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls, include_extras=True)
    return hints


def _build(cls: type[Any], raw: Mapping[str, Any], where: str) -> Any:
    hints = _hints(cls)
    _refuse_unknown(raw, hints.keys(), where + ".")
    values = {key: _convert(hints[key], value, f"{where}.{key}") for key, value in raw.items()}
    try:
        return cls(**values)
    except TypeError as exc:
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in values
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        shown = {k: "***" if k in SECRET_KEYS else v for k, v in raw.items()}
        raise ConfigError(where, shown, f"missing {', '.join(missing)}") from exc


def _refuse_unknown(raw: Mapping[str, Any], known: typing.Iterable[str], where: str) -> None:
    known = list(known)
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(where + key, value, "unknown key", _close(key, known))


def _close(word: str, choices: typing.Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _convert(hint: Any, value: Any, key: str) -> Any:
    base: Any = hint
    markers: tuple[Any, ...] = ()
    if typing.get_origin(hint) is Annotated:
        base, *extra = typing.get_args(hint)
        markers = tuple(extra)
    if any(isinstance(m, Duration) for m in markers):
        converted: Any = parse_duration(value, key)
    elif any(isinstance(m, Size) for m in markers):
        converted = parse_size(value, key)
    else:
        converted = _convert_base(base, value, key)
    for marker in markers:
        if isinstance(marker, Range) and not marker.low <= converted <= marker.high:
            raise ConfigError(key, value, f"must be between {marker.low:g} and {marker.high:g}")
    return converted


def _convert_base(base: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(base)
    from_env = isinstance(value, _EnvText)
    if base is bool:
        if from_env:
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
        if isinstance(value, bool):
            return value
        raise ConfigError(key, value, "must be true or false")
    if base is int:
        if from_env:
            try:
                return int(value)
            except ValueError:
                pass
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(key, value, "must be an integer")
    if base is float:
        if from_env:
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(key, value, "must be a number")
    if base is str:
        if isinstance(value, str):
            return str(value)
        raise ConfigError(key, value, "must be a string")
    if dataclasses.is_dataclass(base) and isinstance(base, type):
        if not isinstance(value, Mapping):
            raise ConfigError(key, value, "must be a table")
        return _build(base, value, key)
    if origin is Literal:
        choices = typing.get_args(base)
        if value in choices:
            return str(value)
        raise ConfigError(
            key,
            value,
            "must be one of " + ", ".join(map(repr, choices)),
            _close(str(value), choices),
        )
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(base)
        if from_env:
            value = _env_list(value, key)
        if not isinstance(value, list | tuple):
            raise ConfigError(key, value, "must be an array")
        return tuple(_convert(item_type, item, f"{key}[{i}]") for i, item in enumerate(value))
    if origin in (Mapping, dict) or base is Mapping:
        if from_env:
            value = _env_json(value, key)
        if not isinstance(value, Mapping):
            raise ConfigError(key, value, "must be a table of names to strings")
        result = {}
        for name, item in value.items():
            if not isinstance(item, str):
                raise ConfigError(f"{key}.{name}", item, "must be a string")
            result[str(name)] = item
        return types.MappingProxyType(result)
    raise ConfigError(key, value, f"unsupported setting type {base!r}")  # pragma: no cover


def _env_list(text: str, key: str) -> Any:
    text = text.strip()
    if text.startswith("["):
        return _env_json(text, key)
    return [_EnvText(part.strip()) for part in text.split(",") if part.strip()]


def _env_json(text: str, key: str) -> Any:
    try:
        return orjson.loads(str(text))  # orjson refuses str subclasses such as _EnvText
    except orjson.JSONDecodeError as exc:
        raise ConfigError(key, text, "must be JSON here") from exc


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}


def parse_size(value: Any, key: str) -> int:
    """`"512KiB"`, `"16MiB"`, `"1GB"`, or a number of bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit = text[len(number) :] or "b"
        try:
            size = float(number) * _SIZE_UNITS[unit]
        except (ValueError, KeyError):
            raise ConfigError(key, value, "must be a size such as '512KiB' or '1GB'") from None
        if size >= 0 and size.is_integer():
            return int(size)
    raise ConfigError(key, value, "must be a size such as '16MiB' or a number of bytes")


def parse_duration(value: Any, key: str) -> float:
    """`"250ms"`, `"5s"`, `"10m"`, `"2h"`, `"30d"`, or a number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        number, unit = text, "s"
        for suffix in ("ms", "s", "m", "h", "d"):
            if text.endswith(suffix):
                number, unit = text[: -len(suffix)], suffix
                break
        try:
            seconds = float(number) * _DURATION_UNITS[unit]
        except ValueError:
            raise ConfigError(
                key, value, "must be a duration such as '250ms', '5s', '10m', '2h', '30d'"
            ) from None
    else:
        raise ConfigError(key, value, "must be a duration such as '5s' or a number of seconds")
    if seconds < 0 or seconds != seconds:
        raise ConfigError(key, value, "must not be negative")
    return seconds


# ---------------------------------------------------------------------------
# printing


def dump_toml(settings: Settings) -> str:
    """The effective configuration as TOML, secrets replaced by `"***"`."""
    lines: list[str] = []
    for section in dataclasses.fields(Settings):
        value = getattr(settings, section.name)
        if section.name == "devices":
            for device in value:
                lines.append("[[devices]]")
                lines.extend(_dump_fields(device))
                lines.append("")
            continue
        lines.append(f"[{section.name}]")
        arrays = [
            (f.name, getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name == "sources"
        ]
        tables: list[tuple[str, Mapping[str, str]]] = []
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if isinstance(item, Mapping):
                tables.append((f.name, item))
        lines.extend(_dump_fields(value))
        lines.append("")
        for name, table in tables:
            lines.append(f"[{section.name}.{name}]")
            lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items())
            lines.append("")
        for name, entries in arrays:
            for entry in entries:
                lines.append(f"[[{section.name}.{name}]]")
                lines.extend(_dump_fields(entry))
                for f in dataclasses.fields(entry):
                    item = getattr(entry, f.name)
                    if isinstance(item, Mapping):
                        pairs = ", ".join(
                            f"{_toml_key(k)} = {_toml_value(v)}" for k, v in item.items()
                        )
                        lines.append(f"{f.name} = {{ {pairs} }}")
                lines.append("")
    return "\n".join(lines)


def _dump_fields(obj: Any) -> list[str]:
    lines = []
    for f in dataclasses.fields(obj):
        item = getattr(obj, f.name)
        if isinstance(item, Mapping) or (f.name == "sources" and item):
            continue  # written as tables of their own
        if f.name in SECRET_KEYS and item:
            item = "***"
        lines.append(f"{f.name} = {_toml_value(item)}")
    return lines


def _toml_key(key: str) -> str:
    bare = key.isascii() and key.replace("_", "").replace("-", "").isalnum()
    return key if bare else _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return orjson.dumps(str(value)).decode()
