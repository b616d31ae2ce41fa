"""Hostile input through each real ingest path: thousands of bad payloads
interleaved with good ones. Nothing crashes, no good reading is lost, every
bad one is refused with a reason and counted; floods are rate limited."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Iterator
from dataclasses import replace

import aiohttp
import aiomqtt
import pytest
import socketio

from hub.config import LimitsSettings, Settings
from tests.brokers import Mosquitto
from tests.hubs import RunningHub, serve_hub, wait_until

BAD_COUNT = 1000


def hostile_payloads(rng: random.Random) -> Iterator[bytes]:
    """Payloads no part of which can be accepted, of many kinds."""
    makers = [
        lambda: bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 300))),
        lambda: b"\xff\xfe" + "é".encode("latin-1") * rng.randrange(1, 50),
        lambda: rng.choice([b"1", b'"text"', b"null", b"true", b"[]", b"{}", b""]),
        lambda: b"[" * rng.randrange(9, 20_000) + b"]" * rng.randrange(0, 20_000),
        lambda: b'{"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}',
        lambda: b'{"temperature": NaN}',
        lambda: b'{"temperature": Infinity}',
        lambda: b'{"temperature": 1e400}',
        lambda: b'{"t": ' + b"9" * 5000 + b"}",
        lambda: b'{"x": "' + b"y" * 70_000 + b'"}',
        lambda: b'{"' + b'", "'.join(b'k%d": 1, "' % i for i in range(3)) + b'": 1}',
        lambda: ("{" + ",".join(f'"m{i}": {i}' for i in range(2000)) + "}").encode(),
        lambda: b'{"": 1}',
        lambda: b'{"___": 1}',
        lambda: ('{"' + "n" * 200 + '": 1}').encode(),
        lambda: b'{"temperature": null}',
        lambda: b'{"temperature": []}',
        lambda: b'{"temperature": {"value": null, "unit": "Cel"}}',
        lambda: b'{"env": {"temperature": null, "humidity": {"a": [[]]}}}',
        lambda: b'{"temperature": {"value": 1, "unit": "Pa"}}',
        lambda: b'{"temperature": {"value": 1, "unit": "\\u0000"}}',
        lambda: b'{"ts": "yesterday", "values": {"n": 1}}',
        lambda: b'{"ts": 99999999999999999, "values": {"n": 1}}',
        lambda: b'{"ts": -5, "values": {"n": 1}}',
        lambda: b'{"ts": "2999-01-01T00:00:00Z", "values": {"n": 1}}',
        lambda: b'{"seq": -1, "values": {"n": 1}}',
        lambda: b'{"seq": "one", "values": {"n": 1}}',
        lambda: b'{"values": {"n": 1}, "extra": 1}',
        lambda: b'[{"bn": 5, "n": "t", "v": 1}]',
        lambda: b'[{"n": "t", "v": "1"}]',
        lambda: b"[1, 2, 3]",
        lambda: ('{"a": "' + "\u202e" * 2000 + '"}').encode(),
    ]
    while True:
        yield rng.choice(makers)()


def good(seq: int) -> bytes:
    return b'{"seq": %d, "values": {"n": %d}}' % (seq, seq)


def open_limits(settings: Settings) -> Settings:
    return replace(settings, limits=LimitsSettings(device_rate=0))


def stored_seqs(settings: Settings, device: str) -> list[int]:
    with sqlite3.connect(settings.storage.path) as db:
        rows = db.execute(
            "SELECT device_seq FROM readings WHERE device_id = ? ORDER BY seq", (device,)
        )
        return [seq for (seq,) in rows]


def rejected_total(running: RunningHub, source: str) -> float:
    return sum(
        amount
        for (name, labels), amount in running.hub.metrics.counters.items()
        if name == "hub_rejections_total" and ("source", source) in labels
    )


async def still_healthy(running: RunningHub) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{running.url}/healthz") as response:
        assert response.status == 200


async def test_hostile_http(settings: Settings) -> None:
    settings = open_limits(settings)
    payloads = hostile_payloads(random.Random(1))
    async with serve_hub(settings) as running, aiohttp.ClientSession() as http:
        statuses: dict[int, int] = {}
        for i in range(BAD_COUNT):
            async with http.post(
                f"{running.url}/api/devices/h-bad/telemetry", data=next(payloads)
            ) as response:
                statuses[response.status] = statuses.get(response.status, 0) + 1
                assert response.status in (400, 413), await response.text()
            async with http.post(
                f"{running.url}/api/devices/h-good/telemetry", data=good(i)
            ) as response:
                assert response.status == 202
        await still_healthy(running)
        assert stored_seqs(settings, "h-good") == list(range(BAD_COUNT))
        assert stored_seqs(settings, "h-bad") == []
        assert rejected_total(running, "http") >= BAD_COUNT
        assert set(statuses) == {400, 413}


async def test_hostile_socketio(settings: Settings) -> None:
    settings = open_limits(settings)
    payloads = hostile_payloads(random.Random(2))
    async with serve_hub(settings) as running:
        bad = socketio.AsyncClient(reconnection=False)
        good_device = socketio.AsyncClient(reconnection=False)
        await bad.connect(running.url, namespaces=["/devices"], auth={"device_id": "s-bad"})
        await good_device.connect(
            running.url, namespaces=["/devices"], auth={"device_id": "s-good"}
        )
        limit = settings.normalize.max_payload_bytes
        oversized = 0
        sent: list[int] = []
        for i in range(BAD_COUNT):
            payload = next(payloads)
            if len(payload) > limit + 4096:
                # more than a device payload: the hub will not read it, and
                # closes that connection (checked once below)
                oversized += 1
                continue
            # text as a badly serializing device sends it; bytes as binary
            answer = await bad.call(
                "telemetry", _as_event(payload), namespace="/devices", timeout=5
            )
            assert answer["ok"] is False, (payload[:80], answer)
            answer = await good_device.call(
                "telemetry", {"seq": i, "values": {"n": i}}, namespace="/devices"
            )
            assert answer["accepted"] == 1
            sent.append(i)
        assert oversized > 0
        closed = asyncio.Event()
        bad.on("disconnect", lambda *_: closed.set(), namespace="/devices")
        await bad.emit("telemetry", "x" * (limit + 10_000), namespace="/devices")
        await asyncio.wait_for(closed.wait(), 10)
        answer = await good_device.call(
            "telemetry", {"seq": BAD_COUNT, "values": {"n": 0}}, namespace="/devices"
        )
        assert answer["accepted"] == 1
        await bad.disconnect()
        await good_device.disconnect()
        await still_healthy(running)
        assert stored_seqs(settings, "s-good") == [*sent, BAD_COUNT]
        assert stored_seqs(settings, "s-bad") == []
        assert rejected_total(running, "socketio") >= BAD_COUNT - oversized


def _as_event(payload: bytes) -> str | bytes:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload


async def test_hostile_mqtt(settings: Settings, mosquitto: Mosquitto) -> None:
    settings = open_limits(settings)
    payloads = hostile_payloads(random.Random(3))
    async with (
        serve_hub(settings) as running,
        aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="hostile") as client,
    ):
        for i in range(BAD_COUNT):
            await client.publish("devices/m-bad/telemetry", next(payloads), qos=1)
            await client.publish("devices/m-good/telemetry", good(i), qos=1)
            if i % 100 == 0:  # and hostile topics
                await client.publish("devices/../telemetry", good(i), qos=1)
                await client.publish("devices/" + "x" * 100 + "/telemetry", good(i), qos=1)
                await client.publish("devices/m-bad/status", b"maybe", qos=1)
        await wait_until(
            lambda: len(stored_seqs(settings, "m-good")) >= BAD_COUNT, 30, "every good reading"
        )
        await still_healthy(running)
        assert stored_seqs(settings, "m-good") == list(range(BAD_COUNT))
        assert stored_seqs(settings, "m-bad") == []
        await wait_until(lambda: rejected_total(running, "mqtt") >= BAD_COUNT + 30, 10)
        reasons = {
            labels
            for (name, labels) in running.hub.metrics.counters
            if name == "hub_rejections_total"
        }
        assert (("reason", "invalid_device_id"), ("source", "mqtt")) in reasons
        assert (("reason", "invalid_status"), ("source", "mqtt")) in reasons


@pytest.fixture
def limited(settings: Settings) -> Settings:
    return replace(settings, limits=LimitsSettings(device_rate=5, device_burst=5))


async def test_a_flooding_device_is_rate_limited_and_others_are_not(
    limited: Settings, mosquitto: Mosquitto
) -> None:
    async with serve_hub(limited) as running, aiohttp.ClientSession() as http:
        statuses = []
        loop = asyncio.get_running_loop()
        retry_at = 0.0
        for i in range(10):
            async with http.post(
                f"{running.url}/api/devices/flood-h/telemetry", data=good(i)
            ) as response:
                statuses.append(response.status)
                if response.status == 429:
                    assert int(response.headers["Retry-After"]) >= 1
                    retry_at = loop.time() + int(response.headers["Retry-After"])
        assert statuses.count(202) == 5
        assert statuses.count(429) == 5
        async with http.post(f"{running.url}/api/devices/calm/telemetry", data=good(0)) as response:
            assert response.status == 202

        device = socketio.AsyncClient(reconnection=False)
        await device.connect(running.url, namespaces=["/devices"], auth={"device_id": "flood-s"})
        answers = [
            await device.call("telemetry", {"seq": i, "n": i}, namespace="/devices")
            for i in range(10)
        ]
        await device.disconnect()
        assert sum(1 for a in answers if a["ok"]) == 5
        limited_answers = [a for a in answers if not a["ok"]]
        assert all(a["retry"] and a["error"].startswith("rate_limited") for a in limited_answers)

        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            for i in range(10):
                await client.publish("devices/flood-m/telemetry", good(i), qos=1)
        await wait_until(lambda: rejected_count(limited, "flood-m") == 5, 10)
        assert len(stored_seqs(limited, "flood-m")) == 5
        assert rejected_count(limited, "flood-h") == 5
        assert rejected_count(limited, "flood-s") == 5

        # the device does as it was told: it retries after Retry-After
        await asyncio.sleep(max(0.0, retry_at - loop.time()))
        async with http.post(
            f"{running.url}/api/devices/flood-h/telemetry", data=good(99)
        ) as response:
            assert response.status == 202


def rejected_count(settings: Settings, device: str) -> int:
    with sqlite3.connect(settings.storage.path) as db:
        (count,) = db.execute(
            "SELECT count(*) FROM rejections WHERE device_id = ? AND reason = 'rate_limited'",
            (device,),
        ).fetchone()
    return int(count)
