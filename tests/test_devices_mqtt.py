"""A device on MQTT against a real Mosquitto: what a subscriber sees."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt
import orjson
import pytest

from devices import Device, LinkError, MqttLink, Reading, SetupError, parse_broker_url
from tests.brokers import Mosquitto, free_port
from tests.hubs import wait_until
from tests.proxies import TcpProxy


@asynccontextmanager
async def subscriber(url: str, *topics: str) -> AsyncIterator[aiomqtt.Client]:
    address = parse_broker_url(url)
    async with aiomqtt.Client(address.host, address.port) as client:
        for topic in topics:
            await client.subscribe(topic, qos=1)
        yield client


async def next_message(client: aiomqtt.Client) -> aiomqtt.Message:
    async with asyncio.timeout(5):
        return await anext(client.messages)


def json_of(message: aiomqtt.Message) -> Any:
    assert isinstance(message.payload, bytes)
    return orjson.loads(message.payload)


async def retained_status(url: str, device_id: str) -> tuple[bytes, bool]:
    """What a newcomer subscribing to the status topic is told."""
    async with subscriber(url, f"devices/{device_id}/status") as client:
        message = await next_message(client)
        assert isinstance(message.payload, bytes)
        return message.payload, message.retain


async def test_subscriber_sees_envelopes_with_time_and_increasing_seq(
    mosquitto: Mosquitto,
) -> None:
    async with (
        subscriber(mosquitto.url, "devices/env-1/telemetry") as sub,
        Device("env-1", MqttLink("env-1", mosquitto.url)) as device,
    ):
        before_ms = int(time.time() * 1000)
        for temperature in (21.5, 21.6, 21.7):
            result = await device.send(
                {"temperature": temperature, "pressure": {"value": 1013.2, "unit": "hPa"}}
            )
            assert result.ok
        envelopes = [json_of(await next_message(sub)) for _ in range(3)]
    after_ms = int(time.time() * 1000)
    assert [e["values"]["temperature"] for e in envelopes] == [21.5, 21.6, 21.7]
    assert envelopes[0]["values"]["pressure"] == {"value": 1013.2, "unit": "hPa"}
    for envelope in envelopes:
        assert isinstance(envelope["ts"], int)
        assert before_ms <= envelope["ts"] <= after_ms
    seqs = [e["seq"] for e in envelopes]
    assert seqs == list(range(seqs[0], seqs[0] + 3))
    # The counter starts at the device's start time in ms (see Device).
    assert before_ms - 5000 <= seqs[0] <= before_ms


async def test_a_batch_arrives_as_one_json_array(mosquitto: Mosquitto) -> None:
    async with (
        subscriber(mosquitto.url, "devices/batch-1/telemetry") as sub,
        Device("batch-1", MqttLink("batch-1", mosquitto.url)) as device,
    ):
        kept = [device.envelope({"temperature": 20.0 + i}) for i in range(3)]
        assert (await device.send_batch(kept)).ok
        payload = json_of(await next_message(sub))
    assert payload == kept


async def test_status_is_online_while_connected_and_offline_after_close(
    mosquitto: Mosquitto,
) -> None:
    link = MqttLink("presence-1", mosquitto.url)
    await link.connect()
    assert link.connected
    assert await retained_status(mosquitto.url, "presence-1") == (b"online", True)
    await link.close()
    assert not link.connected
    assert await retained_status(mosquitto.url, "presence-1") == (b"offline", True)
    await link.close()  # twice is fine


async def test_the_last_will_says_offline_when_the_connection_dies(mosquitto: Mosquitto) -> None:
    async with (
        TcpProxy(mosquitto.port) as proxy,
        subscriber(mosquitto.url, "devices/will-1/status") as sub,
    ):
        link = MqttLink("will-1", proxy.url)
        await link.connect()
        assert (await next_message(sub)).payload == b"online"
        proxy.cut()
        will = await next_message(sub)
        assert (will.payload, str(will.topic)) == (b"offline", "devices/will-1/status")
        # The device learns it too, and a send says so instead of hanging.
        async with asyncio.timeout(5):
            while link.connected:  # noqa: ASYNC110 - a property is all a link shows
                await asyncio.sleep(0.01)
        with pytest.raises(LinkError) as caught:
            await link.send({"temperature": 1.0})
        assert (caught.value.transport, caught.value.operation) == ("mqtt", "send")
        # Reconnecting is the caller's decision, and works.
        await link.connect()
        assert (await next_message(sub)).payload == b"online"
        await link.close()
        assert (await next_message(sub)).payload == b"offline"


async def test_a_send_in_flight_fails_at_once_when_the_connection_drops(
    mosquitto: Mosquitto,
) -> None:
    async with TcpProxy(mosquitto.port) as proxy:
        link = MqttLink("inflight-1", proxy.url, timeout=30.0)
        await link.connect()
        proxy.downstream.clear()  # the PUBACK will not come back
        before = proxy.relayed_up
        send = asyncio.create_task(link.send({"temperature": 1.0}))
        await wait_until(lambda: proxy.relayed_up > before, 5, "the PUBLISH at the broker")
        assert not send.done()
        started = time.monotonic()
        proxy.cut()
        with pytest.raises(LinkError, match="connection lost"):
            await send
        assert time.monotonic() - started < 5  # not the 30 s timeout
        await link.close()


async def test_a_send_without_acknowledgement_times_out(mosquitto: Mosquitto) -> None:
    async with TcpProxy(mosquitto.port) as proxy:
        link = MqttLink("slow-1", proxy.url, timeout=0.5)
        await link.connect()
        proxy.downstream.clear()
        with pytest.raises(LinkError, match=r"no acknowledgement within 0\.5 s"):
            await link.send(b'{"temperature": 1}')
        proxy.downstream.set()
        await link.close()


async def test_connecting_to_no_broker_is_a_link_error() -> None:
    link = MqttLink("nobody-1", f"mqtt://127.0.0.1:{free_port()}")
    with pytest.raises(LinkError) as caught:
        await link.connect()
    assert (caught.value.device_id, caught.value.operation) == ("nobody-1", "connect")
    assert caught.value.__cause__ is not None
    assert not link.connected
    with pytest.raises(LinkError, match="not connected"):
        await link.send({"temperature": 1.0})


async def test_the_device_seq_survives_a_restart() -> None:
    now = [1_764_000_000.0]
    link = MqttLink("restart-1", "mqtt://127.0.0.1")
    first_run = Device("restart-1", link, clock=lambda: now[0])
    last = [first_run.envelope({"x": 1.0})["seq"] for _ in range(900)][-1]
    now[0] += 1.0  # restarted one second later, having sent 900 messages
    second_run = Device("restart-1", link, clock=lambda: now[0])
    assert second_run.envelope({"x": 1.0})["seq"] > last


def test_an_envelope_is_the_contracts_shape() -> None:
    device = Device("shape-1", MqttLink("shape-1", "mqtt://h"), clock=lambda: 1764138000.1234)
    values: dict[str, Reading] = {
        "temperature": 21.5,
        "door": True,
        "firmware": "1.2",
        "pressure": {"value": 1013.2, "unit": "hPa"},
    }
    envelope = device.envelope(values)
    assert envelope == {"ts": 1764138000123, "seq": 1764138000123, "values": values}
    assert device.envelope({}, ts_ms=5)["ts"] == 5
    assert device.next_seq == 1764138000125


@pytest.mark.parametrize("device_id", ["", "has space", "slash/y", "x" * 65, "plus+"])
def test_device_ids_outside_the_contract_are_refused(device_id: str) -> None:
    with pytest.raises(SetupError, match="device_id"):
        MqttLink(device_id, "mqtt://127.0.0.1")


def test_a_device_and_its_link_must_agree_on_the_id() -> None:
    with pytest.raises(SetupError, match="link"):
        Device("one", MqttLink("other", "mqtt://127.0.0.1"))


@pytest.mark.parametrize(
    ("url", "host", "port", "username", "password", "tls"),
    [
        ("mqtt://127.0.0.1", "127.0.0.1", 1883, None, None, False),
        ("mqtt://broker:1884", "broker", 1884, None, None, False),
        ("mqtts://broker", "broker", 8883, None, None, True),
        ("mqtt://dev%40home:p%3Ass@broker:1", "broker", 1, "dev@home", "p:ss", False),
    ],
)
def test_broker_urls(
    url: str, host: str, port: int, username: str | None, password: str | None, tls: bool
) -> None:
    address = parse_broker_url(url)
    assert (address.host, address.port, address.username, address.password, address.tls) == (
        host,
        port,
        username,
        password,
        tls,
    )


@pytest.mark.parametrize("url", ["http://broker", "broker:1883", "mqtt://", "mqtt://h:99999"])
def test_bad_broker_urls_name_the_url(url: str) -> None:
    with pytest.raises(SetupError, match="url"):
        parse_broker_url(url)
