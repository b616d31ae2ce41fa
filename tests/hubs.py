"""The hub served for real by uvicorn on a free port, and clients that watch it."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import socketio

from hub.app import Hub
from hub.config import (
    BroadcastSettings,
    MqttSettings,
    ServerSettings,
    Settings,
    StorageSettings,
)
from hub.server import running
from tests.brokers import Mosquitto, wait_for_port


def hub_settings(tmp_path: Path, mqtt_url: str | None = None, **sections: Any) -> Settings:
    """Settings for a hub private to one test: its own store, broker and port."""
    settings = Settings(
        server=ServerSettings(port=0, ping_interval=5, ping_timeout=5, shutdown_timeout=2),
        storage=StorageSettings(path=str(tmp_path / "hub.db")),
        mqtt=MqttSettings(
            enabled=mqtt_url is not None,
            url=mqtt_url or "mqtt://127.0.0.1:1",
            client_id=f"hub-{tmp_path.name}",
            reconnect_min=0.1,
            reconnect_max=1.0,
        ),
        broadcast=BroadcastSettings(tick=0.005),
    )
    return replace(settings, **sections)


@dataclass
class RunningHub:
    hub: Hub
    url: str
    port: int


@contextlib.asynccontextmanager
async def serve_hub(settings: Settings, port: int = 0) -> AsyncIterator[RunningHub]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    settings = replace(settings, server=replace(settings.server, port=port))
    async with running(settings, sock) as hub:
        if hub.mqtt is not None:
            await asyncio.wait_for(hub.mqtt.connection.wait_connected(), 10)
        yield RunningHub(hub, f"http://127.0.0.1:{port}", port)


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]], within: float = 10.0, what: str = ""
) -> None:
    """Wait for `predicate` (a function, or a coroutine function asking the
    hub over HTTP) to hold."""
    deadline = time.monotonic() + within
    while not await _holds(predicate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {within}s waiting for {what or predicate}")
        await asyncio.sleep(0.01)


async def _holds(predicate: Callable[[], bool | Awaitable[bool]]) -> bool:
    result = predicate()
    return await result if inspect.isawaitable(result) else result


@dataclass
class Dashboard:
    """A python-socketio client on `/dashboard` that keeps what it receives."""

    client: socketio.AsyncClient
    readings: list[dict[str, Any]] = field(default_factory=list)
    frames: list[dict[str, Any]] = field(default_factory=list)
    presence: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[str, Any]] = field(default_factory=list)
    # The cursor a real dashboard keeps: its epoch and the highest seq it has.
    epoch: str | None = None
    seq: int = 0

    def cursor(self) -> dict[str, Any]:
        return {"cursor": {"epoch": self.epoch, "seq": self.seq}} if self.epoch else {}

    def named(self, event: str) -> list[Any]:
        return [data for name, data in self.events if name == event]

    async def subscribe(self, devices: list[str]) -> dict[str, Any]:
        answer: dict[str, Any] = await self.client.call(
            "subscribe", {"devices": devices}, namespace="/dashboard", timeout=10
        )
        if "epoch" in answer and answer["epoch"] != self.epoch:
            self.epoch, self.seq = answer["epoch"], answer["seq"]
        return answer

    async def wait_readings(self, count: int, within: float = 10.0) -> list[dict[str, Any]]:
        await wait_until(
            lambda: len(self.readings) >= count,
            within,
            f"{count} readings (have {len(self.readings)})",
        )
        return self.readings


@contextlib.asynccontextmanager
async def dashboard(
    url: str,
    transports: list[str] | None = None,
    auth: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
    reconnection: bool = False,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[Dashboard]:
    # Our own HTTP session, closed a moment after disconnecting: python-engineio's
    # client never reads its POST responses and closes its session as soon as the
    # long-poll ends, so a POST answered a moment later would be left unclosed.
    # `headers` go with every request, as a browser sends Origin with each of
    # a cross-origin page's (python-engineio's client sends its own only with
    # the first).
    session = aiohttp.ClientSession(headers=headers)
    client = socketio.AsyncClient(
        reconnection=reconnection,
        reconnection_delay=0.2,
        reconnection_delay_max=1,
        http_session=session,
    )
    board = Dashboard(client)

    @client.on("readings", namespace="/dashboard")
    def on_readings(frame: dict[str, Any]) -> None:
        board.frames.append(frame)
        board.readings.extend(frame["readings"])
        if frame["readings"]:
            board.epoch = frame["epoch"]
            board.seq = max(board.seq, frame["readings"][-1]["seq"])

    @client.on("presence", namespace="/dashboard")
    def on_presence(change: dict[str, Any]) -> None:
        board.presence.append(change)

    @client.on("*", namespace="/dashboard")
    def on_other(event: str, data: Any) -> None:
        board.events.append((event, data))

    try:
        await client.connect(
            url,
            namespaces=["/dashboard"],
            transports=transports,
            auth=auth or {},
            wait_timeout=10,
        )
        yield board
    finally:
        await client.disconnect()
        await asyncio.sleep(0.05)
        await session.close()


def hub_environment(tmp_path: Path, broker: Mosquitto, port: int) -> dict[str, str]:
    """The environment of a hub process private to a test: store, broker, port."""
    return {
        **os.environ,
        "HUB_CONFIG": str(Path(__file__).parents[1] / "config.toml"),
        "HUB_SERVER__PORT": str(port),
        "HUB_STORAGE__PATH": str(tmp_path / "hub.db"),
        "HUB_MQTT__URL": broker.url,
        "HUB_MQTT__CLIENT_ID": f"hub-{tmp_path.name}",
        "HUB_MQTT__RECONNECT_MIN": "50ms",
        "HUB_LOG__LEVEL": "warning",
        "HUB_LIMITS__DEVICE_RATE": "0",  # these tests send faster than a device should
    }


class HubProcess:
    """`telemetry-hub serve` as a process that can be killed like a crash."""

    def __init__(self, environment: dict[str, str], port: int) -> None:
        self.environment = environment
        self.port = port
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hub.cli",
            "serve",
            env=self.environment,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await asyncio.to_thread(wait_for_port, self.port, 20)

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), 20)
