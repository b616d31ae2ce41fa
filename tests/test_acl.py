"""`telemetry-hub mosquitto-acl`: the files it writes, checked against a real Mosquitto.

The broker answers here are those of Mosquitto 2.0.11, asserted exactly: with
an `acl_file`, a denied PUBLISH is dropped (MQTT 5 QoS 1 gets PUBACK 0x87 "Not
authorized"), and a SUBSCRIBE is granted whatever the topic, the ACL being
applied when a message is delivered.
"""

from __future__ import annotations

import asyncio
import base64
import os
import queue
import signal
import socket
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from hub import cli
from hub.acl import acl_text, device_users, password_hash
from hub.config import DeviceSettings, load_settings
from tests.brokers import Mosquitto, free_port
from tests.hubs import hub_settings, serve_hub

TOKEN_B = "secret-b-from-a-file"
TOKEN_H = "test"  # configured only as its SHA-256, below
SHA256_OF_TEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
WAIT = 5.0
V5 = MQTTProtocolVersion.MQTTv5
V311 = MQTTProtocolVersion.MQTTv311


@pytest.fixture(autouse=True)
def _no_hub_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI reads the real environment: run it without HUB_ variables."""
    for name in list(os.environ):
        if name.startswith("HUB_"):
            monkeypatch.delenv(name)


@dataclass
class Generated:
    config: Path
    out: Path
    port: int
    stdout: str
    stderr: str

    @property
    def hub_password(self) -> str:
        return (self.out / "hub-password").read_text().strip()


def write_config(tmp_path: Path, port: int, extra: str = "") -> Path:
    token_file = tmp_path / "dev.b.token"
    token_file.write_text(TOKEN_B + "\n")  # the newline is not part of the token
    config = tmp_path / "config.toml"
    config.write_text(
        f'[mqtt]\nurl = "mqtt://127.0.0.1:{port}"\n\n'
        '[[devices]]\nid = "dev-a"\ntoken = "secret-a"\n\n'
        f'[[devices]]\nid = "dev.b"\ntoken_file = "{token_file}"\n\n'
        f'[[devices]]\nid = "dev-h"\ntoken_sha256 = "{SHA256_OF_TEST}"\n' + extra
    )
    return config


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["mosquitto-acl", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def generated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Generated:
    port = free_port()
    config = write_config(tmp_path, port)
    out = tmp_path / "broker"
    code, stdout, stderr = run_cli(capsys, "--config", str(config), "--out", str(out))
    assert code == 0, stderr
    return Generated(config, out, port, stdout, stderr)


@pytest.fixture
def broker(generated: Generated) -> Iterator[Mosquitto]:
    """Mosquitto on the generated snippet: its listener line gives way to the
    helper's loopback one, everything else is used as written."""
    lines = (generated.out / "mosquitto.conf").read_text().splitlines()
    assert f"listener {generated.port}" in lines
    snippet = [line for line in lines if not line.startswith("listener ")]
    if os.geteuid() == 0:
        # As root Mosquitto drops to the `mosquitto` user, which could then
        # neither read the 0600 passwd nor write the persistence file here.
        snippet.append("user root")
    directory = generated.out.parent / "mosquitto"
    directory.mkdir()
    broker = Mosquitto(directory, generated.port, extra_config="\n".join(snippet))
    broker.start()
    yield broker
    broker.stop()


class Probe:
    """A paho client that records every answer of the broker, so that tests
    can assert the exact reason codes (aiomqtt does not expose PUBACK's)."""

    def __init__(
        self,
        port: int,
        username: str | None,
        password: str | None,
        protocol: Any = V5,
        client_id: str | None = None,
    ):
        self.port = port
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"probe-{username}",
            protocol=protocol,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.connacks: queue.Queue[ReasonCode] = queue.Queue()
        self.acks: queue.Queue[tuple[int, list[ReasonCode]]] = queue.Queue()
        self.messages: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.client.on_connect = lambda _c, _u, _f, code, _p: self.connacks.put(code)
        self.client.on_subscribe = lambda _c, _u, mid, codes, _p: self.acks.put((mid, codes))
        self.client.on_publish = lambda _c, _u, mid, code, _p: self.acks.put((mid, [code]))
        self.client.on_message = lambda _c, _u, m: self.messages.put(
            (m.topic, bytes(m.payload), m.retain)
        )

    def connect(self, persistent: bool = False) -> ReasonCode:
        """`persistent`: MQTT 5 clean start off and a one-hour session, as the hub's."""
        if persistent:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 3600
            self.client.connect(
                "127.0.0.1", self.port, keepalive=30, clean_start=False, properties=properties
            )
        else:
            self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        return self.connacks.get(timeout=WAIT)

    def subscribe(self, topic: str) -> ReasonCode:
        _result, mid = self.client.subscribe(topic, qos=1)
        assert mid is not None
        return self._ack(mid)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> ReasonCode:
        """QoS 1: the PUBACK's reason code. QoS 0: paho's "sent", nothing from the broker."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        return self._ack(info.mid)

    def next_message(self) -> tuple[str, bytes, bool]:
        return self.messages.get(timeout=WAIT)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _ack(self, mid: int) -> ReasonCode:
        got, codes = self.acks.get(timeout=WAIT)
        assert got == mid
        (code,) = codes
        return code


@pytest.fixture
def connect(broker: Mosquitto) -> Iterator[Any]:
    """connect(user, password, protocol) -> a connected Probe, closed after the test."""
    probes: list[Probe] = []

    def _connect(
        user: str, password: str, protocol: Any = V5, client_id: str | None = None
    ) -> Probe:
        probe = Probe(broker.port, user, password, protocol, client_id)
        probes.append(probe)
        assert probe.connect() == 0
        return probe

    yield _connect
    for probe in probes:
        probe.close()


def raw_connect_311(port: int, username: str | None, password: str | None) -> bytes:
    """The CONNACK to a bare MQTT 3.1.1 CONNECT, as bytes: paho would translate
    its return code into an MQTT 5 reason code."""

    def text(value: str) -> bytes:
        data = value.encode()
        return len(data).to_bytes(2, "big") + data

    flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = text("MQTT") + bytes([4, flags]) + (30).to_bytes(2, "big") + text("raw-probe")
    body += text(username) if username is not None else b""
    body += text(password) if password is not None else b""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(bytes([0x10, len(body)]) + body)
        answer = b""
        while len(answer) < 4:
            chunk = sock.recv(4 - len(answer))
            if not chunk:
                break
            answer += chunk
        return answer


# ---------------------------------------------------------------------------
# pure: file contents


def test_password_hash_matches_a_line_written_by_mosquitto_passwd_2_0_11() -> None:
    # `mosquitto_passwd -b pw alice secret` on this machine wrote this line.
    line = (
        "$7$101$EmML+RE7OHGpEcFG$BDOxv5MQeuW2wqTCTAFQFpATeiTdqNmwDs3l9HejGW5wtvto"
        "Uq3Y8EROxnAye6leiSNmki514bc5WWGQVPsdcA=="
    )
    salt = base64.b64decode(line.split("$")[3])
    assert password_hash("secret", salt=salt) == line


def test_password_hash_uses_a_fresh_salt_each_time() -> None:
    assert password_hash("same") != password_hash("same")


def test_acl_confines_each_device_to_its_topics_and_the_hub_to_its_role() -> None:
    text = acl_text("plant", "hub")
    rules = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert rules == [
        "pattern write plant/%u/telemetry",
        "pattern write plant/%u/status",
        "pattern write plant/%u/replies",
        "pattern read plant/%u/commands",
        "user hub",
        "topic read plant/+/telemetry",
        "topic read plant/+/status",
        "topic read plant/+/replies",
        "topic write plant/+/commands",
    ]


def test_devices_without_a_known_plaintext_token_get_no_user(tmp_path: Path) -> None:
    token_file = tmp_path / "t"
    token_file.write_text("  from-file \n")
    users, skipped = device_users(
        (
            DeviceSettings(id="a", token="plain"),
            DeviceSettings(id="b", token_file=str(token_file)),
            DeviceSettings(id="c", token_sha256=SHA256_OF_TEST),
            DeviceSettings(id="d"),
        )
    )
    assert [(u.name, u.password) for u in users] == [("a", "plain"), ("b", "from-file")]
    assert [(s.device_id, s.reason) for s in skipped] == [
        ("c", "only token_sha256 is configured; the plaintext is unknown"),
        ("d", "no token configured"),
    ]
    assert "plain" not in repr(users)


# ---------------------------------------------------------------------------
# the real broker


@pytest.mark.parametrize("protocol", [V5, V311], ids=["mqtt5", "mqtt311"])
def test_device_publishes_its_own_telemetry_and_the_hub_receives_it(
    generated: Generated, connect: Any, protocol: Any
) -> None:
    hub = connect("telemetry-hub", generated.hub_password, protocol)
    assert hub.subscribe("devices/+/telemetry") == 1  # granted QoS 1
    dev_a = connect("dev-a", "secret-a", protocol)
    dev_b = connect("dev.b", TOKEN_B, protocol)  # its token came from token_file
    assert dev_a.publish("devices/dev-a/telemetry", b'{"t": 1}') == 0
    assert dev_b.publish("devices/dev.b/telemetry", b'{"t": 2}') == 0
    received = {hub.next_message()[:2], hub.next_message()[:2]}
    assert received == {
        ("devices/dev-a/telemetry", b'{"t": 1}'),
        ("devices/dev.b/telemetry", b'{"t": 2}'),
    }


def test_mqtt5_publish_under_another_device_is_refused_and_not_delivered(
    generated: Generated, connect: Any
) -> None:
    hub = connect("telemetry-hub", generated.hub_password)
    for kind in ("telemetry", "status", "replies"):
        assert hub.subscribe(f"devices/+/{kind}") == 1
    dev_a = connect("dev-a", "secret-a")
    for kind in ("telemetry", "status", "replies"):
        code = dev_a.publish(f"devices/dev.b/{kind}", b"spoof", qos=1)
        assert (code.value, str(code)) == (0x87, "Not authorized")
        # QoS 0 has no PUBACK: paho reports it sent, the broker drops it silently.
        assert dev_a.publish(f"devices/dev.b/{kind}", b"spoof", qos=0) == 0
    # A device cannot impersonate the hub either.
    assert dev_a.publish("devices/dev-a/commands", b"{}").value == 0x87
    assert dev_a.client.is_connected()  # refused, not disconnected
    # Mosquitto handles one client's packets in order, and delivers to the hub
    # in order: the hub's first message being this one proves nothing came before.
    assert dev_a.publish("devices/dev-a/telemetry", b"sentinel") == 0
    assert hub.next_message() == ("devices/dev-a/telemetry", b"sentinel", False)
    assert hub.messages.empty()


def test_mqtt311_publish_under_another_device_is_acknowledged_and_dropped(
    generated: Generated, connect: Any
) -> None:
    hub = connect("telemetry-hub", generated.hub_password, V311)
    assert hub.subscribe("devices/+/telemetry") == 1
    dev_a = connect("dev-a", "secret-a", V311)
    # MQTT 3.1.1's PUBACK carries no reason code: the device cannot tell.
    assert dev_a.publish("devices/dev.b/telemetry", b"spoof", qos=1) == 0
    assert dev_a.client.is_connected()
    assert dev_a.publish("devices/dev-a/telemetry", b"sentinel") == 0
    assert hub.next_message() == ("devices/dev-a/telemetry", b"sentinel", False)


def test_hub_user_cannot_publish_telemetry_as_a_device(generated: Generated, connect: Any) -> None:
    hub = connect("telemetry-hub", generated.hub_password)
    assert hub.publish("devices/dev-a/telemetry", b"forged").value == 0x87


def test_device_receives_only_its_own_commands(generated: Generated, connect: Any) -> None:
    dev_b = connect("dev.b", TOKEN_B)
    code = dev_b.publish("devices/dev.b/status", b"online", retain=True)
    assert (code.value, str(code)) == (0x10, "No matching subscribers")  # but retained
    assert dev_b.subscribe("devices/dev.b/commands") == 1
    dev_a = connect("dev-a", "secret-a")
    # Granted: Mosquitto 2.0.11 does not check acl_file on SUBSCRIBE, only on
    # delivery. So the SUBACK says nothing; what matters is what arrives.
    assert dev_a.subscribe("devices/dev.b/commands") == 1
    assert dev_a.subscribe("devices/+/status") == 1  # dev.b's retained status: not sent
    assert dev_a.subscribe("devices/dev-a/commands") == 1
    hub = connect("telemetry-hub", generated.hub_password)
    assert hub.publish("devices/dev.b/commands", b'{"id": "1", "name": "b"}') == 0
    assert hub.publish("devices/dev-a/commands", b'{"id": "2", "name": "a"}') == 0
    assert dev_b.next_message() == ("devices/dev.b/commands", b'{"id": "1", "name": "b"}', False)
    assert dev_a.next_message() == ("devices/dev-a/commands", b'{"id": "2", "name": "a"}', False)
    assert dev_a.messages.empty()


def test_hub_user_publishes_commands_to_a_device(generated: Generated, connect: Any) -> None:
    dev_a = connect("dev-a", "secret-a")
    assert dev_a.subscribe("devices/dev-a/commands") == 1
    hub = connect("telemetry-hub", generated.hub_password)
    assert hub.publish("devices/dev-a/commands", b'{"id": "9", "name": "reboot"}') == 0
    assert dev_a.next_message() == (
        "devices/dev-a/commands",
        b'{"id": "9", "name": "reboot"}',
        False,
    )


def test_a_device_cannot_disconnect_others_by_taking_their_client_id(
    generated: Generated, connect: Any
) -> None:
    hub = connect("telemetry-hub", generated.hub_password, client_id="telemetry-hub")
    assert hub.subscribe("devices/+/telemetry") == 1
    dev_b = connect("dev.b", TOKEN_B, client_id="dev.b")
    # Without use_username_as_clientid each of these would take over, and so
    # close, the hub's and dev.b's connections.
    connect("dev-a", "secret-a", client_id="telemetry-hub")
    connect("dev-a", "secret-a", client_id="dev.b")
    assert dev_b.publish("devices/dev.b/telemetry", b"still here") == 0
    assert hub.next_message() == ("devices/dev.b/telemetry", b"still here", False)
    assert hub.client.is_connected()
    assert dev_b.client.is_connected()


def test_the_hub_session_is_kept_under_its_username_whatever_its_client_id(
    generated: Generated, broker: Mosquitto, connect: Any
) -> None:
    first = Probe(broker.port, "telemetry-hub", generated.hub_password, client_id="one")
    assert first.connect(persistent=True) == 0
    assert first.subscribe("devices/+/telemetry") == 1
    first.close()
    dev_a = connect("dev-a", "secret-a")
    assert dev_a.publish("devices/dev-a/telemetry", b"while the hub was away") == 0
    again = Probe(broker.port, "telemetry-hub", generated.hub_password, client_id="two")
    try:
        assert again.connect(persistent=True) == 0
        assert again.next_message()[:2] == ("devices/dev-a/telemetry", b"while the hub was away")
    finally:
        again.close()


REFUSED = [
    pytest.param("dev-a", "wrong", id="wrong-password"),
    pytest.param("nobody", "secret-a", id="unknown-user"),
    pytest.param(None, None, id="anonymous"),
    pytest.param("dev-h", TOKEN_H, id="token-sha256-only-device"),
    pytest.param("telemetry-hub", "secret-a", id="hub-user-wrong-password"),
]


@pytest.mark.parametrize(("user", "password"), REFUSED)
def test_mqtt5_connect_refused_not_authorized(
    broker: Mosquitto, user: str | None, password: str | None
) -> None:
    probe = Probe(broker.port, user, password, V5)
    try:
        code = probe.connect()
    finally:
        probe.close()
    assert (code.value, str(code)) == (0x87, "Not authorized")


@pytest.mark.parametrize(("user", "password"), REFUSED)
def test_mqtt311_connect_refused_not_authorized(
    broker: Mosquitto, user: str | None, password: str | None
) -> None:
    # CONNACK, remaining length 2, no session, return code 5 "not authorized"
    # (Mosquitto does not use 4 "bad user name or password").
    assert raw_connect_311(broker.port, user, password) == b"\x20\x02\x00\x05"


def test_raw_connect_311_is_accepted_with_the_right_password(
    generated: Generated, broker: Mosquitto
) -> None:
    assert raw_connect_311(broker.port, "dev-a", "secret-a") == b"\x20\x02\x00\x00"


async def test_the_hub_consumes_as_its_broker_user_and_spoofs_never_reach_it(
    tmp_path: Path, generated: Generated, broker: Mosquitto
) -> None:
    url = f"mqtt://telemetry-hub:{generated.hub_password}@127.0.0.1:{broker.port}"
    devices = load_settings(generated.config, {}).devices
    async with (
        serve_hub(hub_settings(tmp_path, url, devices=devices)) as running,
        aiohttp.ClientSession(running.url) as http,
        aiomqtt.Client("127.0.0.1", broker.port, username="dev-a", password="secret-a") as dev_a,
    ):

        async def readings(device_id: str) -> list[dict[str, Any]]:
            path = f"/api/devices/{device_id}/readings?metric=temperature"
            async with http.get(path) as response:
                assert response.status == 200
                body: list[dict[str, Any]] = (await response.json())["readings"]
                return body

        await dev_a.publish("devices/dev.b/telemetry", b'{"temperature": 99}', qos=1)
        await dev_a.publish("devices/dev-a/telemetry", b'{"temperature": 21.5}', qos=1)
        for _attempt in range(250):  # up to 5 s
            if stored := await readings("dev-a"):
                break
            await asyncio.sleep(0.02)
        assert [(r["device_id"], r["value"]) for r in stored] == [("dev-a", 21.5)]
        assert await readings("dev.b") == []


# ---------------------------------------------------------------------------
# the command line


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_cli_writes_the_files_tells_what_it_did_and_no_secret(generated: Generated) -> None:
    out = generated.out
    assert mode(out / "passwd") == 0o600
    assert mode(out / "hub-password") == 0o600
    assert mode(out / "acl") == 0o644
    assert mode(out / "mosquitto.conf") == 0o644
    assert sorted(p.name for p in out.iterdir()) == [
        "acl",
        "hub-password",
        "mosquitto.conf",
        "passwd",
    ]
    users = [line.split(":", 1)[0] for line in (out / "passwd").read_text().splitlines()]
    assert users == ["telemetry-hub", "dev-a", "dev.b"]
    conf = (out / "mosquitto.conf").read_text()
    for line in ("allow_anonymous false", f"password_file {out / 'passwd'}", "persistence true"):
        assert line in conf.splitlines()
    assert f"wrote {out / 'passwd'}" in generated.stdout
    assert "broker users: telemetry-hub, dev-a, dev.b" in generated.stdout
    assert generated.stderr == (
        "warning: device 'dev-h' gets no broker user: "
        "only token_sha256 is configured; the plaintext is unknown\n"
    )
    passwd = (out / "passwd").read_text()
    hashes = [line.split(":", 1)[1] for line in passwd.splitlines()]
    for secret in ("secret-a", TOKEN_B, generated.hub_password, *hashes):
        assert secret not in generated.stdout + generated.stderr


def test_cli_rerun_keeps_the_hub_password(
    generated: Generated, capsys: pytest.CaptureFixture[str]
) -> None:
    before = generated.hub_password
    argv = ("--config", str(generated.config), "--out", str(generated.out))
    code, stdout, _ = run_cli(capsys, *argv)
    assert code == 0
    assert generated.hub_password == before
    assert f"password in {generated.out / 'hub-password'}" in stdout


def test_cli_hub_password_file_replaces_the_generated_one(
    tmp_path: Path,
    generated: Generated,
    broker: Mosquitto,
    capsys: pytest.CaptureFixture[str],
    connect: Any,
) -> None:
    password_file = tmp_path / "hub.pass"
    password_file.write_text("own-hub-password\n")
    password_file.chmod(0o600)
    code, stdout, stderr = run_cli(
        capsys,
        *("--config", str(generated.config), "--out", str(generated.out)),
        *("--hub-user", "ingest", "--hub-password-file", str(password_file)),
    )
    assert code == 0, stderr
    assert not (generated.out / "hub-password").exists()  # it would no longer work
    assert "own-hub-password" not in stdout + stderr
    acl = (generated.out / "acl").read_text()
    assert "user ingest\n" in acl
    assert "user telemetry-hub\n" not in acl
    # Mosquitto re-reads passwd and acl on SIGHUP, which it handles in its own time.
    assert broker.process is not None
    broker.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + WAIT
    while True:
        probe = Probe(broker.port, "ingest", "own-hub-password")
        try:
            answer = probe.connect()
        finally:
            probe.close()
        if answer == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert answer == 0
    hub = connect("ingest", "own-hub-password")
    assert hub.subscribe("devices/+/telemetry") == 1
    dev_a = connect("dev-a", "secret-a")
    assert dev_a.publish("devices/dev-a/telemetry", b"after reload") == 0
    assert hub.next_message() == ("devices/dev-a/telemetry", b"after reload", False)
    assert hub.publish("devices/dev-a/telemetry", b"forged").value == 0x87


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--hub-password-file", "/nonexistent/pass"), "--hub-password-file = '/nonexistent/pass'"),
        (("--hub-user", "dev-a"), "--hub-user = 'dev-a': is also a device id in [[devices]]"),
        (("--hub-user", "hub user"), "--hub-user = 'hub user': must be 1-64 of"),
    ],
    ids=["missing-password-file", "hub-user-is-a-device", "bad-hub-user"],
)
def test_cli_config_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    config = write_config(tmp_path, 1883)
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(capsys, "--config", str(config), "--out", str(out), *argv)
    assert code == 2
    assert stderr.startswith(f"config error: {message}")
    assert stdout == ""
    assert not out.exists() or not any(out.iterdir())


def test_cli_bad_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, 1883, extra='\n[mqtt_typo]\nurl = "x"\n')
    code, _, stderr = run_cli(capsys, "--config", str(config), "--out", str(tmp_path / "o"))
    assert code == 2
    assert stderr.startswith("config error: mqtt_typo = ")


def test_cli_empty_token_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, 1883)
    (tmp_path / "dev.b.token").write_text("\n")
    code, _, stderr = run_cli(capsys, "--config", str(config), "--out", str(tmp_path / "o"))
    assert code == 2
    assert stderr.startswith("config error: devices[1].token_file = ")
    assert stderr.rstrip().endswith("is empty")


def test_cli_unwritable_out_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, 1883)
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    code, stdout, stderr = run_cli(capsys, "--config", str(config), "--out", str(not_a_folder))
    assert code == 1
    assert stderr.startswith(f"telemetry-hub: cannot write {not_a_folder}: ")
    assert "secret-a" not in stdout + stderr
