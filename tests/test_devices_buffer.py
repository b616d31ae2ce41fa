"""Store-and-forward parts: the bounded buffer, the pacer, backoff and options
(pure), then a buffering device against a real Mosquitto: what a subscriber
sees of its flushes (batches, order, pace)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt
import orjson
import pytest

from devices import BUFFERED, Buffering, Device, MqttLink, SetupError
from devices.buffer import Buffer
from tests.brokers import Mosquitto, free_port
from tests.hubs import wait_until
from tests.proxies import TcpProxy

# -- the buffer ---------------------------------------------------------------


def test_the_buffer_keeps_order_and_hands_out_the_oldest_first() -> None:
    buffer: Buffer[int] = Buffer(10)
    for item in range(7):
        buffer.add(item)
    assert buffer.take(3) == [0, 1, 2]
    assert buffer.take(3) == [3, 4, 5]
    assert buffer.take(3) == [6]
    assert buffer.take(3) == []
    assert (len(buffer), buffer.added, buffer.dropped) == (0, 7, 0)


def test_a_full_buffer_drops_the_oldest_and_counts_each() -> None:
    buffer: Buffer[int] = Buffer(5, "drop_oldest")
    for item in range(12):
        buffer.add(item)
    assert (len(buffer), buffer.dropped, buffer.added) == (5, 7, 12)
    assert buffer.take(10) == [7, 8, 9, 10, 11]


def test_drop_newest_keeps_the_start_of_the_outage() -> None:
    buffer: Buffer[int] = Buffer(5, "drop_newest")
    for item in range(12):
        buffer.add(item)
    assert (len(buffer), buffer.dropped) == (5, 7)
    assert buffer.take(10) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("policy", "left"),
    [("drop_oldest", [3, 4, 5, 6, 7]), ("drop_newest", [0, 1, 2, 3, 4])],
)
def test_a_batch_put_back_goes_first_and_the_bound_still_holds(
    policy: Any, left: list[int]
) -> None:
    buffer: Buffer[int] = Buffer(5, policy)
    for item in range(5):
        buffer.add(item)
    batch = buffer.take(3)  # in flight: the bound no longer counts it
    for item in (5, 6, 7):
        buffer.add(item)
    assert buffer.dropped == 0
    buffer.put_back(batch)  # the send failed
    assert buffer.dropped == 3
    assert buffer.take(10) == left


def test_a_buffer_needs_room_for_one() -> None:
    with pytest.raises(SetupError, match="limit = 0"):
        Buffer(0)


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"max_envelopes": 0}, "max_envelopes"),
        ({"policy": "drop_random"}, "policy"),
        ({"batch_size": 0}, "batch_size"),
        ({"flush_rate": 0}, "flush_rate"),
        ({"flush_rate": math.nan}, "flush_rate"),
        ({"reconnect_min": 0}, "reconnect_min"),
        ({"reconnect_min": 5, "reconnect_max": 1}, "reconnect_min"),
        ({"close_timeout": -1}, "close_timeout"),
        ({"watch_interval": 0}, "watch_interval"),
    ],
)
def test_bad_buffering_options_name_the_option(options: dict[str, Any], name: str) -> None:
    with pytest.raises(SetupError) as caught:
        Buffering(**options)
    assert caught.value.name == name


# -- a buffering device on a real broker ----------------------------------------


@asynccontextmanager
async def telemetry_of(broker: Mosquitto, device_id: str) -> AsyncIterator[list[Any]]:
    """Every telemetry payload of `device_id`, as (arrival time, decoded JSON)."""
    received: list[Any] = []
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.subscribe(f"devices/{device_id}/telemetry", qos=1)

        async def listen() -> None:
            loop = asyncio.get_running_loop()
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                received.append((loop.time(), orjson.loads(message.payload)))

        task = asyncio.create_task(listen())
        try:
            yield received
        finally:
            task.cancel()
            await asyncio.wait([task])


def envelopes_in(received: list[Any]) -> list[Any]:
    """The envelopes of batches (arrays) and single sends (objects), in order."""
    return [e for _, p in received for e in (p if isinstance(p, list) else [p])]


def quick(**options: Any) -> Buffering:
    settings: dict[str, Any] = {"reconnect_min": 0.02, "reconnect_max": 0.2}
    return Buffering(**(settings | options))


async def test_a_device_that_starts_offline_flushes_in_batches_in_order(
    mosquitto: Mosquitto,
) -> None:
    device = Device(
        "buf-batches",
        MqttLink("buf-batches", mosquitto.url),
        buffer=quick(batch_size=4, flush_rate=math.inf),
    )
    async with telemetry_of(mosquitto, "buf-batches") as received:
        results = [await device.send({"temperature": float(i)}) for i in range(10)]
        assert results == [BUFFERED] * 10
        assert device.stats.buffered == 10
        await device.start()  # connects in the background, then flushes
        try:
            await wait_until(lambda: len(received) == 3, 5, "three batches")
        finally:
            assert await device.close() == 0
    batches = [payload for _, payload in received]
    assert [len(batch) for batch in batches] == [4, 4, 2]
    envelopes = [envelope for batch in batches for envelope in batch]
    first = envelopes[0]["seq"]
    assert [e["seq"] for e in envelopes] == list(range(first, first + 10))
    assert [e["values"]["temperature"] for e in envelopes] == [float(i) for i in range(10)]
    stats = device.stats
    assert (stats.buffered, stats.flushed, stats.delivered, stats.dropped) == (0, 10, 10, 0)
    assert (stats.buffered_total, stats.resent, stats.unsent) == (10, 0, 0)


async def test_a_flush_goes_at_the_rate_and_live_readings_queue_behind_it(
    mosquitto: Mosquitto,
) -> None:
    rate, batch = 100.0, 10
    device = Device(
        "buf-pace",
        MqttLink("buf-pace", mosquitto.url),
        buffer=quick(batch_size=batch, flush_rate=rate),
    )
    async with telemetry_of(mosquitto, "buf-pace") as received:
        for i in range(60):
            await device.send({"n": i})
        await device.start()
        try:
            await wait_until(lambda: bool(received), 5, "the first batch")
            # Readings made during the flush wait their turn behind it.
            live = [await device.send({"n": 60 + i}) for i in range(5)]
            await wait_until(lambda: device.stats.buffered == 0, 5, "the flush")
            after = await device.send({"n": 65})  # nothing waits now: straight through
            await wait_until(lambda: len(envelopes_in(received)) == 66, 5, "all")
        finally:
            await device.close()
    assert live == [BUFFERED] * 5
    assert after.ok
    assert not after.buffered
    payloads = [payload for _, payload in received]
    assert [e["values"]["n"] for e in envelopes_in(received)] == list(range(66))
    assert all(len(p) <= batch for p in payloads if isinstance(p, list))
    # 65 envelopes went as batches of at most 10: the first batch at once,
    # then the rest at the rate.
    times = [t for t, p in received if isinstance(p, list)]
    expected = (65 - batch) / rate
    assert expected - 0.05 <= times[-1] - times[0] <= expected + 0.25
    stats = device.stats
    assert (stats.flushed, stats.delivered, stats.buffered_total) == (65, 66, 65)


async def test_a_send_lost_on_a_silent_connection_is_resent_on_a_new_one(
    mosquitto: Mosquitto,
) -> None:
    async with (
        TcpProxy(mosquitto.port) as proxy,
        telemetry_of(mosquitto, "buf-silent") as received,
    ):
        link = MqttLink("buf-silent", proxy.url, timeout=0.5)
        async with Device("buf-silent", link, buffer=quick()) as device:
            assert (await device.send({"n": 0})).ok
            proxy.freeze()
            # No PUBACK comes, yet the link still looks connected.
            assert (await device.send({"n": 1})).buffered
            assert device.connected
            await wait_until(lambda: device.stats.buffered == 0, 5, "the resend")
            assert (await device.send({"n": 2})).ok
            await wait_until(lambda: len(envelopes_in(received)) >= 3, 5, "three envelopes")
    assert [e["values"]["n"] for e in envelopes_in(received)] == [0, 1, 2]
    stats = device.stats
    assert (stats.resent, stats.flushed, stats.delivered) == (1, 1, 3)
    assert stats.last_error is not None
    assert "no acknowledgement within 0.5 s" in stats.last_error


async def test_close_reports_what_it_could_not_deliver() -> None:
    nowhere = f"mqtt://127.0.0.1:{free_port()}"
    device = Device("buf-unsent", MqttLink("buf-unsent", nowhere), buffer=quick(close_timeout=0.3))
    await device.start()
    for i in range(3):
        assert (await device.send({"n": i})).buffered
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await device.close() == 3
    assert loop.time() - start < 1.0  # the close timeout bounds the last try
    stats = device.stats
    assert (stats.unsent, stats.buffered, stats.delivered) == (3, 3, 0)
    assert stats.last_error is not None
    assert "mqtt connect for 'buf-unsent' failed" in stats.last_error
