"""HttpLink and SocketIOLink against a real server that answers as the contract says.

The hub is not written yet; until its end-to-end tests exist, a small aiohttp
and python-socketio server stands in for it. It speaks only the parts of the
contract a device uses: `POST /api/devices/{id}/telemetry` and the
`/devices` namespace with its `telemetry` acknowledgement.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import socketio
from aiohttp import web

from devices import Device, HttpLink, LinkError, SendResult, SetupError, SocketIOLink
from tests.brokers import free_port

GOOD_TOKEN = "s3cret"


def count_values(payload: Any) -> int:
    envelopes = payload if isinstance(payload, list) else [payload]
    return sum(len(envelope.get("values", {})) for envelope in envelopes)


class StandInHub:
    def __init__(self) -> None:
        self.received: list[Any] = []
        # A short ping interval: python-engineio answers a held long poll only
        # at the next ping, and the server's shutdown waits for that answer.
        self.sio = socketio.AsyncServer(async_mode="aiohttp", ping_interval=1, ping_timeout=2)
        self.sio.on("connect", self.on_connect, namespace="/devices")
        self.sio.on("telemetry", self.on_telemetry, namespace="/devices")
        self.app = web.Application()
        self.sio.attach(self.app)
        self.app.router.add_post("/api/devices/{device_id}/telemetry", self.post_telemetry)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.device_sids: dict[str, str] = {}

    async def on_connect(self, sid: str, environ: object, auth: Any) -> None:
        if not isinstance(auth, dict) or auth.get("token") != GOOD_TOKEN:
            raise socketio.exceptions.ConnectionRefusedError("unknown device or bad token")
        self.device_sids[auth["device_id"]] = sid

    async def on_telemetry(self, sid: str, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict | list):
            return {"ok": False, "error": "payload is not a JSON object or array"}
        if payload == []:  # the stand-in's way to play a hub that is shutting down
            return {"ok": False, "error": "shutting down, retry later", "retry": True}
        self.received.append(payload)
        return {"ok": True, "accepted": count_values(payload), "rejected": 0}

    async def post_telemetry(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {GOOD_TOKEN}":
            return web.json_response({"error": "bad token"}, status=401)
        if request.match_info["device_id"] == "crashing":
            return web.Response(status=500, text="Internal Server Error")
        try:
            payload = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.json_response({"error": "payload is not JSON"}, status=400)
        self.received.append(payload)
        return web.json_response({"accepted": count_values(payload), "rejected": 0}, status=202)


@pytest.fixture
async def hub() -> AsyncIterator[StandInHub]:
    stand_in = StandInHub()
    runner = web.AppRunner(stand_in.app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", stand_in.port).start()
    yield stand_in
    await runner.cleanup()


async def test_http_posts_the_envelope_and_reports_the_counts(hub: StandInHub) -> None:
    async with Device("http-1", HttpLink("http-1", hub.url, token=GOOD_TOKEN)) as device:
        assert device.connected
        result = await device.send({"temperature": 21.5, "humidity": 40.0})
        batch = await device.send_batch([device.envelope({"t": 1.0}), device.envelope({"t": 2.0})])
    assert (result.ok, result.accepted, result.rejected, result.error) == (True, 2, 0, None)
    assert (batch.ok, batch.accepted) == (True, 2)
    assert hub.received[0]["values"] == {"temperature": 21.5, "humidity": 40.0}
    assert [envelope["values"]["t"] for envelope in hub.received[1]] == [1.0, 2.0]


async def test_http_refusals_carry_the_hubs_error(hub: StandInHub) -> None:
    bad_token = HttpLink("http-2", hub.url, token="wrong")
    crashing = HttpLink("crashing", hub.url, token=GOOD_TOKEN)
    garbled = HttpLink("http-3", hub.url, token=GOOD_TOKEN)
    links = (bad_token, crashing, garbled)
    for link in links:
        await link.connect()
    try:
        assert await bad_token.send({"t": 1.0}) == SendResult(False, error="bad token")
        assert await crashing.send({"t": 1.0}) == SendResult(False, error="HTTP 500", retry=True)
        assert await garbled.send(b"{nope") == SendResult(False, error="payload is not JSON")
    finally:
        for link in links:
            await link.close()
    assert hub.received == []


async def test_http_down_is_a_link_error() -> None:
    link = HttpLink("http-4", f"http://127.0.0.1:{free_port()}")
    await link.connect()
    with pytest.raises(LinkError) as caught:
        await link.send({"temperature": 1.0})
    assert (caught.value.transport, caught.value.operation) == ("http", "send")
    await link.close()
    assert not link.connected


async def test_http_link_leaves_a_shared_session_open(hub: StandInHub) -> None:
    async with aiohttp.ClientSession() as session:
        link = HttpLink("http-5", hub.url, token=GOOD_TOKEN, session=session)
        await link.connect()
        assert (await link.send(b'{"temperature": 1}')).ok
        await link.close()
        assert not session.closed


@pytest.mark.parametrize("transports", [None, ["polling"], ["websocket"]])
async def test_socketio_sends_and_maps_the_ack(
    hub: StandInHub, transports: list[str] | None
) -> None:
    link = SocketIOLink("sio-1", hub.url, token=GOOD_TOKEN, transports=transports)
    async with Device("sio-1", link) as device:
        assert device.connected
        result = await device.send(
            {"temperature": 21.5, "pressure": {"value": 1013, "unit": "hPa"}}
        )
        from_bytes = await link.send(b'{"values": {"humidity": 40}}')
    assert (result.ok, result.accepted, result.rejected) == (True, 2, 0)
    assert from_bytes.accepted == 1
    assert hub.received[0]["values"]["pressure"] == {"value": 1013, "unit": "hPa"}
    assert not link.connected


async def test_socketio_refusals_carry_the_hubs_error(hub: StandInHub) -> None:
    link = SocketIOLink("sio-6", hub.url, token=GOOD_TOKEN)
    await link.connect()
    try:
        refused = await link.send(b'"just a string"')
        busy = await link.send([])
    finally:
        await link.close()
    assert refused == SendResult(False, error="payload is not a JSON object or array")
    assert busy == SendResult(False, error="shutting down, retry later", retry=True)


async def test_socketio_refused_connection_names_the_reason(hub: StandInHub) -> None:
    link = SocketIOLink("sio-2", hub.url, token="wrong")
    with pytest.raises(LinkError, match="unknown device or bad token") as caught:
        await link.connect()
    assert caught.value.operation == "connect"
    assert not link.connected
    await link.close()


async def test_socketio_hub_gone_is_a_link_error() -> None:
    link = SocketIOLink("sio-3", f"http://127.0.0.1:{free_port()}", token=GOOD_TOKEN)
    with pytest.raises(LinkError):
        await link.connect()
    with pytest.raises(LinkError, match="not connected"):
        await link.send({"temperature": 1.0})


async def test_socketio_notices_when_the_hub_drops_it(hub: StandInHub) -> None:
    link = SocketIOLink("sio-4", hub.url, token=GOOD_TOKEN, transports=["websocket"])
    await link.connect()
    await hub.sio.disconnect(hub.device_sids["sio-4"], namespace="/devices")
    async with asyncio.timeout(5):
        while link.connected:  # noqa: ASYNC110 - a property is all a link shows
            await asyncio.sleep(0.01)
    with pytest.raises(LinkError, match="not connected"):
        await link.send({"temperature": 1.0})
    await link.connect()  # and can come back
    assert (await link.send({"temperature": 1.0})).ok
    await link.close()


def test_hub_urls_must_be_http() -> None:
    with pytest.raises(SetupError, match="hub_url"):
        SocketIOLink("x", "ws://hub")
    with pytest.raises(SetupError, match="hub_url"):
        HttpLink("x", "hub:8080")


async def test_socketio_close_over_long_polling_is_prompt(hub: StandInHub) -> None:
    link = SocketIOLink("sio-5", hub.url, token=GOOD_TOKEN, transports=["polling"])
    await link.connect()
    started = time.monotonic()
    await link.close()
    assert time.monotonic() - started < 3
