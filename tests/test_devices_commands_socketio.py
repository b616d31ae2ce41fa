"""Commands over Socket.IO: a real python-socketio server on uvicorn plays the hub.

The hub's `/devices` namespace emits `command` to a connected device with a
callback (`call`), and the device's reply is the acknowledgement, as the
contract says. The hub's own command code is still being written, so this
small ASGI server stands in for it, served for real on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Generator
from typing import Any

import pytest
import socketio
import uvicorn

from devices import CommandStats, Device, SocketIOLink
from tests.brokers import free_port


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # pytest owns the process's signals, not this test server.
        yield


class CommandingHub:
    """The `/devices` namespace of a hub that sends commands."""

    def __init__(self) -> None:
        # A short ping interval: python-engineio answers a held long poll only
        # at the next ping, and the server's shutdown waits for that answer.
        self.sio = socketio.AsyncServer(async_mode="asgi", ping_interval=1, ping_timeout=2)
        self.sio.on("connect", self.on_connect, namespace="/devices")
        self.app = socketio.ASGIApp(self.sio)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.sids: dict[str, str] = {}

    async def on_connect(self, sid: str, environ: object, auth: Any) -> None:
        self.sids[auth["device_id"]] = sid

    async def command(self, device_id: str, data: Any) -> Any:
        return await self.sio.call(
            "command", data, to=self.sids[device_id], namespace="/devices", timeout=5
        )


@pytest.fixture
async def hub() -> AsyncIterator[CommandingHub]:
    stand_in = CommandingHub()
    config = uvicorn.Config(
        stand_in.app,
        host="127.0.0.1",
        port=stand_in.port,
        log_level="warning",
        lifespan="off",
        ws="websockets-sansio",
        timeout_graceful_shutdown=1,
        access_log=False,
    )
    server = _Server(config)
    serving = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # uvicorn offers no event to await
            if serving.done():
                serving.result()
            await asyncio.sleep(0.01)
    yield stand_in
    server.should_exit = True
    await serving


async def explode(args: dict[str, Any]) -> None:
    raise RuntimeError("sensor on fire")


@pytest.mark.parametrize("transports", [["polling"], ["websocket"]])
async def test_commands_are_answered_through_the_ack(
    hub: CommandingHub, transports: list[str]
) -> None:
    device = Device("sio-cmd", SocketIOLink("sio-cmd", hub.url, transports=transports))
    device.commands.register("explode", explode)
    async with device:
        before = int(time.time() * 1000)
        ping = await hub.command("sio-cmd", {"id": "c1", "name": "ping", "args": {}})
        unknown = await hub.command("sio-cmd", {"id": "c2", "name": "reboot", "args": {}})
        failed = await hub.command("sio-cmd", {"id": "c3", "name": "explode", "args": {}})
        malformed = await hub.command("sio-cmd", {"id": "c4", "name": "ping", "args": [1]})
        no_id = await hub.command("sio-cmd", {"name": "ping", "args": {}})
        not_json_object = await hub.command("sio-cmd", "ping")
        assert (await hub.command("sio-cmd", {"id": "c5", "name": "ping"}))["ok"] is True
    assert ping == {"id": "c1", "ok": True, "result": {"pong": True, "ts": ping["result"]["ts"]}}
    assert before <= ping["result"]["ts"] <= int(time.time() * 1000)
    assert unknown == {"id": "c2", "ok": False, "error": "unknown command: reboot"}
    assert failed == {"id": "c3", "ok": False, "error": "sensor on fire"}
    assert malformed == {
        "id": "c4",
        "ok": False,
        "error": "malformed command: args must be a JSON object",
    }
    assert no_id is None  # an empty acknowledgement: nothing to match it by
    assert not_json_object is None
    assert device.commands.stats == CommandStats(answered=5, failed=3, ignored=2)


async def test_a_slow_command_does_not_hold_up_the_others(hub: CommandingHub) -> None:
    release = asyncio.Event()

    async def wait_for_release(args: dict[str, Any]) -> str:
        await release.wait()
        return "released"

    device = Device("sio-slow", SocketIOLink("sio-slow", hub.url, transports=["websocket"]))
    device.commands.register("wait", wait_for_release)
    async with device:
        slow = asyncio.create_task(hub.command("sio-slow", {"id": "s1", "name": "wait"}))
        ping = await hub.command("sio-slow", {"id": "s2", "name": "ping"})
        assert not slow.done()
        release.set()
        assert await slow == {"id": "s1", "ok": True, "result": "released"}
    assert ping["ok"] is True
