"""Settings: config.toml, HUB_<SECTION>__<KEY> overrides, errors, and check-config."""

from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from hub import cli
from hub.config import (
    SECRET_KEYS,
    DeviceSettings,
    Settings,
    SourceSettings,
    config_path,
    dump_toml,
    load_settings,
    parse_duration,
    settings_from_document,
)
from hub.errors import ConfigError

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
CONSOLE_SCRIPT = Path(sys.executable).with_name("telemetry-hub")
SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def load(tmp_path: Path, text: str, environ: Mapping[str, str] | None = None) -> Settings:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, environ or {})


def setting(settings: Settings, dotted: str) -> Any:
    return functools.reduce(getattr, dotted.split("."), settings)


@pytest.fixture
def no_hub_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI reads the real environment: start it without HUB_ variables."""
    for name in list(os.environ):
        if name.startswith("HUB_"):
            monkeypatch.delenv(name)


# ---------------------------------------------------------------------------
# defaults and the repository's config.toml


def test_no_file_and_no_environment_give_the_defaults() -> None:
    settings = load_settings(None, {})
    assert settings == Settings()
    assert settings.server.port == 8080
    assert settings.server.transports == ("polling", "websocket")
    assert settings.mqtt.url == "mqtt://127.0.0.1:1883"
    assert settings.auth.enroll == "auto"
    assert settings.replay.rate == 2000
    assert settings.replay.max_backlog == 100_000
    assert dict(settings.normalize.units) == {
        "temperature": "Cel",
        "pressure": "Pa",
        "humidity": "%RH",
    }
    assert settings.devices == ()


def test_the_repository_config_matches_the_defaults() -> None:
    settings = load_settings(REPO / "config.toml", {})
    assert dict(settings.normalize.aliases) == {"temp": "temperature", "hum": "humidity"}
    without_aliases = dataclasses.replace(
        settings, normalize=dataclasses.replace(settings.normalize, aliases={})
    )
    assert without_aliases == Settings()


# ---------------------------------------------------------------------------
# every key

KEYS: list[tuple[str, str, Any]] = [
    ("[server]\nhost = '0.0.0.0'", "server.host", "0.0.0.0"),
    ("[server]\nport = 9000", "server.port", 9000),
    ("[server]\ntransports = ['polling']", "server.transports", ("polling",)),
    ("[server]\ncors_allowed_origins = ['*']", "server.cors_allowed_origins", ("*",)),
    ("[server]\nping_interval = '30s'", "server.ping_interval", 30.0),
    ("[server]\nping_timeout = 5", "server.ping_timeout", 5.0),
    ("[server]\nshutdown_timeout = '1m'", "server.shutdown_timeout", 60.0),
    ("[storage]\npath = '/var/lib/hub/hub.db'", "storage.path", "/var/lib/hub/hub.db"),
    ("[storage]\nurl = 'postgresql://hub@db/hub'", "storage.url", "postgresql://hub@db/hub"),
    ("[storage]\nsynchronous = 'full'", "storage.synchronous", "full"),
    ("[storage]\nbatch_max = 10", "storage.batch_max", 10),
    ("[storage]\ncommit_linger = '5ms'", "storage.commit_linger", 0.005),
    ("[storage]\ncommit_linger_busy = '50ms'", "storage.commit_linger_busy", 0.05),
    ("[storage]\nqueue_max = 7", "storage.queue_max", 7),
    ("[storage]\nwal_target = '512KiB'", "storage.wal_target", 512 * 1024),
    ("[storage]\nwal_target = '2MB'", "storage.wal_target", 2_000_000),
    ("[storage]\nwal_target = 1048576", "storage.wal_target", 1048576),
    ("[mqtt]\nenabled = false", "mqtt.enabled", False),
    (
        "[mqtt]\nurl = 'mqtts://u:p@broker.example:8883'",
        "mqtt.url",
        "mqtts://u:p@broker.example:8883",
    ),
    ("[mqtt]\ntopic_prefix = 'site1/devices'", "mqtt.topic_prefix", "site1/devices"),
    ("[mqtt]\nqos = 0", "mqtt.qos", 0),
    ("[mqtt]\nclient_id = 'hub-2'", "mqtt.client_id", "hub-2"),
    ("[mqtt]\nkeepalive = 60", "mqtt.keepalive", 60),
    ("[mqtt]\nclean_start = true", "mqtt.clean_start", True),
    ("[mqtt]\nsession_expiry = '1d'", "mqtt.session_expiry", 86400.0),
    ("[mqtt]\nreceive_maximum = 10", "mqtt.receive_maximum", 10),
    ("[mqtt]\nreconnect_min = '1s'", "mqtt.reconnect_min", 1.0),
    ("[mqtt]\nreconnect_max = '2m'", "mqtt.reconnect_max", 120.0),
    ("[mqtt]\nshared_group = 'hubs'", "mqtt.shared_group", "hubs"),
    (
        "[[mqtt.sources]]\npreset = 'tasmota'\n[[mqtt.sources]]\n"
        "topic = 'farm/{device}/{metric}'\nformat = 'number'\n"
        "units = { temperature = 'degF' }\ngroup = 'farm'",
        "mqtt.sources",
        (
            SourceSettings(preset="tasmota"),
            SourceSettings(
                topic="farm/{device}/{metric}",
                format="number",
                units=MappingProxyType({"temperature": "degF"}),
                group="farm",
            ),
        ),
    ),
    ("[auth]\ndashboard_token = 'dash'", "auth.dashboard_token", "dash"),
    ("[auth]\nadmin_token = 'root'", "auth.admin_token", "root"),
    ("[auth]\nenroll = 'listed'", "auth.enroll", "listed"),
    ("[replay]\nrate = 50", "replay.rate", 50),
    ("[replay]\nburst = 100", "replay.burst", 100),
    ("[replay]\nmax_backlog = 1000", "replay.max_backlog", 1000),
    ("[storage]\nretention = '30d'", "storage.retention", 30 * 86400.0),
    ("[storage]\nack_timeout = '3s'", "storage.ack_timeout", 3.0),
    ("[storage]\nretention_batch = 100", "storage.retention_batch", 100),
    ("[limits]\ndevice_rate = 5.5", "limits.device_rate", 5.5),
    ("[limits]\ndevice_burst = 9", "limits.device_burst", 9),
    ("[commands]\ntimeout = '3s'", "commands.timeout", 3.0),
    ("[commands]\nmax_timeout = '1m'", "commands.max_timeout", 60.0),
    ("[commands]\nttl = '30s'", "commands.ttl", 30.0),
    ("[replay]\nmax_concurrent = 2", "replay.max_concurrent", 2),
    ("[replay]\nhub_rate = 5000", "replay.hub_rate", 5000),
    ("[mqtt]\nack = 'on_receipt'", "mqtt.ack", "on_receipt"),
    ("[mqtt]\nprotocol = '3.1.1'", "mqtt.protocol", "3.1.1"),
    ("[replay]\npage_size = 100", "replay.page_size", 100),
    ("[normalize]\nmax_payload_bytes = 1024", "normalize.max_payload_bytes", 1024),
    ("[normalize]\nmax_depth = 4", "normalize.max_depth", 4),
    ("[normalize]\nmax_values = 10", "normalize.max_values", 10),
    ("[normalize]\nmax_future = '1m'", "normalize.max_future", 60.0),
    ("[normalize]\nmax_past = '7d'", "normalize.max_past", 604800.0),
    ("[normalize.aliases]\nt = 'temperature'", "normalize.aliases", {"t": "temperature"}),
    (
        "[normalize.units]\ntemperature = 'K'\nco2 = 'ppm'",
        "normalize.units",
        {"temperature": "K", "pressure": "Pa", "humidity": "%RH", "co2": "ppm"},
    ),
    ("[broadcast]\ntick = '50ms'", "broadcast.tick", 0.05),
    ("[broadcast]\npoll_rate = 500", "broadcast.poll_rate", 500.0),
    ("[broadcast]\nframe_rate = 800", "broadcast.frame_rate", 800.0),
    ("[broadcast]\npresence_rate = 100", "broadcast.presence_rate", 100.0),
    ("[presence]\noffline_after = '90s'", "presence.offline_after", 90.0),
    ("[log]\nlevel = 'debug'", "log.level", "debug"),
    ("[cluster]\nnode_id = 'hub-1'", "cluster.node_id", "hub-1"),
    ("[server]\nwebsocket_compression = true", "server.websocket_compression", True),
    ("[dashboard]\nstale_after = '30s'", "dashboard.stale_after", 30.0),
]


@pytest.mark.parametrize(("text", "dotted", "expected"), KEYS, ids=[k[1] for k in KEYS])
def test_every_key(tmp_path: Path, text: str, dotted: str, expected: Any) -> None:
    settings = load(tmp_path, text)
    assert setting(settings, dotted) == expected
    section, _, key = dotted.partition(".")
    others = {f.name for f in dataclasses.fields(getattr(settings, section))} - {key}
    for other in others:  # the other keys of the section keep their defaults
        assert getattr(getattr(settings, section), other) == getattr(
            getattr(Settings(), section), other
        )


def test_the_table_covers_every_key() -> None:
    covered = {dotted for _, dotted, _ in KEYS}
    every = {
        f"{section.name}.{f.name}"
        for section in dataclasses.fields(Settings)
        if section.name != "devices"
        for f in dataclasses.fields(getattr(Settings(), section.name))
    }
    assert covered == every


def test_devices(tmp_path: Path) -> None:
    token_file = tmp_path / "gh4.token"
    token_file.write_text("s3cret\n")
    settings = load(
        tmp_path,
        f"""
        [[devices]]
        id = "greenhouse-3"
        token = "change-me"
        group = "greenhouse"

        [[devices]]
        id = "greenhouse_4.b"
        token_file = "{token_file}"

        [[devices]]
        id = "meter-1"
        token_sha256 = "{SHA256}"

        [[devices]]
        id = "{"x" * 64}"
        """,
    )
    assert settings.devices == (
        DeviceSettings(id="greenhouse-3", token="change-me", group="greenhouse"),
        DeviceSettings(id="greenhouse_4.b", token_file=str(token_file)),
        DeviceSettings(id="meter-1", token_sha256=SHA256),
        DeviceSettings(id="x" * 64),
    )


# ---------------------------------------------------------------------------
# environment overrides


@pytest.mark.parametrize(
    ("variable", "text", "dotted", "expected"),
    [
        ("HUB_SERVER__PORT", "9000", "server.port", 9000),
        ("HUB_SERVER__HOST", "0.0.0.0", "server.host", "0.0.0.0"),
        ("HUB_MQTT__ENABLED", "false", "mqtt.enabled", False),
        ("HUB_MQTT__ENABLED", "0", "mqtt.enabled", False),
        ("HUB_MQTT__ENABLED", "off", "mqtt.enabled", False),
        ("HUB_MQTT__CLEAN_START", "TRUE", "mqtt.clean_start", True),
        ("HUB_MQTT__CLEAN_START", "yes", "mqtt.clean_start", True),
        ("HUB_MQTT__URL", "mqtt://broker:1884", "mqtt.url", "mqtt://broker:1884"),
        ("HUB_SERVER__TRANSPORTS", "polling", "server.transports", ("polling",)),
        (
            "HUB_SERVER__TRANSPORTS",
            "polling, websocket",
            "server.transports",
            ("polling", "websocket"),
        ),
        ("HUB_SERVER__TRANSPORTS", '["websocket"]', "server.transports", ("websocket",)),
        ("HUB_SERVER__CORS_ALLOWED_ORIGINS", "", "server.cors_allowed_origins", ()),
        ("HUB_PRESENCE__OFFLINE_AFTER", "90s", "presence.offline_after", 90.0),
        ("HUB_PRESENCE__OFFLINE_AFTER", "45", "presence.offline_after", 45.0),
        ("HUB_STORAGE__COMMIT_LINGER", "250ms", "storage.commit_linger", 0.25),
        ("HUB_REPLAY__RATE", "500", "replay.rate", 500),
        ("HUB_STORAGE__SYNCHRONOUS", "full", "storage.synchronous", "full"),
        (
            "HUB_NORMALIZE__ALIASES",
            '{"t":"temperature"}',
            "normalize.aliases",
            {"t": "temperature"},
        ),
        (
            "HUB_NORMALIZE__UNITS",
            '{"pressure":"hPa"}',
            "normalize.units",
            {"temperature": "Cel", "pressure": "hPa", "humidity": "%RH"},
        ),
        ("HUB_AUTH__ADMIN_TOKEN", "root", "auth.admin_token", "root"),
    ],
)
def test_environment_overrides(variable: str, text: str, dotted: str, expected: Any) -> None:
    assert setting(load_settings(None, {variable: text}), dotted) == expected


def test_the_environment_overrides_the_file_key_by_key(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        "[server]\nhost = '0.0.0.0'\nport = 8081\n",
        {"HUB_SERVER__PORT": "9000", "HUB_LOG__LEVEL": "debug"},
    )
    assert settings.server.port == 9000
    assert settings.server.host == "0.0.0.0"
    assert settings.log.level == "debug"


def test_other_variables_are_ignored() -> None:
    environ = {"PATH": "/bin", "HUB_CONFIG": "elsewhere.toml", "HUB_PORT": "1", "HUBBLE__X": "1"}
    assert load_settings(None, environ) == Settings()


# ---------------------------------------------------------------------------
# durations


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("250ms", 0.25),
        ("5s", 5.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("30d", 2_592_000.0),
        ("1.5h", 5400.0),
        (" 5S ", 5.0),
        ("7", 7.0),
        ("0", 0.0),
        (5, 5.0),
        (0.25, 0.25),
    ],
)
def test_durations(tmp_path: Path, value: Any, seconds: float) -> None:
    assert parse_duration(value, "k") == seconds
    toml_value = f'"{value}"' if isinstance(value, str) else repr(value)
    assert load(tmp_path, f"[presence]\noffline_after = {toml_value}").presence.offline_after == (
        seconds
    )


@pytest.mark.parametrize("value", ["soon", "5 parsecs", "ms", "", "5sec", "-5s", -1, True, [5]])
def test_bad_durations(value: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_duration(value, "presence.offline_after")
    assert caught.value.key == "presence.offline_after"
    assert caught.value.value == value


# ---------------------------------------------------------------------------
# bad values: ConfigError names the key and the value


def raises(tmp_path: Path, text: str, environ: Mapping[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, environ)
    error = caught.value
    assert str(error).startswith(f"{error.key} = {error.value!r}: {error.problem}")
    return error


@pytest.mark.parametrize(
    ("text", "key", "value", "problem"),
    [
        # wrong type
        ("[server]\nport = '8080'", "server.port", "8080", "must be an integer"),
        ("[server]\nport = 80.5", "server.port", 80.5, "must be an integer"),
        ("[server]\nport = true", "server.port", True, "must be an integer"),
        ("[server]\nhost = 5", "server.host", 5, "must be a string"),
        ("[mqtt]\nenabled = 1", "mqtt.enabled", 1, "must be true or false"),
        ("[mqtt]\nenabled = 'yes'", "mqtt.enabled", "yes", "must be true or false"),
        ("[server]\ntransports = 'polling'", "server.transports", "polling", "must be an array"),
        ("[normalize]\naliases = 'x'", "normalize.aliases", "x", "must be a table"),
        ("[normalize.aliases]\nt = 5", "normalize.aliases.t", 5, "must be a string"),
        ("server = 5", "server", 5, "must be a table"),
        ("[devices]\nid = 'a'", "devices", {"id": "a"}, "must be an array of tables"),
        ("devices = [5]", "devices[0]", 5, "must be a table"),
        # out of range
        ("[server]\nport = 70000", "server.port", 70000, "must be between 0 and 65535"),
        ("[server]\nport = -1", "server.port", -1, "must be between 0 and 65535"),
        ("[mqtt]\nqos = 2", "mqtt.qos", 2, "must be between 0 and 1"),
        ("[mqtt]\nkeepalive = 1", "mqtt.keepalive", 1, "must be between 5 and 65535"),
        ("[storage]\nbatch_max = 0", "storage.batch_max", 0, "must be between 1 and"),
        ("[normalize]\nmax_depth = 1", "normalize.max_depth", 1, "must be between 2 and 64"),
        ("[server]\nping_interval = '3651d'", "server.ping_interval", "3651d", "between 0 and"),
        # bad choice
        (
            "[storage]\nsynchronous = 'sometimes'",
            "storage.synchronous",
            "sometimes",
            "must be one of 'off', 'normal', 'full'",
        ),
        (
            "[server]\ntransports = ['polling', 'carrier-pigeon']",
            "server.transports[1]",
            "carrier-pigeon",
            "must be one of 'polling', 'websocket'",
        ),
        # bad duration
        ("[server]\nping_interval = 'soon'", "server.ping_interval", "soon", "a duration"),
        ("[server]\nping_interval = '5 secs'", "server.ping_interval", "5 secs", "a duration"),
        ("[server]\nping_interval = -1", "server.ping_interval", -1, "must not be negative"),
        ("[server]\nping_interval = true", "server.ping_interval", True, "a duration"),
        # consistency
        ("[server]\ntransports = []", "server.transports", [], "needs at least one transport"),
        ("[mqtt]\nurl = 'http://broker:1883'", "mqtt.url", "http://broker:1883", "mqtt://host"),
        ("[mqtt]\nurl = 'mqtt://'", "mqtt.url", "mqtt://", "must look like mqtt://host:port"),
        ("[mqtt]\nurl = 'broker:1883'", "mqtt.url", "broker:1883", "mqtt://host:port"),
        ("[mqtt]\nurl = 'mqtt://broker:99999'", "mqtt.url", "mqtt://broker:99999", "bad port"),
        ("[storage]\nurl = 'mysql://db/hub'", "storage.url", "mysql://db/hub", "postgresql://"),
        ("[mqtt]\nshared_group = 'a/b'", "mqtt.shared_group", "a/b", "plain name"),
        ("[storage]\nurl = 'postgresql://db'", "storage.url", "postgresql://db", "postgresql://"),
        ("[mqtt]\nurl = 'mqtt://broker:x'", "mqtt.url", "mqtt://broker:x", "bad port"),
        ("[mqtt]\ntopic_prefix = ''", "mqtt.topic_prefix", "", "must be a plain topic"),
        ("[mqtt]\ntopic_prefix = 'devices/+'", "mqtt.topic_prefix", "devices/+", "plain topic"),
        ("[mqtt]\ntopic_prefix = '#'", "mqtt.topic_prefix", "#", "plain topic"),
        ("[mqtt]\ntopic_prefix = '/devices'", "mqtt.topic_prefix", "/devices", "plain topic"),
        (
            "[mqtt]\nreconnect_min = '1m'\nreconnect_max = '1s'",
            "mqtt.reconnect_min",
            60.0,
            "exceeds mqtt.reconnect_max",
        ),
        (
            "[replay]\npage_size = 200\nmax_backlog = 100",
            "replay.page_size",
            200,
            "exceeds replay.max_backlog",
        ),
        # [[mqtt.sources]]
        ("[[mqtt.sources]]\ngroup = 'x'", "mqtt.sources[0]", "{}", "either preset or topic"),
        (
            "[[mqtt.sources]]\npreset = 'tasmota'\ntopic = 'a/{device}'",
            "mqtt.sources[0]",
            "tasmota",
            "either preset or topic",
        ),
        ("[[mqtt.sources]]\npreset = 'shelly'", "mqtt.sources[0].preset", "shelly", "one of"),
        (
            "[[mqtt.sources]]\ntopic = 'farm/{metric}'",
            "mqtt.sources[0].topic",
            "farm/{metric}",
            "needs {device}",
        ),
        (
            "[[mqtt.sources]]\ntopic = 'farm/{device}'\nformat = 'number'",
            "mqtt.sources[0].topic",
            "farm/{device}",
            "needs {metric}",
        ),
        (
            "[[mqtt.sources]]\ntopic = 'farm/{device}/{metric}'\nformat = 'senml'",
            "mqtt.sources[0].format",
            "senml",
            "names its own metrics",
        ),
        (
            "[[mqtt.sources]]\ntopic = 'farm/#/{device}'",
            "mqtt.sources[0].topic",
            "farm/#/{device}",
            "a final #",
        ),
        (
            "[[mqtt.sources]]\ntopic = 'farm/x{device}'",
            "mqtt.sources[0].topic",
            "farm/x{device}",
            "needs {device}",
        ),
        (
            "[[mqtt.sources]]\npreset = 'homie'\nformat = 'senml'",
            "mqtt.sources[0].format",
            "senml",
            "knows its own format",
        ),
        (
            "[[mqtt.sources]]\npreset = 'homie'\ngroup = 'a b'",
            "mqtt.sources[0].group",
            "a b",
            "must be 1-64",
        ),
        (
            "[[mqtt.sources]]\ntopic = 'a/{device}'\nbase = 'x'",
            "mqtt.sources[0].base",
            "x",
            "only a preset has a base topic",
        ),
        (
            "[[mqtt.sources]]\npreset = 'tasmota'\nbase = 'tasmota/%topic%/'",
            "mqtt.sources[0].base",
            "tasmota/%topic%/",
            "needs %prefix% as one level",
        ),
        (
            "[[mqtt.sources]]\npreset = 'tasmota'\nbase = '%prefix%/x_%topic%/'",
            "mqtt.sources[0].base",
            "%prefix%/x_%topic%/",
            "needs %topic% as one level",
        ),
        (
            "[[mqtt.sources]]\npreset = 'zigbee2mqtt'\nbase = 'zigbee/+'",
            "mqtt.sources[0].base",
            "zigbee/+",
            "levels of A-Z a-z 0-9 _ . - joined by /",
        ),
        (
            "[[mqtt.sources]]\npreset = 'homie'\nbase = 'homie/'",
            "mqtt.sources[0].base",
            "homie/",
            "levels of A-Z a-z 0-9 _ . - joined by /",
        ),
        (
            "[[mqtt.sources]]\npreset = 'esphome'\nbase = '%prefix%'",
            "mqtt.sources[0].base",
            "%prefix%",
            "levels of A-Z a-z 0-9 _ . - joined by /",
        ),
        ("[mqtt]\nsources = [1]", "mqtt.sources[0]", 1, "must be a table"),
        # [[devices]]
        ("[[devices]]\nid = 'green house'", "devices[0].id", "green house", "must be 1-64 of"),
        ("[[devices]]\nid = ''", "devices[0].id", "", "must be 1-64 of A-Z a-z 0-9 _ . -"),
        ("[[devices]]\nid = 'a/b'", "devices[0].id", "a/b", "must be 1-64 of"),
        ("[[devices]]\nid = 3", "devices[0].id", 3, "must be a string"),
        (
            "[[devices]]\nid = 'a'\n[[devices]]\nid = 'b'\n[[devices]]\nid = 'a'",
            "devices[2].id",
            "a",
            "listed twice",
        ),
        (
            f"[[devices]]\nid = 'a'\ntoken = 'x'\ntoken_sha256 = '{SHA256}'",
            "devices[0]",
            ["token", "token_sha256"],
            "give only one of token, token_sha256, token_file",
        ),
        (
            "[[devices]]\nid = 'a'\ntoken_file = '/nonexistent/gh3.token'",
            "devices[0].token_file",
            "/nonexistent/gh3.token",
            "no such file",
        ),
        (
            "[[devices]]\nid = 'a'\ntoken_sha256 = 'abc'",
            "devices[0].token_sha256",
            "***",
            "must be 64 hexadecimal digits",
        ),
        (
            f"[[devices]]\nid = 'a'\ntoken_sha256 = '{SHA256[:-1]}g'",
            "devices[0].token_sha256",
            "***",
            "must be 64 hexadecimal digits",
        ),
        (
            "[[devices]]\ngroup = 'g'\ntoken = 'hunter2'",
            "devices[0]",
            {"group": "g", "token": "***"},
            "missing id",
        ),
        ("[storage]\nwal_target = '16 furlongs'", "storage.wal_target", "16 furlongs", "a size"),
        ("[storage]\nwal_target = 'MiB'", "storage.wal_target", "MiB", "a size"),
        ("[storage]\nwal_target = 1.5", "storage.wal_target", 1.5, "a size"),
        ("[storage]\nwal_target = '1KiB'", "storage.wal_target", "1KiB", "between"),
    ],
)
def test_bad_values_in_the_file(
    tmp_path: Path, text: str, key: str, value: Any, problem: str
) -> None:
    error = raises(tmp_path, text)
    assert (error.key, error.value) == (key, value)
    assert problem in error.problem
    assert error.suggestion is None


@pytest.mark.parametrize(
    ("variable", "text", "key", "problem"),
    [
        ("HUB_SERVER__PORT", "http", "server.port", "must be an integer"),
        ("HUB_SERVER__PORT", "70000", "server.port", "must be between 0 and 65535"),
        ("HUB_MQTT__ENABLED", "maybe", "mqtt.enabled", "must be true or false"),
        ("HUB_MQTT__QOS", "2", "mqtt.qos", "must be between 0 and 1"),
        ("HUB_SERVER__TRANSPORTS", "carrier-pigeon", "server.transports[0]", "must be one of"),
        ("HUB_PRESENCE__OFFLINE_AFTER", "90 secs", "presence.offline_after", "a duration"),
        ("HUB_NORMALIZE__ALIASES", "{t: x}", "normalize.aliases", "must be JSON here"),
        ("HUB_NORMALIZE__ALIASES", "t=temperature", "normalize.aliases", "must be JSON here"),
        ("HUB_MQTT__URL", "broker:1883", "mqtt.url", "must look like mqtt://host:port"),
    ],
)
def test_bad_values_in_the_environment(
    tmp_path: Path, variable: str, text: str, key: str, problem: str
) -> None:
    error = raises(tmp_path, "", {variable: text})
    assert (error.key, error.value) == (key, text)
    assert problem in error.problem


def test_a_json_environment_value_of_the_wrong_shape(tmp_path: Path) -> None:
    error = raises(tmp_path, "", {"HUB_NORMALIZE__ALIASES": "[1]"})
    assert (error.key, error.value) == ("normalize.aliases", [1])
    assert error.problem == "must be a table of names to strings"


@pytest.mark.parametrize(
    ("text", "environ", "key", "suggestion"),
    [
        ("[servr]\nport = 1", {}, "servr", "server"),
        ("[server]\nprot = 1", {}, "server.prot", "port"),
        ("[[devices]]\nid = 'a'\ntokn = 'x'", {}, "devices[0].tokn", "token"),
        ("[storage]\nsynchronous = 'ful'", {}, "storage.synchronous", "full"),
        ("[auth]\nenroll = 'Listed'", {}, "auth.enroll", "listed"),
        ("[log]\nlevel = 'warn'", {}, "log.level", "warning"),
        ("[server]\ntransports = ['websockets']", {}, "server.transports[0]", "websocket"),
        ("", {"HUB_SERVR__PORT": "1"}, "HUB_SERVR__PORT", "server"),
        ("", {"HUB_SERVER__PROT": "1"}, "server.prot", "port"),
        ("[server]\nxyzzy = 1", {}, "server.xyzzy", None),
        ("", {"HUB_XYZZY__PORT": "1"}, "HUB_XYZZY__PORT", None),
    ],
)
def test_unknown_names_and_choices_suggest_the_closest(
    tmp_path: Path, text: str, environ: dict[str, str], key: str, suggestion: str | None
) -> None:
    error = raises(tmp_path, text, environ)
    assert error.key == key
    assert error.suggestion == suggestion
    if suggestion:
        assert str(error).endswith(f" (did you mean {suggestion!r}?)")
    else:
        assert "did you mean" not in str(error)


def test_a_secret_never_appears_in_an_error(tmp_path: Path) -> None:
    for text in [
        "[[devices]]\ntoken = 'hunter2'",
        "[[devices]]\nid = 'a'\ntoken_sha256 = 'hunter2'",
    ]:
        with pytest.raises(ConfigError) as caught:
            load(tmp_path, text)
        assert "hunter2" not in str(caught.value)


def test_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[server\nport = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML") as caught:
        load_settings(path, {})
    assert caught.value.key == str(path)


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        pytest.param("missing.toml", None, "no such file", id="missing"),
        pytest.param("folder", "dir", "Is a directory", id="a directory"),
        pytest.param("latin1.toml", "[server]\nhost = 'h\xe9'\n", "not UTF-8", id="not UTF-8"),
    ],
)
def test_an_unreadable_config_file(
    tmp_path: Path, name: str, content: str | None, problem: str
) -> None:
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content.encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})
    assert (caught.value.key, caught.value.value) == ("--config", str(path))
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("explicit", "environ", "expected"),
    [
        (None, {}, "config.toml"),
        (None, {"HUB_CONFIG": "/etc/hub.toml"}, "/etc/hub.toml"),
        ("mine.toml", {"HUB_CONFIG": "/etc/hub.toml"}, "mine.toml"),
    ],
)
def test_config_path(explicit: str | None, environ: dict[str, str], expected: str) -> None:
    assert config_path(explicit, environ) == Path(expected)


# ---------------------------------------------------------------------------
# dump_toml


def _plain(value: Any) -> Any:
    """Settings as the data tomllib reads back, secrets shown as "***"."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: "***"
            if f.name in SECRET_KEYS and getattr(value, f.name)
            else _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
        }
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


RICH_CONFIG = """
[server]
transports = ["polling"]
cors_allowed_origins = ["https://dash.example", "*"]
ping_interval = "250ms"

[mqtt]
url = "mqtts://user:pass@broker.example:8883"
topic_prefix = "site \\"1\\"/devices"

[auth]
dashboard_token = "dash-secret"
admin_token = ""

[[mqtt.sources]]
preset = "zigbee2mqtt"
group = "zigbee"

[[mqtt.sources]]
topic = "farm/{{device}}/{{metric}}"
format = "number"
units = {{ temperature = "degF", "Air Temp" = "K" }}

[[devices]]
id = "greenhouse-3"
token = "change-me"
group = "greenhouse"

[[devices]]
id = "meter-1"
token_sha256 = "{sha}"

[[devices]]
id = "cam.2"
token_file = "{token_file}"

[normalize.aliases]
temp = "temperature"
"température" = "temperature"
"Air Temp" = "air_temperature"

[normalize.units]
temperature = "K"
humidity = "%RH"
"""


def test_dump_toml_reads_back_as_the_same_settings(tmp_path: Path) -> None:
    token_file = tmp_path / "cam.token"
    token_file.write_text("t")
    settings = load(tmp_path, RICH_CONFIG.format(sha=SHA256, token_file=token_file))
    dumped = dump_toml(settings)
    assert tomllib.loads(dumped) == _plain(settings)
    assert "change-me" not in dumped
    assert "dash-secret" not in dumped
    assert SHA256 not in dumped
    assert 'admin_token = ""' in dumped  # an empty secret is shown as empty


@pytest.mark.parametrize(
    ("path", "environ"),
    [
        pytest.param(None, {}, id="defaults"),
        pytest.param(REPO / "config.toml", {}, id="config.toml"),
        pytest.param(
            None, {"HUB_NORMALIZE__ALIASES": '{"a b": "c", "é": "e"}'}, id="keys that need quotes"
        ),
    ],
)
def test_dump_toml_loads_back_to_equal_settings(path: Path | None, environ: dict[str, str]) -> None:
    settings = load_settings(path, environ)
    assert settings_from_document(tomllib.loads(dump_toml(settings))) == settings


# ---------------------------------------------------------------------------
# telemetry-hub check-config

GOOD = "[server]\nport = 9000\n\n[mqtt]\nenabled = false\n"
BAD = "[server]\nport = 70000\n"


@pytest.mark.usefixtures("no_hub_environment")
def test_check_config_prints_the_effective_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(GOOD)
    assert cli.main(["check-config", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    printed = tomllib.loads(out)
    assert printed["server"]["port"] == 9000
    assert printed["mqtt"]["enabled"] is False
    assert printed["replay"]["rate"] == 2000


@pytest.mark.usefixtures("no_hub_environment")
def test_check_config_names_the_bad_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(BAD)
    assert cli.main(["check-config", "--config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "config error: server.port = 70000: must be between 0 and 65535\n"


@pytest.mark.usefixtures("no_hub_environment")
def test_check_config_names_a_bad_environment_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(GOOD)
    monkeypatch.setenv("HUB_SERVER__PORT", "http")
    assert cli.main(["check-config", "--config", str(path)]) == 2
    assert capsys.readouterr().err == "config error: server.port = 'http': must be an integer\n"

    monkeypatch.setenv("HUB_SERVER__PORT", "9100")
    monkeypatch.setenv("HUB_SERVR__HOST", "x")
    assert cli.main(["check-config", "--config", str(path)]) == 2
    assert capsys.readouterr().err.startswith(
        "config error: HUB_SERVR__HOST = 'x': no such section"
    )


@pytest.mark.usefixtures("no_hub_environment")
def test_check_config_with_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "missing.toml"
    assert cli.main(["check-config", "--config", str(path)]) == 2
    assert capsys.readouterr().err == f"config error: --config = {str(path)!r}: no such file\n"


@pytest.mark.usefixtures("no_hub_environment")
def test_check_config_finds_the_file_in_hub_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(GOOD)
    monkeypatch.setenv("HUB_CONFIG", str(path))
    monkeypatch.setenv("HUB_SERVER__PORT", "9100")
    assert cli.main(["check-config"]) == 0
    assert tomllib.loads(capsys.readouterr().out)["server"]["port"] == 9100


@pytest.mark.usefixtures("no_hub_environment")
def test_check_config_without_any_file_prints_the_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["check-config"]) == 0
    assert settings_from_document(tomllib.loads(capsys.readouterr().out)) == Settings()


def test_the_console_script(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text(GOOD)
    bad.write_text(BAD)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}

    def check_config(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CONSOLE_SCRIPT), "check-config", "--config", str(path)],
            capture_output=True,
            text=True,
            env=environ,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )

    ok = check_config(good)
    assert ok.returncode == 0, ok.stderr
    assert tomllib.loads(ok.stdout)["server"]["port"] == 9000

    failed = check_config(bad)
    assert failed.returncode == 2
    assert failed.stdout == ""
    assert failed.stderr == "config error: server.port = 70000: must be between 0 and 65535\n"
