"""Commands over MQTT against a real Mosquitto, with aiomqtt playing the hub.

The hub publishes `{"id", "name", "args"}` to `devices/{id}/commands` and
reads the reply on `devices/{id}/replies`, as the contract says.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt
import orjson
import pytest

from devices import Buffering, CommandStats, Device, MqttLink
from devices.sim import main
from tests.brokers import Mosquitto

_ids = itertools.count(1)


class HubRole:
    """What the hub does with commands: publish them, and match replies by id."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.replies: list[tuple[str, int, Any]] = []  # topic, QoS, payload
        self.online: dict[str, int] = {}  # device id -> times it said online
        self.telemetry_ts: list[int] = []
        self._arrived = asyncio.Condition()

    async def listen(self) -> None:
        async for message in self.client.messages:
            assert isinstance(message.payload, bytes)
            _, device_id, kind = str(message.topic).split("/")
            if kind == "replies":
                self.replies.append(
                    (str(message.topic), message.qos, orjson.loads(message.payload))
                )
            elif kind == "status" and message.payload == b"online":
                self.online[device_id] = self.online.get(device_id, 0) + 1
            elif kind == "telemetry":
                self.telemetry_ts.append(orjson.loads(message.payload)["ts"])
            async with self._arrived:
                self._arrived.notify_all()

    async def wait_online(self, device_id: str, times: int = 1) -> None:
        async with asyncio.timeout(5), self._arrived:
            await self._arrived.wait_for(lambda: self.online.get(device_id, 0) >= times)

    async def publish(self, device_id: str, payload: bytes, *, retain: bool = False) -> None:
        await self.client.publish(f"devices/{device_id}/commands", payload, qos=1, retain=retain)

    async def send(self, device_id: str, name: str, args: Any = None) -> str:
        command_id = f"c{next(_ids)}"
        command = {"id": command_id, "name": name, "args": {} if args is None else args}
        await self.publish(device_id, orjson.dumps(command))
        return command_id

    async def reply(self, command_id: str, within: float = 5.0) -> Any:
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: self._find(command_id) is not None)
        return self._find(command_id)

    async def call(self, device_id: str, name: str, args: Any = None) -> Any:
        return await self.reply(await self.send(device_id, name, args))

    def _find(self, command_id: str) -> Any:
        for _, _, reply in self.replies:
            if reply.get("id") == command_id:
                return reply
        return None


@asynccontextmanager
async def hub_role(broker: Mosquitto) -> AsyncIterator[HubRole]:
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        for kind in ("replies", "status", "telemetry"):
            await client.subscribe(f"devices/+/{kind}", qos=1)
        hub = HubRole(client)
        task = asyncio.create_task(hub.listen())
        try:
            yield hub
        finally:
            task.cancel()
            await asyncio.wait([task])


async def explode(args: dict[str, Any]) -> None:
    raise RuntimeError("sensor on fire")


async def test_ping_is_answered_on_the_replies_topic_at_qos_1(mosquitto: Mosquitto) -> None:
    async with (
        hub_role(mosquitto) as hub,
        Device("cmd-1", MqttLink("cmd-1", mosquitto.url)) as device,
    ):
        await hub.wait_online("cmd-1")
        before = int(time.time() * 1000)
        command_id = await hub.send("cmd-1", "ping")
        reply = await hub.reply(command_id)
        assert device.link.listening  # type: ignore[attr-defined]
    assert reply == {
        "id": command_id,
        "ok": True,
        "result": {"pong": True, "ts": reply["result"]["ts"]},
    }
    assert before <= reply["result"]["ts"] <= int(time.time() * 1000)
    assert hub.replies[0][:2] == ("devices/cmd-1/replies", 1)


async def test_unknown_and_failing_commands_are_errors_and_the_device_carries_on(
    mosquitto: Mosquitto,
) -> None:
    device = Device("cmd-2", MqttLink("cmd-2", mosquitto.url))
    device.commands.register("explode", explode)
    async with hub_role(mosquitto) as hub, device:
        await hub.wait_online("cmd-2")
        unknown = await hub.call("cmd-2", "reboot")
        failed = await hub.call("cmd-2", "explode", {"now": True})
        still_there = await hub.call("cmd-2", "ping")
        assert (await device.send({"temperature": 21.5})).ok
    assert unknown == {"id": unknown["id"], "ok": False, "error": "unknown command: reboot"}
    assert failed == {"id": failed["id"], "ok": False, "error": "sensor on fire"}
    assert still_there["ok"] is True
    assert device.commands.stats == CommandStats(answered=3, failed=2, ignored=0)


async def test_malformed_commands_are_answered_only_when_they_carry_an_id(
    mosquitto: Mosquitto,
) -> None:
    async with (
        hub_role(mosquitto) as hub,
        Device("cmd-3", MqttLink("cmd-3", mosquitto.url)) as device,
    ):
        await hub.wait_online("cmd-3")
        for payload in (
            b"{not json",
            b'{"name": "ping", "args": {}}',
            b'{"id": "m1", "args": {}}',
            b'{"id": "m2", "name": "ping", "args": [1]}',
            b"",
        ):
            await hub.publish("cmd-3", payload)
        last = await hub.call("cmd-3", "ping")  # published last, so answered last
    assert [reply for _, _, reply in hub.replies] == [
        {"id": "m1", "ok": False, "error": "malformed command: name must be a non-empty string"},
        {"id": "m2", "ok": False, "error": "malformed command: args must be a JSON object"},
        last,
    ]
    assert device.commands.stats == CommandStats(answered=3, failed=2, ignored=3)


async def test_only_commands_sent_while_connected_are_answered(mosquitto: Mosquitto) -> None:
    link = MqttLink("cmd-4", mosquitto.url)
    device = Device("cmd-4", link)
    async with hub_role(mosquitto) as hub:
        await device.connect()
        await hub.wait_online("cmd-4")
        await device.close()
        # Clean sessions: the broker keeps nothing for an offline device...
        stale = await hub.send("cmd-4", "ping")
        # ... and a retained command, replayed at every subscribe, is ignored.
        await hub.publish("cmd-4", b'{"id": "retained", "name": "ping"}', retain=True)
        await device.connect()  # subscribes again
        await hub.wait_online("cmd-4", times=2)
        # the retained command came first, at the subscribe: a reply to it
        # would have come before this one
        fresh = await hub.call("cmd-4", "ping")
        await device.close()
    assert [reply["id"] for _, _, reply in hub.replies] == [fresh["id"]]
    assert stale != fresh["id"]


async def test_commands_are_answered_again_after_the_broker_restarts(
    mosquitto: Mosquitto,
) -> None:
    buffering = Buffering(reconnect_min=0.05, reconnect_max=0.2, watch_interval=0.05)
    device = Device("cmd-5", MqttLink("cmd-5", mosquitto.url), buffer=buffering)
    async with device:
        async with hub_role(mosquitto) as hub:
            await hub.wait_online("cmd-5")
            assert (await hub.call("cmd-5", "ping"))["ok"]
        await asyncio.to_thread(mosquitto.stop)
        await asyncio.to_thread(mosquitto.start)
        async with hub_role(mosquitto) as hub:
            # `online` comes after the new subscription: the hub's cue.
            await hub.wait_online("cmd-5")
            assert (await hub.call("cmd-5", "ping"))["ok"]


def summary_fields(stdout: str) -> dict[str, float]:
    line = stdout.strip().splitlines()[-1]
    return {key: float(value) for key, value in re.findall(r"(\w+)=([\d.]+)", line)}


def count_between(timestamps: list[int], start: float, end: float) -> int:
    return sum(1 for ts in timestamps if start * 1000 <= ts < end * 1000)


async def test_set_rate_changes_the_simulators_rate(
    mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--broker", mosquitto.url, "--quiet", "--devices", "1", "--rate", "10"]
    argv += ["--duration", "4", "--id-prefix", "rate"]
    window = 1.2
    async with hub_role(mosquitto) as hub:
        sim = asyncio.create_task(asyncio.to_thread(main, argv))
        await hub.wait_online("rate-000")
        start = time.time()
        await asyncio.sleep(window)  # a window of telemetry to count at the first rate
        initial = await hub.call("rate-000", "get_rate")
        refusals = [
            await hub.call("rate-000", "set_rate", args)
            for args in (
                {"rate": 0},
                {"rate": -5},
                {"rate": 10_001},
                {"rate": "fast"},
                {"rate": True},
                {},
            )
        ]
        changed = await hub.call("rate-000", "set_rate", {"rate": 50})
        after = time.time()
        await asyncio.sleep(window)  # ... and one at the new rate
        assert (await hub.call("rate-000", "get_rate"))["result"] == {"rate": 50.0}
        status = await sim
    before_count = count_between(hub.telemetry_ts, start, start + window)
    after_count = count_between(hub.telemetry_ts, after, after + window)
    assert before_count == pytest.approx(10 * window, abs=3)
    assert after_count == pytest.approx(50 * window, abs=8)
    assert initial == {"id": initial["id"], "ok": True, "result": {"rate": 10.0}}
    assert changed == {"id": changed["id"], "ok": True, "result": {"rate": 50.0}}
    for refusal in refusals:
        assert refusal["ok"] is False
        assert refusal["error"].startswith("rate must be a number > 0 and <= 10000")
    assert status == 0
    result = summary_fields(capsys.readouterr().out)
    assert list(result)[-1] == "commands"  # appended; the rest keep their order
    assert result["commands"] == 1 + 6 + 1 + 1
    assert result["sent"] == result["acknowledged"]
