"""A disk that really fills up: the hub's store on a small tmpfs mounted by
the test (as root), filled by a file until nothing is left.

First the database file cannot grow (the WAL still has room in the space it
holds, so commits go on while its checkpoints fail), then the WAL cannot
grow either (commits fail). Through both the hub acknowledges nothing it has
not stored, says why in /readyz and its log, tells devices that can retry to
do so, and once space returns it goes on by itself with nothing lost."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from hub.config import Settings
from tests.brokers import Mosquitto
from tests.hubs import dashboard, serve_hub, wait_until
from tests.test_e2e import get, publish

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root"),
]

DISK = 8 * 1024 * 1024
WAL_TARGET = 256 * 1024


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of 8 MiB, private to the test."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(path: Path) -> None:
    """Take every byte the filesystem has left."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 4096, 512, 1):
            try:
                while os.write(descriptor, b"\0" * size):
                    pass
            except OSError:
                pass
    finally:
        os.close(descriptor)


def envelope(device_seq: int) -> str:
    return f'{{"seq": {device_seq}, "values": {{"n": {device_seq}, "m": {device_seq + 0.5}}}}}'


async def test_a_full_disk_stops_acknowledgements_and_loses_nothing(
    disk: Path, settings: Settings, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = replace(
        settings,
        storage=replace(
            settings.storage, path=str(disk / "hub.db"), wal_target=WAL_TARGET, ack_timeout=2.0
        ),
    )
    sent: dict[str, set[int]] = {"h1": set(), "m1": set(), "s1": set()}
    async with (
        serve_hub(settings) as running,
        dashboard(running.url) as board,
        aiohttp.ClientSession() as http,
    ):
        await board.subscribe(["*"])
        store = running.hub.store
        checkpoints = store.checkpoints  # type: ignore[attr-defined]
        wal = store.wal  # type: ignore[attr-defined]

        async def post(device_seq: int) -> tuple[int, str]:
            async with http.post(
                f"{running.url}/api/devices/h1/telemetry", data=envelope(device_seq)
            ) as response:
                body: dict[str, Any] = await response.json()
                if response.status == 503:
                    assert response.headers["Retry-After"] == "1"
                    refused.append(device_seq)  # the device keeps it, to send again
                else:
                    assert response.status == 202, body
                    sent["h1"].add(device_seq)
                return response.status, str(body.get("error", ""))

        refused: list[int] = []
        # the WAL has started over: its file holds the space it grew to, which
        # later commits write into again
        n = 0
        while wal.restarts < 2 or checkpoints.wal_bytes() < WAL_TARGET // 2:
            assert (await post(n))[0] == 202
            n += 1

        fill(disk / "filler")
        # 1. the database file cannot grow: commits go on, checkpoints fail
        while store.failing is None:
            status, error = await post(n)
            assert status == 202, f"a commit failed before any checkpoint did: {error}"
            n += 1
            await checkpoints.run_pass()
        status, ready = await get(running, "/readyz")
        assert status == 200
        assert "full" in ready["store"]["failing"]

        # 2. the WAL cannot grow either: commits fail, nothing is acknowledged
        while (await post(n))[0] == 202:
            n += 1
        await wait_until(lambda: running.hub.writer.failing is not None)
        status, ready = await get(running, "/readyz")
        assert status == 503
        assert "full" in ready["ingest"]["writer"]["failing"]
        # devices that can retry are told so at once, and why
        status, error = await post(n + 1)
        assert status == 503
        assert "full" in error
        await publish(mosquitto, "devices/m1/telemetry", envelope(1))
        sent["m1"].add(1)  # the broker holds it until the hub acknowledges it
        device = socketio.AsyncClient(reconnection=False)
        await device.connect(running.url, namespaces=["/devices"], auth={"device_id": "s1"})
        answer = await device.call(
            "telemetry", {"seq": 1, "values": {"n": 1}}, namespace="/devices", timeout=10
        )
        assert answer["ok"] is False
        assert answer["retry"] is True
        assert "full" in answer["error"]
        stored_then = len(board.readings)

        # 3. space returns: the hub goes on by itself
        (disk / "filler").unlink()
        await wait_until(lambda: running.hub.writer.failing is None, 15, "commits to succeed")
        await checkpoints.run_pass()
        assert store.failing is None
        # what waited (the broker's message) is committed, then reaches the board
        await wait_until(lambda: len(board.readings) > stored_then, 15, "the held message live")
        # the devices send again what they were refused
        for device_seq in list(refused):
            assert (await post(device_seq))[0] == 202
        answer = await device.call(
            "telemetry", {"seq": 1, "values": {"n": 1}}, namespace="/devices", timeout=10
        )
        assert answer["ok"] is True
        assert answer["accepted"] == 1
        sent["s1"].add(1)
        await device.disconnect()
        expected = 2 * len(sent["h1"]) + 2 * len(sent["m1"]) + len(sent["s1"])
        await board.wait_readings(expected, within=15)
        status, ready = await get(running, "/readyz")
        assert status == 200
        assert ready["store"]["failing"] is None
        while checkpoints.wal_bytes() > WAL_TARGET:  # it starts over, and is cut back
            assert (await post(n))[0] == 202
            n += 1
            expected += 2

    # everything acknowledged is stored once; the dashboard saw each once, in order
    with sqlite3.connect(settings.storage.path) as db:
        rows = db.execute("SELECT device_id, device_seq, metric FROM readings").fetchall()
    assert len(rows) == len(set(rows)) == expected
    assert {(d, s) for d, s, _ in rows} == {(d, s) for d, seqs in sent.items() for s in seqs}
    seqs = [r["seq"] for r in board.readings]
    assert seqs == sorted(set(seqs))
    assert len(seqs) == expected
    logged = caplog.text
    assert "the WAL keeps growing: database or disk is full" in logged
    assert "retrying: store write failed: database or disk is full" in logged
    assert "commits succeed again" in logged
    assert "succeed again" in logged.split("the WAL keeps growing")[1]
