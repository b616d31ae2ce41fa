"""Admin commands reach devices over Socket.IO and MQTT, come back with the
device's reply, time out, say offline, and are recorded."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import aiomqtt
import socketio

from devices import Device, MqttLink, SocketIOLink
from hub.config import AuthSettings, CommandSettings, Settings
from hub.presence import MQTT_LINK
from tests.brokers import Mosquitto
from tests.hubs import RunningHub, serve_hub, wait_until
from tests.test_e2e import publish


def with_admin(settings: Settings, **commands: float) -> Settings:
    return replace(
        settings,
        auth=AuthSettings(admin_token="adm"),
        commands=replace(CommandSettings(), **commands),
    )


@asynccontextmanager
async def admin(running: RunningHub) -> AsyncIterator[socketio.AsyncClient]:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(running.url, namespaces=["/admin"], auth={"token": "adm"})
    try:
        yield client
    finally:
        await client.disconnect()


async def command(client: socketio.AsyncClient, **request: Any) -> dict[str, Any]:
    answer: dict[str, Any] = await client.call("command", request, namespace="/admin", timeout=15)
    return answer


def recorded(settings: Settings) -> list[tuple[Any, ...]]:
    with sqlite3.connect(settings.storage.path) as db:
        return db.execute(
            "SELECT device_id, name, args, link, outcome, reply FROM commands ORDER BY sent_ms"
        ).fetchall()


@asynccontextmanager
async def socketio_device(
    running: RunningHub, device_id: str, delay: float = 0.0
) -> AsyncIterator[socketio.AsyncClient]:
    client = socketio.AsyncClient(reconnection=False)

    @client.on("command", namespace="/devices")
    async def on_command(request: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(delay)
        if request["name"] == "fail":
            return {"id": request["id"], "ok": False, "error": "cannot"}
        return {"id": request["id"], "ok": True, "result": {"echo": request["args"]}}

    await client.connect(running.url, namespaces=["/devices"], auth={"device_id": device_id})
    try:
        yield client
    finally:
        await client.disconnect()


async def test_a_command_round_trip_over_socketio(settings: Settings) -> None:
    settings = with_admin(settings)
    async with (
        serve_hub(settings) as running,
        admin(running) as client,
        socketio_device(running, "dev-s"),
    ):
        answer = await command(
            client, device_id="dev-s", name="ping", args={"x": 1}, timeout_ms=5000
        )
        assert answer == {"id": answer["id"], "ok": True, "result": {"echo": {"x": 1}}}
        failed = await command(client, device_id="dev-s", name="fail", args={})
        assert (failed["ok"], failed["error"]) == (False, "cannot")
    assert [row[:5] for row in recorded(settings)] == [
        ("dev-s", "ping", '{"x":1}', "socketio", "ok"),
        ("dev-s", "fail", "{}", "socketio", "error"),
    ]


async def online_over_mqtt(running: RunningHub, device_id: str) -> None:
    """Until the hub holds the device's MQTT link (its retained `online`)."""
    presence = running.hub.presence
    await wait_until(lambda: presence.has_link(device_id, MQTT_LINK), what=f"{device_id} online")


@asynccontextmanager
async def mqtt_device(
    broker: Mosquitto, device_id: str, delay: float = 0.0
) -> AsyncIterator[asyncio.Task[None]]:
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier=device_id) as client:
        await client.subscribe(f"devices/{device_id}/commands", qos=1)
        await client.publish(f"devices/{device_id}/status", "online", qos=1, retain=True)

        async def answer() -> None:
            async for message in client.messages:
                request = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                await asyncio.sleep(delay)
                reply = {"id": request["id"], "ok": True, "result": request["name"]}
                await client.publish(f"devices/{device_id}/replies", json.dumps(reply), qos=1)

        task = asyncio.create_task(answer())
        try:
            yield task
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_a_command_round_trip_over_mqtt_ignores_replies_from_others(
    settings: Settings, mosquitto: Mosquitto
) -> None:
    settings = with_admin(settings)
    async with (
        serve_hub(settings) as running,
        admin(running) as client,
        mqtt_device(mosquitto, "dev-m", delay=0.5),
    ):
        await online_over_mqtt(running, "dev-m")  # from its retained status

        subscribed = asyncio.Event()

        async def impostor() -> None:
            # another device that learned the command id answers first, on its topic
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as spy:
                await spy.subscribe("devices/dev-m/commands", qos=1)
                subscribed.set()
                async for message in spy.messages:
                    request = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                    fake = {"id": request["id"], "ok": True, "result": "forged"}
                    await spy.publish("devices/dev-x/replies", json.dumps(fake), qos=1)
                    return

        spying = asyncio.create_task(impostor())
        await asyncio.wait_for(subscribed.wait(), 10)
        answer = await command(client, device_id="dev-m", name="ping", timeout_ms=5000)
        await spying
        assert (answer["ok"], answer["result"]) == (True, "ping")
    assert [row[:5] for row in recorded(settings)] == [("dev-m", "ping", "{}", "mqtt", "ok")]
    assert running.hub.metrics.value("hub_command_replies_unmatched_total") == 1


async def test_a_device_that_does_not_answer_times_out(
    settings: Settings, mosquitto: Mosquitto
) -> None:
    settings = with_admin(settings)
    async with serve_hub(settings) as running, admin(running) as client:
        async with socketio_device(running, "slow-s", delay=2):
            answer = await command(client, device_id="slow-s", name="ping", timeout_ms=300)
            assert answer["error"] == "timeout"
        async with mqtt_device(mosquitto, "slow-m", delay=2):
            await online_over_mqtt(running, "slow-m")
            answer = await command(client, device_id="slow-m", name="ping", timeout_ms=300)
            assert answer["error"] == "timeout"
    assert [(row[0], row[3], row[4]) for row in recorded(settings)] == [
        ("slow-s", "socketio", "timeout"),
        ("slow-m", "mqtt", "timeout"),
    ]


async def test_an_offline_device_answers_offline_or_the_command_waits_for_it(
    settings: Settings,
) -> None:
    async with serve_hub(with_admin(settings)) as running, admin(running) as client:
        answer = await command(client, device_id="nobody", name="ping", timeout_ms=5000)
        assert answer["error"] == "offline"
        bad = await command(client, device_id="bad id!", name="ping")
        assert bad["ok"] is False
        bad = await command(client, device_id="nobody", name="ping", args=[1])
        assert bad["ok"] is False
    waiting = with_admin(
        replace(settings, storage=replace(settings.storage, path=settings.storage.path + "2")),
        ttl=5.0,
    )
    async with serve_hub(waiting) as running, admin(running) as client:
        pending = asyncio.create_task(
            command(client, device_id="late", name="ping", timeout_ms=5000)
        )
        # the command waits at the hub for its device (ttl), not answered offline
        await wait_until(lambda: running.hub.metrics.value("hub_commands_in_flight") == 1)
        assert not pending.done()
        async with socketio_device(running, "late"):
            answer = await pending
        assert answer["ok"] is True


async def test_mqtt_commands_reach_a_device_known_only_by_its_telemetry(
    settings: Settings, mosquitto: Mosquitto
) -> None:
    settings = with_admin(settings)
    async with (
        serve_hub(settings) as running,
        admin(running) as client,
        aiomqtt.Client("127.0.0.1", mosquitto.port) as device,
    ):
        await device.subscribe("devices/quiet/commands", qos=1)
        await publish(mosquitto, "devices/quiet/telemetry", b'{"n": 1}')
        assert running.hub.mqtt is not None
        mqtt = running.hub.mqtt
        await wait_until(lambda: mqtt.heard_from("quiet", 10), what="quiet heard over MQTT")
        pending = asyncio.create_task(
            command(client, device_id="quiet", name="ping", timeout_ms=3000)
        )
        async for message in device.messages:
            request = json.loads(bytes(message.payload))  # type: ignore[arg-type]
            await device.publish(
                "devices/quiet/replies", json.dumps({"id": request["id"], "ok": True}), qos=1
            )
            break
        answer = await pending
    assert answer["ok"] is True


async def test_the_device_library_answers_the_hubs_commands(
    settings: Settings, mosquitto: Mosquitto
) -> None:
    settings = with_admin(settings)
    async with serve_hub(settings) as running, admin(running) as client:
        over_mqtt = Device("lib-m", MqttLink("lib-m", mosquitto.url))
        over_socketio = Device("lib-s", SocketIOLink("lib-s", running.url))
        async with over_mqtt, over_socketio:
            await online_over_mqtt(running, "lib-m")  # its retained online status
            await wait_until(lambda: running.hub.metrics.value("hub_devices_online") >= 2)
            for device_id in ("lib-m", "lib-s"):
                answer = await command(client, device_id=device_id, name="ping", timeout_ms=5000)
                assert answer["ok"] is True, answer
                assert answer["result"]["pong"] is True
                unknown = await command(client, device_id=device_id, name="self_destruct")
                assert (unknown["ok"], unknown["error"]) == (
                    False,
                    "unknown command: self_destruct",
                )
    assert [(row[0], row[3], row[4]) for row in recorded(settings)] == [
        ("lib-m", "mqtt", "ok"),
        ("lib-m", "mqtt", "error"),
        ("lib-s", "socketio", "ok"),
        ("lib-s", "socketio", "error"),
    ]


async def test_an_admin_changes_a_simulated_devices_rate(
    settings: Settings, mosquitto: Mosquitto
) -> None:
    settings = with_admin(settings)
    async with serve_hub(settings) as running, admin(running) as client:
        sim = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "devices.sim",
            "--devices",
            "1",
            "--rate",
            "2",
            "--duration",
            "6",
            "--protocol",
            "mqtt",
            "--broker",
            mosquitto.url,
            "--metrics",
            "temperature",
            "--id-prefix",
            "rated",
            "--quiet",
            stdout=asyncio.subprocess.PIPE,
        )
        await wait_until(lambda: _count("rated-000", settings) >= 1, what="the first reading")
        answer = await command(
            client, device_id="rated-000", name="set_rate", args={"rate": 20}, timeout_ms=5000
        )
        assert answer == {"id": answer["id"], "ok": True, "result": {"rate": 20.0}}
        before = _count("rated-000", settings)
        # 20 more readings: 1 s at the new rate, 10 s at the old one (the run ends at 6 s)
        await wait_until(lambda: _count("rated-000", settings) >= before + 20, within=4.5)
        await sim.communicate()


def _count(device_id: str, settings: Settings) -> int:
    with sqlite3.connect(settings.storage.path) as db:
        (count,) = db.execute(
            "SELECT count(*) FROM readings WHERE device_id = ?", (device_id,)
        ).fetchone()
    return int(count)
