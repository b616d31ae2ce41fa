"""`telemetry-hub serve` as a real process: SIGTERM and SIGINT drain and exit 0."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

import hub.server as server_module
from hub.config import Settings
from tests.brokers import Mosquitto, free_port, wait_for_port
from tests.hubs import hub_environment, serve_hub, wait_until

HUB = [sys.executable, "-m", "hub.cli", "serve"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_drains_acknowledges_and_exits_zero(
    tmp_path: Path, mosquitto: Mosquitto, signum: signal.Signals
) -> None:
    port = free_port()
    hub = await asyncio.create_subprocess_exec(
        *HUB,
        env=hub_environment(tmp_path, mosquitto, port),
        cwd=tmp_path,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await asyncio.to_thread(wait_for_port, port)
        url = f"http://127.0.0.1:{port}"
        device = socketio.AsyncClient(reconnection=False)
        board = socketio.AsyncClient(reconnection=False)
        disconnected = asyncio.Event()
        board.on("disconnect", lambda *args: disconnected.set(), namespace="/dashboard")
        await board.connect(url, namespaces=["/dashboard"], transports=["websocket"])
        await device.connect(
            url, namespaces=["/devices"], transports=["websocket"], auth={"device_id": "drain-1"}
        )
        acked: list[int] = []
        answers: list[Any] = []

        async def send(seq: int) -> None:
            try:
                answer = await device.call(
                    "telemetry",
                    {"seq": seq, "values": {"n": seq}},
                    namespace="/devices",
                    timeout=2,  # a call cut off by the closing connection never gets its ack
                )
            except (
                socketio.exceptions.TimeoutError,
                socketio.exceptions.BadNamespaceError,
                socketio.exceptions.DisconnectedError,
            ) as exc:
                answers.append(exc)
                return
            answers.append(answer)
            if answer.get("ok"):
                acked.append(seq)

        async def stream() -> None:
            seq = 0
            tasks = []
            while not disconnected.is_set() and hub.returncode is None and seq < 5000:
                tasks.append(asyncio.create_task(send(seq)))
                seq += 1
                await asyncio.sleep(0.001)
            await asyncio.gather(*tasks)

        streaming = asyncio.create_task(stream())
        await wait_until(lambda: len(acked) >= 200, 20, "200 acknowledged readings")
        started = time.monotonic()
        hub.send_signal(signum)
        code = await asyncio.wait_for(hub.wait(), 15)
        stopped_in = time.monotonic() - started
        await asyncio.wait_for(streaming, 15)
        await asyncio.wait_for(disconnected.wait(), 5)
        for client in (device, board):
            await client.disconnect()
    finally:
        if hub.returncode is None:
            hub.kill()
            await hub.wait()
    assert hub.stderr is not None
    log = (await hub.stderr.read()).decode()
    assert code == 0, log
    assert stopped_in < 10
    with sqlite3.connect(tmp_path / "hub.db") as db:
        stored = {
            seq
            for (seq,) in db.execute("SELECT device_seq FROM readings WHERE device_id = 'drain-1'")
        }
    # Every acknowledged reading is stored; anything stored beyond that was
    # committed while its acknowledgement was cut off by the closing connection.
    assert set(acked) <= stored
    assert len(stored) - len(acked) <= len([a for a in answers if not isinstance(a, dict)])
    refused = [a for a in answers if isinstance(a, dict) and not a.get("ok")]
    assert all(a.get("retry") for a in refused), refused


@pytest.mark.parametrize("handed_over", [True, False], ids=["hub-signals", "uvicorn-signals"])
async def test_the_hub_says_when_uvicorn_keeps_its_signal_handling(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    handed_over: bool,
) -> None:
    """Should a uvicorn release stop asking `capture_signals` (our one hook
    into it), the hub still serves, and says which order a signal will take."""
    if not handed_over:
        monkeypatch.delattr(server_module._Server, "capture_signals")
    async with serve_hub(settings) as running, aiohttp.ClientSession() as http:
        url = f"{running.url}/api/devices/sig/telemetry"
        async with http.post(url, json={"temperature": 20}) as response:
            assert response.status == 202
    warned = "handles SIGINT and SIGTERM itself" in caplog.text
    assert warned is not handed_over
