"""The hub's MQTT connection against a real Mosquitto: flow control on its
side of the socket."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import aiomqtt

from hub.config import MqttSettings
from hub.mqtt import MqttConnection, MqttMessage
from tests.brokers import Mosquitto


async def test_messages_read_before_a_pause_come_out_after_it_without_new_traffic(
    mosquitto: Mosquitto,
) -> None:
    """The connection reads the socket 64 KiB at a time and stops taking
    messages past its high-water mark. What it had read but not parsed when
    it paused must come out when it resumes, not wait for the broker's next
    packet (the keepalive is a minute away here)."""
    settings = replace(MqttSettings(), url=mosquitto.url, client_id="paused", keepalive=60)
    connection = MqttConnection(settings, [("devices/+/telemetry", 1)], high_water=10)
    async with connection:
        await asyncio.wait_for(connection.wait_connected(), 10)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="burst") as device:
            for i in range(200):
                await device.publish("devices/burst/telemetry", f'{{"n": {i}}}', qos=0)
        received: list[MqttMessage] = []
        while len(received) < 200:
            # Slowly, a few at a time: the connection pauses and resumes many times.
            batch = await asyncio.wait_for(connection.receive(3), 5)
            received.extend(batch)
            await asyncio.sleep(0.001)
        assert [m.payload for m in received] == [f'{{"n": {i}}}'.encode() for i in range(200)]
