"""The hub's MQTT connection against a real Mosquitto: flow control on its
side of the socket."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import aiomqtt
import pytest

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


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_acknowledged_messages_are_not_delivered_again_and_the_rest_are(
    mosquitto: Mosquitto, protocol: str
) -> None:
    """Acks of a batch go out as one write; the broker must take every one of
    them: after a reconnect on the same session it delivers again exactly the
    messages that were not acknowledged."""
    settings = replace(
        MqttSettings(),
        url=mosquitto.url,
        client_id=f"acks-{protocol}",
        protocol=protocol,  # type: ignore[arg-type]
        receive_maximum=100,
    )
    topics = [("devices/+/telemetry", 1)]

    async def take(connection: MqttConnection, count: int, ack: int = 0) -> list[MqttMessage]:
        """`count` messages, acknowledging the first `ack` of them as they come
        (Mosquitto keeps at most 20 unacknowledged in flight on MQTT 3.1.1)."""
        received: list[MqttMessage] = []
        while len(received) < count:
            batch = await asyncio.wait_for(connection.receive(count - len(received)), 5)
            connection.ack(batch[: max(0, ack - len(received))])
            received.extend(batch)
        return received

    first = MqttConnection(settings, topics)
    async with first:
        await asyncio.wait_for(first.wait_connected(), 10)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="acked") as device:
            for i in range(60):
                await device.publish("devices/acked/telemetry", str(i), qos=1)
        received = await take(first, 60, ack=40)
        assert [m.payload for m in received] == [str(i).encode() for i in range(60)]
        await asyncio.sleep(0.5)  # the acks reach the broker before the goodbye

    again = MqttConnection(settings, topics)
    async with again:
        await asyncio.wait_for(again.wait_connected(), 10)
        redelivered = await take(again, 20, ack=20)
        assert [m.payload for m in redelivered] == [str(i).encode() for i in range(40, 60)]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(again.receive(1), 1.0)
