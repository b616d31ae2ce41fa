"""The hub's MQTT connection against a real Mosquitto: flow control on its
side of the socket."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from dataclasses import replace

import aiomqtt
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hub.config import MqttSettings
from hub.mqtt import READ_CHUNK, MqttConnection, MqttMessage, fast_path_problem, read_publishes
from tests.brokers import Mosquitto

# Every test against the broker runs on the fast path and on paho's public API.
PATHS = pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "public"])


async def receive_until(connection: MqttConnection, last: bytes) -> list[bytes]:
    """Payloads received up to and including `last`, acknowledging them."""
    payloads: list[bytes] = []
    while last not in payloads:
        batch = await asyncio.wait_for(connection.receive(1000), 5)
        connection.ack(batch)
        payloads.extend(m.payload for m in batch)
    return payloads


def publish_packet(
    topic: bytes, payload: bytes, qos: int, mid: int = 0, v5: bool = True, properties: bytes = b""
) -> bytes:
    """A PUBLISH packet as a broker sends it."""
    body = struct.pack("!H", len(topic)) + topic
    body += struct.pack("!H", mid) if qos else b""
    body += bytes([len(properties)]) + properties if v5 else b""
    body += payload
    length, size = b"", len(body)
    while True:  # the remaining length: 7 bits a byte, low first
        size, low = divmod(size, 128)
        length += bytes([low | (0x80 if size else 0)])
        if not size:
            break
    return bytes([0x30 | qos << 1]) + length + body


def test_publishes_are_read_up_to_the_first_packet_that_is_not_one() -> None:
    first = publish_packet(b"devices/a/telemetry", b'{"t": 1}', 1, mid=7)
    second = publish_packet(b"devices/b/telemetry", b"x" * 300, 0)  # two length bytes
    puback = bytes([0x40, 2, 0, 9])
    data = b"junk" + first + second + puback + first
    publishes, at = read_publishes(data, 4, True, 100)
    assert publishes == [
        (b"devices/a/telemetry", b'{"t": 1}', 1, False, 7),
        (b"devices/b/telemetry", b"x" * 300, 0, False, 0),
    ]
    assert data[at:] == puback + first  # paho reads the PUBACK, then the fast path goes on


@pytest.mark.parametrize(
    "packet",
    [
        publish_packet(b"devices/a/telemetry", b"{}", 2, mid=3),  # QoS 2: paho's handshake
        # MQTT 5 properties (a user property "k": "v"): paho decodes them
        publish_packet(
            b"devices/a/telemetry", b"{}", 1, mid=3, properties=b"\x26\x00\x01k\x00\x01v"
        ),
        publish_packet(b"", b"{}", 1, mid=3),  # an empty topic: a topic alias
    ],
    ids=["qos2", "properties", "alias"],
)
def test_publishes_the_fast_path_cannot_read_are_left_to_paho(packet: bytes) -> None:
    good = publish_packet(b"devices/a/telemetry", b"{}", 0)
    publishes, at = read_publishes(good + packet + good, 0, True, 100)
    assert len(publishes) == 1
    assert at == len(good)


def test_a_packet_cut_by_the_end_of_the_buffer_is_left_for_the_next_read() -> None:
    whole = publish_packet(b"devices/a/telemetry", b"y" * 20_000, 1, mid=1)  # 3 length bytes
    for cut in (1, 2, 3, 100, len(whole) - 1):
        publishes, at = read_publishes(whole + whole[:cut], 0, True, 100)
        assert len(publishes) == 1
        assert at == len(whole)


def test_no_more_publishes_than_asked_for_are_read() -> None:
    packet = publish_packet(b"devices/a/telemetry", b"{}", 0, v5=False)
    publishes, at = read_publishes(packet * 10, 0, False, 4)
    assert len(publishes) == 4
    assert at == 4 * len(packet)


@pytest.fixture
def fresh_check() -> Iterator[None]:
    fast_path_problem.cache_clear()
    yield
    fast_path_problem.cache_clear()


@pytest.mark.unit
def test_the_fast_path_works_on_the_installed_paho(fresh_check: None) -> None:
    assert fast_path_problem() is None


def _no_queue(self: paho.Client, *args: object) -> MQTTErrorCode:
    return MQTTErrorCode.MQTT_ERR_SUCCESS  # a changed internal that loses PUBACKs quietly


def _no_close(self: paho.Client) -> None:
    pass


@pytest.mark.unit
@pytest.mark.parametrize(
    ("internal", "replacement", "named"),
    [
        ("_send_puback", None, "_send_puback"),  # renamed
        ("_packet_queue", _no_queue, "_packet_queue"),  # queues elsewhere: acks lost
        ("_sock_close", _no_close, "_sock_close"),  # no longer closes
    ],
)
def test_a_changed_internal_turns_the_fast_path_off(
    fresh_check: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    internal: str,
    replacement: object,
    named: str,
) -> None:
    if replacement is None:
        monkeypatch.delattr(paho.Client, internal)
    else:
        monkeypatch.setattr(paho.Client, internal, replacement)
    problem = fast_path_problem()
    assert problem is not None
    assert named in problem
    connection = MqttConnection(MqttSettings(), [("devices/+/telemetry", 1)])
    assert not connection.fast_path
    assert type(connection._client) is paho.Client
    assert "using its public API" in caplog.text
    assert named in caplog.text


@PATHS
async def test_messages_read_before_a_pause_come_out_after_it_without_new_traffic(
    mosquitto: Mosquitto, fast_path: bool
) -> None:
    """The connection reads the socket 64 KiB at a time and stops taking
    messages past its high-water mark. What it had read but not parsed when
    it paused must come out when it resumes, not wait for the broker's next
    packet (the keepalive is a minute away here)."""
    settings = replace(MqttSettings(), url=mosquitto.url, client_id="paused", keepalive=60)
    connection = MqttConnection(
        settings, [("devices/+/telemetry", 1)], high_water=10, fast_path=fast_path
    )
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


@PATHS
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_acknowledged_messages_are_not_delivered_again_and_the_rest_are(
    mosquitto: Mosquitto, protocol: str, fast_path: bool
) -> None:
    """Acks of a batch go out as one write; the broker must take every one of
    them: after a reconnect on the same session it delivers again exactly the
    messages that were not acknowledged."""
    settings = replace(
        MqttSettings(),
        url=mosquitto.url,
        client_id=f"acks-{protocol}-{fast_path}",
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

    first = MqttConnection(settings, topics, fast_path=fast_path)
    async with first:
        await asyncio.wait_for(first.wait_connected(), 10)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="acked") as device:
            for i in range(60):
                await device.publish("devices/acked/telemetry", str(i), qos=1)
        received = await take(first, 60, ack=40)
        assert [m.payload for m in received] == [str(i).encode() for i in range(60)]
    # (closing writes the pending acks before it says goodbye)

    again = MqttConnection(settings, topics, fast_path=fast_path)
    async with again:
        await asyncio.wait_for(again.wait_connected(), 10)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="acked") as device:
            await device.publish("devices/acked/telemetry", b"end", qos=1)
        # what was not acknowledged comes again, before the message sent since
        redelivered = await receive_until(again, b"end")
        assert redelivered == [str(i).encode() for i in range(40, 60)] + [b"end"]


@PATHS
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_burst_of_every_kind_of_publish_arrives_whole_and_in_order(
    mosquitto: Mosquitto, protocol: str, fast_path: bool
) -> None:
    """Most PUBLISH packets are parsed straight from the read buffer and the
    rest by paho: QoS 2, MQTT 5 properties, and packets that a 64 KiB read
    cut in two. Together they must deliver every message, in order."""
    settings = replace(
        MqttSettings(),
        url=mosquitto.url,
        client_id=f"burst-{protocol}-{fast_path}",
        protocol=protocol,  # type: ignore[arg-type]
        ack="on_receipt",
    )
    v5 = protocol == "5"
    connection = MqttConnection(settings, [("devices/+/telemetry", 2)], fast_path=fast_path)
    sizes = [0, 1, 60, 300, 20_000, READ_CHUNK + 10, 3 * READ_CHUNK]
    sent: dict[int, list[bytes]] = {0: [], 1: [], 2: []}
    async with connection:
        await asyncio.wait_for(connection.wait_connected(), 10)
        version = aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311
        async with aiomqtt.Client(
            "127.0.0.1", mosquitto.port, identifier="kinds", protocol=version
        ) as device:
            for i in range(600):
                qos = i % 3
                payload = f"{i}:".encode() + b"p" * sizes[i % len(sizes)]
                properties = None
                if v5 and i % 7 == 0:
                    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                    properties.UserProperty = ("n", str(i))
                await device.publish(
                    f"devices/qos{qos}/telemetry", payload, qos=qos, properties=properties
                )
                sent[qos].append(payload)
        received: list[MqttMessage] = []
        while len(received) < 600:
            received.extend(await asyncio.wait_for(connection.receive(1000), 10))
    # The broker keeps order per topic; the three QoS each have their own.
    for qos in (0, 1, 2):
        mine = [m for m in received if m.topic == f"devices/qos{qos}/telemetry"]
        assert [m.payload for m in mine] == sent[qos]
        assert {m.qos for m in mine} == {qos}


@PATHS
async def test_messages_acknowledged_on_receipt_are_not_delivered_again(
    mosquitto: Mosquitto, fast_path: bool
) -> None:
    """With `ack = on_receipt`, the fast path acknowledges the QoS 1 messages
    it parses itself: a new connection on the same session gets none again."""
    settings = replace(
        MqttSettings(), url=mosquitto.url, client_id=f"on-receipt-{fast_path}", ack="on_receipt"
    )
    topics = [("devices/+/telemetry", 1)]
    async with MqttConnection(settings, topics, fast_path=fast_path) as first:
        await asyncio.wait_for(first.wait_connected(), 10)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="device") as device:
            for i in range(500):
                await device.publish("devices/d/telemetry", str(i), qos=1)
        received: list[MqttMessage] = []
        while len(received) < 500:
            received.extend(await asyncio.wait_for(first.receive(1000), 5))
        assert [m.payload for m in received] == [str(i).encode() for i in range(500)]
    async with MqttConnection(settings, topics, fast_path=fast_path) as again:
        await asyncio.wait_for(again.wait_connected(), 10)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="device") as device:
            await device.publish("devices/d/telemetry", b"end", qos=1)
        # nothing comes again before the message sent since
        assert await receive_until(again, b"end") == [b"end"]
