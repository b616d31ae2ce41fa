"""End to end: a real Mosquitto, the hub on uvicorn on a free port, real
Socket.IO clients on websocket and on polling, real HTTP."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import aiohttp
import aiomqtt
import pytest
import socketio
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hub.config import Settings
from tests.brokers import Mosquitto
from tests.hubs import RunningHub, dashboard, serve_hub, wait_until

TRANSPORTS = [["websocket"], ["polling"]]


async def publish(
    broker: Mosquitto, topic: str, payload: str | bytes, retain: bool = False
) -> None:
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier=f"pub-{time.time_ns()}") as c:
        await c.publish(topic, payload, qos=1, retain=retain)


async def post(
    running: RunningHub, device: str, body: str | bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{running.url}/api/devices/{device}/telemetry", data=body, headers=headers or {}
        ) as response,
    ):
        return response.status, await response.json()


async def get(running: RunningHub, path: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{running.url}{path}") as response,
    ):
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


class Device:
    """A device on the `/devices` namespace, with python-socketio's client."""

    def __init__(self, running: RunningHub, device_id: str, transports: list[str] | None = None):
        self.client = socketio.AsyncClient(reconnection=False)
        self.running = running
        self.device_id = device_id
        self.transports = transports

    async def __aenter__(self) -> Device:
        await self.client.connect(
            self.running.url,
            namespaces=["/devices"],
            transports=self.transports,
            auth={"device_id": self.device_id, "token": ""},
            wait_timeout=10,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.disconnect()

    async def send(self, payload: Any) -> dict[str, Any]:
        answer: dict[str, Any] = await self.client.call(
            "telemetry", payload, namespace="/devices", timeout=10
        )
        return answer


def only(readings: list[dict[str, Any]], device: str) -> list[dict[str, Any]]:
    return [r for r in readings if r["device_id"] == device]


@pytest.mark.parametrize("transports", TRANSPORTS, ids=["websocket", "polling"])
async def test_each_ingest_path_reaches_dashboards(
    settings: Settings, mosquitto: Mosquitto, transports: list[str]
) -> None:
    async with serve_hub(settings) as running, dashboard(running.url, transports) as board:
        ack = await board.subscribe(["*"])
        assert ack == {"epoch": running.hub.store.epoch, "seq": 0, "devices": ["*"]}
        ts = int(time.time() * 1000) - 5000

        await publish(
            mosquitto,
            "devices/mqtt-1/telemetry",
            f'{{"ts": {ts}, "values": {{"temperature": {{"value": 70, "unit": "degF"}}}}}}',
        )
        async with Device(running, "sio-1", transports) as device:
            answer = await device.send(
                {
                    "ts": ts / 1000,
                    "seq": 7,
                    "values": {"pressure": {"value": 1013.2, "unit": "hPa"}},
                }
            )
            assert answer == {"ok": True, "accepted": 1, "rejected": 0, "duplicates": 0}
        status, body = await post(running, "http-1", f'{{"humidity": 40, "ts": {ts}}}')
        assert (status, body["accepted"]) == (202, 1)

        readings = await board.wait_readings(3)
        by_device = {r["device_id"]: r for r in readings}
        assert by_device["mqtt-1"] == {
            "seq": by_device["mqtt-1"]["seq"],
            "device_id": "mqtt-1",
            "metric": "temperature",
            "ts": ts,
            "value": pytest.approx(21.1111111),
            "unit": "Cel",
        }
        assert by_device["sio-1"]["value"] == 101320.0
        assert (by_device["sio-1"]["unit"], by_device["sio-1"]["ts"]) == ("Pa", ts)
        assert (by_device["http-1"]["value"], by_device["http-1"]["unit"]) == (40.0, "%RH")
        seqs = [r["seq"] for r in readings]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == 3
        assert seqs[0] > ack["seq"]


async def test_a_rejected_payload_does_not_stop_the_next_good_one(
    settings: Settings, mosquitto: Mosquitto
) -> None:
    async with serve_hub(settings) as running, dashboard(running.url) as board:
        await board.subscribe(["*"])
        await publish(mosquitto, "devices/m1/telemetry", b"{not json")
        await publish(mosquitto, "devices/m1/telemetry", b'{"temperature": 1}')
        async with Device(running, "s1") as device:
            bad = await device.send({"temperature": float("nan")})
            assert bad["ok"] is False
            assert bad["error"].startswith("non_finite")
            good = await device.send({"temperature": 2})
            assert good["accepted"] == 1
        status, body = await post(running, "h1", b'{"temperature": "hot", "pressure": []}')
        assert status == 202
        assert (body["accepted"], body["rejected"]) == (0, 1)
        status, body = await post(running, "h1", b"[]")
        assert status == 400
        assert body["reason"] == "empty"
        status, body = await post(running, "h1", b'{"temperature": 3}')
        assert status == 202
        assert body["accepted"] == 1

        readings = await board.wait_readings(3)
        assert [(r["device_id"], r["value"]) for r in readings] == [
            ("m1", 1.0),
            ("s1", 2.0),
            ("h1", 3.0),
        ]
        rejected = await running.hub.store.rejections(10)
        assert sorted((r.source, r.device_id, r.reason) for r in rejected) == [
            ("http", "h1", "empty"),
            ("http", "h1", "invalid_value"),
            ("mqtt", "m1", "invalid_json"),
            ("socketio", "s1", "non_finite"),
        ]
        _, metrics = await get(running, "/metrics")
        assert 'hub_rejections_total{reason="invalid_json",source="mqtt"} 1' in metrics


async def test_rooms_carry_only_subscribed_devices(settings: Settings) -> None:
    async with (
        serve_hub(settings) as running,
        dashboard(running.url) as one,
        dashboard(running.url, ["polling"]) as two,
        dashboard(running.url) as everything,
    ):
        assert (await one.subscribe(["a"]))["devices"] == ["a"]
        assert (await two.subscribe(["b", "c"]))["devices"] == ["b", "c"]
        assert (await two.subscribe(["a"]))["devices"] == ["a", "b", "c"]  # adds
        await everything.subscribe(["*"])
        for device in ("a", "b", "c", "d"):
            await post(running, device, b'{"temperature": 1}')
        # A last reading of "a" goes to both: once it is there, so is everything
        # sent before it (each dashboard gets its readings in seq order).
        await post(running, "a", b'{"temperature": 1.5}')
        await everything.wait_readings(5)
        await two.wait_readings(4)
        await one.wait_readings(2)
        assert [r["device_id"] for r in one.readings] == ["a", "a"]
        assert sorted(r["device_id"] for r in two.readings) == ["a", "a", "b", "c"]

        answer = await two.client.call(
            "unsubscribe", {"devices": ["a", "b"]}, namespace="/dashboard"
        )
        assert answer["devices"] == ["c"]
        await post(running, "a", b'{"temperature": 2}')
        await post(running, "c", b'{"temperature": 2}')
        await one.wait_readings(3)
        await two.wait_readings(5)
        # "a" came before "c": had it reached two, it would be before it
        assert [r["device_id"] for r in two.readings[4:]] == ["c"]


async def test_readings_are_coalesced_into_few_frames_in_seq_order(settings: Settings) -> None:
    async with serve_hub(settings) as running, dashboard(running.url) as board:
        await board.subscribe(["*"])
        async with Device(running, "burst") as device:
            answers = await asyncio.gather(
                *(device.send({"seq": i, "temperature": i}) for i in range(200))
            )
        assert all(a["accepted"] == 1 for a in answers)
        readings = await board.wait_readings(200)
        seqs = [r["seq"] for r in readings]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == 200
        assert len(board.frames) < 50, f"{len(board.frames)} frames for 200 readings"
        for frame in board.frames:
            assert frame["epoch"] == running.hub.store.epoch
            assert frame["replay"] is False


async def test_a_repeated_device_seq_is_stored_once_on_every_path(
    settings: Settings, mosquitto: Mosquitto
) -> None:
    async with serve_hub(settings) as running, dashboard(running.url) as board:
        await board.subscribe(["*"])
        envelope = '{"seq": 41, "values": {"temperature": 5}}'
        await publish(mosquitto, "devices/dup/telemetry", envelope)
        await publish(mosquitto, "devices/dup/telemetry", envelope)
        status, body = await post(running, "dup", envelope)
        assert (status, body["accepted"], body["duplicates"]) == (202, 0, 1)
        async with Device(running, "dup") as device:
            answer = await device.send({"seq": 41, "values": {"temperature": 5}})
            assert (answer["accepted"], answer["duplicates"]) == (0, 1)
        await post(running, "dup", '{"seq": 42, "values": {"temperature": 6}}')
        await post(running, "dup", '{"seq": 43, "values": {"temperature": 7}}')
        # once the last is there, so is any duplicate sent before it
        await board.wait_readings(3)
        assert [r["value"] for r in board.readings] == [5.0, 6.0, 7.0]


async def test_presence_follows_links(settings: Settings, mosquitto: Mosquitto) -> None:
    async with serve_hub(settings) as running, dashboard(running.url) as board:
        await board.subscribe(["*"])
        async with Device(running, "sock"):
            await wait_until(lambda: any(p["device_id"] == "sock" for p in board.presence))
            assert board.presence[-1]["online"] is True
        await wait_until(lambda: board.presence[-1] == {**board.presence[-1], "online": False})
        assert board.presence[-1]["device_id"] == "sock"

        await publish(mosquitto, "devices/radio/status", "online", retain=True)
        await wait_until(lambda: board.presence[-1]["device_id"] == "radio")
        assert board.presence[-1]["online"] is True
        _, devices = await get(running, "/api/devices")
        assert {d["device_id"]: d["online"] for d in devices["devices"]} == {
            "radio": True,
            "sock": False,
        }
        await publish(mosquitto, "devices/radio/status", "offline", retain=True)
        await wait_until(lambda: board.presence[-1] == {**board.presence[-1], "online": False})


async def test_readings_api_raw_and_bucketed(settings: Settings) -> None:
    async with serve_hub(settings) as running:
        base = (int(time.time() * 1000) // 60_000 - 10) * 60_000
        batch = ",".join(
            f'{{"ts": {base + i * 20_000}, "seq": {i}, "values": {{"temperature": {i}}}}}'
            for i in range(9)
        )
        status, body = await post(running, "api-1", f"[{batch}]")
        assert (status, body["accepted"]) == (202, 9)

        status, raw = await get(
            running, f"/api/devices/api-1/readings?metric=temperature&from={base}&limit=4"
        )
        assert status == 200
        assert (raw["device_id"], raw["metric"], raw["unit"]) == ("api-1", "temperature", "Cel")
        assert [r["value"] for r in raw["readings"]] == [0, 1, 2, 3]
        status, bucketed = await get(
            running, f"/api/devices/api-1/readings?metric=temperature&from={base}&bucket=1m"
        )
        assert bucketed["bucket"] == "1m"
        assert bucketed["buckets"] == [
            {"ts": base, "min": 0.0, "max": 2.0, "mean": 1.0, "count": 3},
            {"ts": base + 60_000, "min": 3.0, "max": 5.0, "mean": 4.0, "count": 3},
            {"ts": base + 120_000, "min": 6.0, "max": 8.0, "mean": 7.0, "count": 3},
        ]
        # `through`: the buckets count exactly the readings up to that seq.
        store = running.hub.store
        assert bucketed["through"] == store.head
        late = f'{{"ts": {base + 10_000}, "seq": 9, "values": {{"temperature": 100}}}}'
        assert (await post(running, "api-1", late))[0] == 202
        status, after = await get(
            running, f"/api/devices/api-1/readings?metric=temperature&from={base}&bucket=1m"
        )
        assert (after["through"], after["buckets"][0]["count"]) == (bucketed["through"] + 1, 4)
        kept = await store.buckets(
            "api-1", "temperature", base, None, 60_000, 10, through=after["through"] - 1
        )
        assert [b.to_wire() for b in kept] == bucketed["buckets"]
        for query, fragment in [
            ("", "metric"),
            ("?metric=temperature&from=yesterday", "from"),
            ("?metric=temperature&limit=0", "limit"),
            ("?metric=temperature&bucket=often", "bucket"),
        ]:
            status, error = await get(running, f"/api/devices/api-1/readings{query}")
            assert status == 400
            assert fragment in error["error"]


async def test_readyz_and_presence_show_the_broker_outage_while_http_keeps_serving(
    settings: Settings, mosquitto: Mosquitto
) -> None:
    async with serve_hub(settings) as running, dashboard(running.url) as board:
        mqtt = running.hub.mqtt
        assert mqtt is not None
        await board.subscribe(["*"])

        def radio_online() -> bool | None:
            states = [p["online"] for p in board.presence if p["device_id"] == "radio"]
            return states[-1] if states else None

        await publish(mosquitto, "devices/radio/status", "online", retain=True)
        await wait_until(lambda: radio_online() is True)
        status, ready = await get(running, "/readyz")
        assert status == 200
        assert ready["ingest"]["mqtt"]["state"] == "connected"

        mosquitto.stop()
        await wait_until(lambda: not mqtt.connection.connected)
        status, ready = await get(running, "/readyz")
        assert status == 200
        assert ready["ingest"]["mqtt"]["state"] in ("connecting", "disconnected")
        # the hub cannot know: the device it heard of through the broker is offline
        await wait_until(lambda: radio_online() is False, what="presence offline")
        status, _ = await post(running, "still-here", b'{"temperature": 1}')
        assert status == 202

        mosquitto.start()
        await wait_until(lambda: mqtt.connection.connected, 15)
        # the device reconnects to the broker and says so again
        await publish(mosquitto, "devices/radio/status", "online", retain=True)
        await wait_until(lambda: radio_online() is True, what="presence online")
        await publish(mosquitto, "devices/back/telemetry", b'{"temperature": 2}')
        await wait_until(lambda: bool(board.readings) and board.readings[-1]["device_id"] == "back")


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_mqtt_publishes_of_every_shape_are_stored_once_in_order(
    settings: Settings, mosquitto: Mosquitto, protocol: str
) -> None:
    """QoS 0, 1 and 2, with and without MQTT 5 properties, retained, and a bad
    one among them: the hub's fast path and paho's own both deliver."""
    settings = replace(settings, mqtt=replace(settings.mqtt, protocol=protocol))
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.UserProperty = [("site", "north")]
    properties.ContentType = "application/json"
    topic = "devices/shape-1/telemetry"
    async with (
        serve_hub(settings) as running,
        aiomqtt.Client(
            "127.0.0.1", mosquitto.port, identifier="shapes", protocol=aiomqtt.ProtocolVersion.V5
        ) as device,
    ):
        await device.publish(topic, b'{"n": 1}', qos=0)
        await device.publish(topic, b'{"n": 2}', qos=1)
        await device.publish(topic, b'{"n": 3}', qos=1, properties=properties)
        await device.publish(topic, b'{"n": 4}', qos=2)
        await device.publish(topic, b"{not json", qos=1)
        await device.publish(topic, b'{"n": 5}', qos=1, retain=True)
        await device.publish(topic, b'{"n": 6}', qos=1)
        store = running.hub.store
        await wait_until(lambda: store.head >= 6, what="six readings")
        status, stored = await get(running, "/api/devices/shape-1/readings?metric=n")
        assert status == 200
        assert [r["value"] for r in stored["readings"]] == [1, 2, 3, 4, 5, 6]
        assert [r.reason for r in await store.rejections(10)] == ["invalid_json"]
