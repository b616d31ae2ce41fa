"""Admin commands in the hub (`hub.commands.Commands`), in the unit tier:
routing by link, replies matched to their command and device, and every
ending recorded, against the fake store. The real links are covered by
test_commands.py (Mosquitto, Socket.IO devices)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
import pytest
import socketio

from hub.commands import MAX_REPLY_BYTES, Commands
from hub.config import CommandSettings
from hub.errors import StoreError
from hub.metrics import Metrics
from hub.presence import MQTT_LINK, Presence
from tests.fakes import FakeStore, as_store
from tests.hubs import wait_until

pytestmark = pytest.mark.unit


class MqttDevices:
    """Stands in for the broker and the devices behind it: what the hub
    publishes, and the replies they send back (through `on_mqtt_reply`)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, object]]] = []
        self.answer: Callable[[str, dict[str, object]], list[tuple[str, bytes]]] = (
            lambda topic, command: []
        )
        self.commands: Commands | None = None

    def publish(self, topic: str, payload: bytes) -> None:
        command = orjson.loads(payload)
        self.published.append((topic, command))
        assert self.commands is not None
        for device_id, reply in self.answer(topic, command):
            asyncio.get_running_loop().call_soon(self.commands.on_mqtt_reply, device_id, reply)


def make(
    ttl: float = 0.0, heard: bool = False
) -> tuple[Commands, FakeStore, MqttDevices, Presence]:
    store = FakeStore()
    presence = Presence(10_000)
    devices = MqttDevices()
    commands = Commands(
        socketio.AsyncServer(async_mode="asgi"),
        as_store(store),
        presence,
        Metrics(),
        CommandSettings(timeout=5.0, ttl=ttl),
        topic_prefix="devices",
        offline_after=10.0,
    )
    commands.mqtt_publish = devices.publish
    commands.heard_over_mqtt = lambda device_id, within: heard
    devices.commands = commands
    return commands, store, devices, presence


def reply(command: dict[str, object], **fields: object) -> bytes:
    return orjson.dumps({"id": command["id"], **fields})


async def test_a_command_to_an_mqtt_device_gets_its_reply_and_is_recorded() -> None:
    commands, store, devices, presence = make()
    presence.link_up("dev-1", MQTT_LINK, 0)
    devices.answer = lambda topic, command: [("dev-1", reply(command, ok=True, result={"rate": 5}))]
    answer = await commands.send("dev-1", "set_rate", {"rate": 5}, within=5)
    assert answer["ok"] is True
    assert answer["result"] == {"rate": 5}
    [(topic, command)] = devices.published
    assert topic == "devices/dev-1/commands"
    assert command == {"id": answer["id"], "name": "set_rate", "args": {"rate": 5}}
    [record] = store.command_records
    assert (record.id, record.device_id, record.link, record.outcome) == (
        answer["id"],
        "dev-1",
        "mqtt",
        "ok",
    )
    assert orjson.loads(record.reply or "null")["result"] == {"rate": 5}
    assert commands.metrics.counters[("hub_commands_total", (("outcome", "ok"),))] == 1


async def test_a_device_heard_lately_over_mqtt_is_reachable_without_a_status() -> None:
    commands, _, devices, _ = make(heard=True)
    devices.answer = lambda topic, command: [("dev-2", reply(command, ok=False, error="busy"))]
    answer = await commands.send("dev-2", "reboot", {}, within=5)
    assert answer == {"ok": False, "error": "busy", "id": answer["id"]}


async def test_a_reply_from_another_device_or_malformed_is_not_taken() -> None:
    commands, store, devices, presence = make()
    presence.link_up("dev-1", MQTT_LINK, 0)
    devices.answer = lambda topic, command: [
        ("intruder", reply(command, ok=True, result="forged")),
        ("dev-1", b"{not json"),
        ("dev-1", b'{"id": "' + b"x" * MAX_REPLY_BYTES + b'"}'),
        ("dev-1", reply(command, ok=True, result="mine")),
    ]
    answer = await commands.send("dev-1", "ping", {}, within=5)
    assert answer["result"] == "mine"
    assert commands.metrics.counters[("hub_command_replies_unmatched_total", ())] == 3
    assert store.command_records[0].outcome == "ok"


async def test_a_reply_that_is_not_a_reply_object_is_refused() -> None:
    commands, store, devices, presence = make()
    presence.link_up("dev-1", MQTT_LINK, 0)
    devices.answer = lambda topic, command: [("dev-1", reply(command, result="no ok field"))]
    answer = await commands.send("dev-1", "ping", {}, within=5)
    assert answer["ok"] is False
    assert "not a reply object" in answer["error"]
    assert store.command_records[0].outcome == "invalid_reply"


async def test_a_device_that_does_not_answer_in_time_is_a_timeout() -> None:
    commands, store, _, presence = make()
    presence.link_up("dev-1", MQTT_LINK, 0)
    answer = await commands.send("dev-1", "ping", {}, within=0.05)
    assert answer == {"ok": False, "error": "timeout", "id": answer["id"]}
    assert store.command_records[0].outcome == "timeout"
    # a reply after the timeout finds nothing waiting for it
    commands.on_mqtt_reply("dev-1", orjson.dumps({"id": answer["id"], "ok": True}))
    assert commands.metrics.counters[("hub_command_replies_unmatched_total", ())] == 1


async def test_a_device_on_no_link_is_offline_at_once() -> None:
    commands, store, devices, _ = make()
    answer = await commands.send("nowhere", "ping", {}, within=5)
    assert answer == {"ok": False, "error": "offline", "id": answer["id"]}
    assert devices.published == []
    [record] = store.command_records
    assert (record.link, record.outcome) == (None, "offline")


async def test_with_a_ttl_a_command_waits_for_its_device_to_come_online() -> None:
    commands, store, devices, presence = make(ttl=5.0)
    devices.answer = lambda topic, command: [("late", reply(command, ok=True))]
    sending = asyncio.create_task(commands.send("late", "ping", {}, within=5))
    await wait_until(lambda: commands.in_flight == 1)  # waiting for a link
    assert not sending.done()
    presence.link_up("late", MQTT_LINK, 0)
    answer = await asyncio.wait_for(sending, 5)
    assert answer["ok"] is True
    assert store.command_records[0].link == "mqtt"


async def test_a_record_the_store_refuses_does_not_fail_the_command() -> None:
    commands, store, devices, presence = make()
    presence.link_up("dev-1", MQTT_LINK, 0)
    devices.answer = lambda topic, command: [("dev-1", reply(command, ok=True))]

    async def refuse(record: object) -> None:
        raise StoreError("record_command", "disk full")

    store.record_command = refuse  # type: ignore[method-assign]
    answer = await commands.send("dev-1", "ping", {}, within=5)
    assert answer["ok"] is True


@pytest.mark.parametrize(
    ("timeout_ms", "seconds"),
    [(None, 5.0), (True, 5.0), ("100", 5.0), (250, 0.25), (0, 0.001), (10**9, 300.0)],
)
def test_the_timeout_an_admin_gives_is_bounded(timeout_ms: object, seconds: float) -> None:
    commands, *_ = make()
    assert commands.timeout_of(timeout_ms) == seconds
