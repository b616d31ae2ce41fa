"""Mosquitto's password file, ACL file and config snippet, built from config.toml.

The hub cannot stop a device from publishing under another device's topics:
over MQTT the broker routes messages, so only the broker can refuse them. This
module turns `[[devices]]` into broker users (username = device id, password =
its token) and an ACL that confines each device to its own topics, plus one
user for the hub itself.

Password hashes are written here rather than by `mosquitto_passwd`, so that
generating the files needs no broker binary on the machine; the tests check
that a real Mosquitto accepts them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from hub.config import DeviceSettings, Settings, SourceSettings
from hub.errors import ConfigError
from hub.models import is_valid_device_id
from hub.sources import build_sources
from hub.sources.zigbee2mqtt import Zigbee2Mqtt

DEFAULT_HUB_USER = "telemetry-hub"
# What Mosquitto 2's own mosquitto_passwd writes: PBKDF2-HMAC-SHA512, 101
# rounds, a 12-byte salt, a 64-byte digest. The broker reads the round count
# from each line and pays it on every CONNECT, so keep to the broker's default.
HASH_ITERATIONS = 101
SALT_BYTES = 12

DEVICE_WRITES = ("telemetry", "status", "replies")
DEVICE_READS = ("commands",)

PASSWD = "passwd"
ACL = "acl"
CONF = "mosquitto.conf"
HUB_PASSWORD = "hub-password"


@dataclass(frozen=True, slots=True)
class BrokerUser:
    name: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A `[[devices]]` entry that gets no broker user, and why."""

    device_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """What `write_broker_files` did, for the CLI to report (no secrets)."""

    written: tuple[Path, ...]
    users: tuple[str, ...]
    skipped: tuple[Skipped, ...]
    hub_user: str
    hub_password_file: Path
    hub_password_generated: bool
    removed: tuple[Path, ...] = ()


# ---------------------------------------------------------------------------
# pure: file contents


def password_hash(password: str, *, salt: bytes | None = None) -> str:
    """One password in Mosquitto 2's `$7$<rounds>$<b64 salt>$<b64 digest>` form."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, HASH_ITERATIONS)
    b64 = base64.b64encode
    return f"$7${HASH_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def device_users(devices: tuple[DeviceSettings, ...]) -> tuple[list[BrokerUser], list[Skipped]]:
    """A broker user for each device whose plaintext token is known.

    An entry with only `token_sha256`, or with no secret at all, is skipped
    rather than failing the whole run: such devices may well use HTTP or
    Socket.IO only, and the other devices still need their broker users. The
    caller reports the skips; the broker refuses those devices at CONNECT.
    """
    users: list[BrokerUser] = []
    skipped: list[Skipped] = []
    for index, device in enumerate(devices):
        if device.token:
            users.append(BrokerUser(device.id, device.token))
        elif device.token_file:
            key = f"devices[{index}].token_file"
            # Stripped like hub.auth does, so the broker and the hub agree on the token.
            token = read_secret(Path(device.token_file), key)
            users.append(BrokerUser(device.id, token))
        elif device.token_sha256:
            skipped.append(
                Skipped(device.id, "only token_sha256 is configured; the plaintext is unknown")
            )
        else:
            skipped.append(Skipped(device.id, "no token configured"))
    return users, skipped


def passwd_text(users: list[BrokerUser]) -> str:
    return "".join(f"{user.name}:{password_hash(user.password)}\n" for user in users)


def bridges_of(sources: tuple[SourceSettings, ...]) -> dict[str, str]:
    """Each bridge's broker user and the topics it publishes for all its
    devices: one per Zigbee2MQTT base topic."""
    return {
        source.bridge_user: f"{source.base}/#"
        for source in build_sources(sources)
        if isinstance(source, Zigbee2Mqtt)
    }


def acl_text(prefix: str, hub_user: str, sources: tuple[SourceSettings, ...] = ()) -> str:
    """Each device (its broker user is its id) may publish only under its own
    id, on the native topics and in each source's layout: `pattern` lines,
    where Mosquitto puts the user's name for `%u`. One set of lines for any
    number of devices: per-user blocks grow the file with the fleet, and
    Mosquitto 2.0.11 did not come up within 120 s on the blocks of 100,000
    devices, against 0.19 s on patterns (bench.fleet). A pattern applies to
    every user, the hub's and a bridge's included, which therefore may
    publish as a device of their own name: no device may take such a name
    (`write_broker_files` refuses it). The hub reads what devices send and
    writes their commands; a bridge (Zigbee2MQTT) publishes under its base
    topic for all its devices."""
    lines = [
        "# Generated by `telemetry-hub mosquitto-acl`; regenerate rather than edit.",
        "# Mosquitto denies whatever no line below grants, anonymous clients included.",
        "",
        "# Each device, logged in as its id (%u), under its own id only.",
    ]
    lines += [f"pattern write {prefix}/%u/{kind}" for kind in DEVICE_WRITES]
    lines += [f"pattern read {prefix}/%u/{kind}" for kind in DEVICE_READS]
    readers = build_sources(sources)
    for reader in readers:
        writes, reads = reader.device_topics("%u")
        lines += [f"pattern write {topic}" for topic in writes]
        lines += [f"pattern read {topic}" for topic in reads]
    lines += ["", "# The hub reads what devices send and writes their commands."]
    lines += [f"user {hub_user}"]
    lines += [f"topic read {prefix}/+/{kind}" for kind in DEVICE_WRITES]
    lines += [f"topic write {prefix}/+/{kind}" for kind in DEVICE_READS]
    for reader in readers:
        lines += [f"topic read {s.filter}" for s in reader.subscriptions()]
    for bridge, topics in bridges_of(sources).items():
        lines += ["", f"# The {bridge} bridge publishes for all its devices.", f"user {bridge}"]
        lines += [f"topic readwrite {topics}"]
    return "\n".join(lines) + "\n"


def conf_text(settings: Settings, out_dir: Path) -> str:
    url = urlsplit(settings.mqtt.url)
    tls = url.scheme == "mqtts"
    port = url.port or (8883 if tls else 1883)
    lines = [
        "# Generated by `telemetry-hub mosquitto-acl`. Use it as the broker's config,",
        "# or drop it into a conf.d included by a main config that has no listener.",
        "",
        "# All interfaces: devices connect from the network, not from this host.",
        f"listener {port}",
    ]
    if tls:
        lines += [
            "# mqtt.url is mqtts://: give this listener its certificate and key.",
            "#certfile /etc/mosquitto/certs/server.crt",
            "#keyfile /etc/mosquitto/certs/server.key",
        ]
    lines += [
        "",
        "# Every client must be a user below; the ACL confines each one to its topics.",
        "allow_anonymous false",
        "# The client id is taken from the username: otherwise any device could connect",
        "# with another's client id (or the hub's) and so disconnect it, over and over.",
        "use_username_as_clientid true",
        f"password_file {out_dir / PASSWD}",
        f"acl_file {out_dir / ACL}",
        "",
        "# The hub keeps a persistent session (fixed client id, clean start off) and",
        "# acknowledges QoS 1 messages only once stored. Without persistence a broker",
        "# restart forgets that session and the messages queued for it, and whatever",
        "# devices publish before the hub resubscribes is delivered to nobody.",
        "# Set persistence_location if the main config does not (Debian's does).",
        "persistence true",
        "# Messages kept for the hub while it is away; beyond this Mosquitto drops them",
        "# silently. Size it for the longest hub outage at your message rate.",
        "max_queued_messages 100000",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# I/O


def read_secret(path: Path, key: str) -> str:
    """A secret kept in a file, without its trailing newline; errors name `key`."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError as exc:
        raise ConfigError(key, str(path), "no such file") from exc
    except OSError as exc:
        raise ConfigError(key, str(path), exc.strerror or str(exc)) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(key, str(path), f"not UTF-8: {exc.reason}") from exc
    if not text:
        raise ConfigError(key, str(path), "is empty")
    return text


def write_broker_files(
    settings: Settings,
    out_dir: Path,
    *,
    hub_user: str = DEFAULT_HUB_USER,
    hub_password_file: Path | None = None,
) -> BrokerFiles:
    """Write passwd, acl and mosquitto.conf into `out_dir`.

    Without `hub_password_file`, the hub's password is taken from an existing
    `out_dir/hub-password`, else generated and written there: rerunning after
    adding a device must not change the password the running hub uses.
    """
    if not is_valid_device_id(hub_user):
        raise ConfigError("--hub-user", hub_user, "must be 1-64 of A-Z a-z 0-9 _ . -")
    if any(device.id == hub_user for device in settings.devices):
        raise ConfigError("--hub-user", hub_user, "is also a device id in [[devices]]")
    given = None
    if hub_password_file is not None:
        given = read_secret(hub_password_file, "--hub-password-file")
    users, skipped = device_users(settings.devices)
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    own = out_dir / HUB_PASSWORD
    written: list[Path] = []
    removed: list[Path] = []
    generated = False
    if given is not None and hub_password_file is not None:
        hub_password, password_path = given, hub_password_file
        if own.exists() and not own.samefile(hub_password_file):
            # Generated by an earlier run, it no longer matches the broker: leaving
            # it would invite configuring the hub with a password that fails.
            own.unlink()
            removed.append(own)
    elif own.exists():
        hub_password, password_path = read_secret(own, str(own)), own
    else:
        # URL-safe, so that it goes into mqtt.url without percent-encoding.
        hub_password, password_path = secrets.token_urlsafe(32), own
        generated = True
        _write(own, hub_password + "\n", 0o600)
        written.append(own)
    bridge_users = []
    for bridge in bridges_of(settings.mqtt.sources):
        if any(device.id == bridge for device in settings.devices):
            raise ConfigError("[[devices]]", bridge, f"is the {bridge} bridge's broker user")
        path = out_dir / f"{bridge}-password"
        if path.exists():
            password = read_secret(path, str(path))
        else:
            password = secrets.token_urlsafe(32)
            _write(path, password + "\n", 0o600)
            written.append(path)
        bridge_users.append(BrokerUser(bridge, password))
    all_users = [BrokerUser(hub_user, hub_password), *users, *bridge_users]
    acl = acl_text(settings.mqtt.topic_prefix, hub_user, settings.mqtt.sources)
    for name, text, mode in (
        (PASSWD, passwd_text(all_users), 0o600),
        (ACL, acl, 0o644),
        (CONF, conf_text(settings, out_dir), 0o644),
    ):
        _write(out_dir / name, text, mode)
        written.append(out_dir / name)
    return BrokerFiles(
        written=tuple(written),
        users=tuple(user.name for user in all_users),
        skipped=tuple(skipped),
        hub_user=hub_user,
        hub_password_file=password_path,
        hub_password_generated=generated,
        removed=tuple(removed),
    )


def _write(path: Path, text: str, mode: int) -> None:
    """Write to a fresh file and rename it over `path`: a broker reloading on
    SIGHUP never reads half a file, and a secret is never readable by others,
    not even for the moment between create and chmod."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), mode)  # exact, whatever the umask
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
