"""A store that refuses commits (a real SQLite size limit, as a full disk
would): nothing is acknowledged, nothing is lost, and everything arrives once
when the fault clears."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace

import aiohttp
import socketio

from hub.config import Settings
from tests.brokers import Mosquitto
from tests.hubs import dashboard, serve_hub, wait_until
from tests.test_e2e import get, publish


def batch(first: int, count: int) -> str:
    envelopes = ",".join(
        f'{{"seq": {seq}, "values": {{"n": {seq}, "padding": "{"x" * 200}"}}}}'
        for seq in range(first, first + count)
    )
    return f"[{envelopes}]"


async def test_commits_refused_then_allowed_again(settings: Settings, mosquitto: Mosquitto) -> None:
    settings = replace(settings, storage=replace(settings.storage, ack_timeout=1.0))
    async with serve_hub(settings) as running, dashboard(running.url) as board:
        await board.subscribe(["*"])
        store = running.hub.store
        async with aiohttp.ClientSession() as http:
            # a full disk, as SQLite sees one: no page beyond those it has
            cursor = await store.db.execute("PRAGMA page_count")
            (pages,) = await cursor.fetchone()
            await store.db.execute(f"PRAGMA max_page_count = {pages}")
            # what fits in the pages' free space still goes in; fill it
            posted = 0
            while True:
                async with http.post(
                    f"{running.url}/api/devices/h1/telemetry", data=batch(posted, 100)
                ) as response:
                    posted += 100
                    if response.status == 503:
                        assert response.headers["Retry-After"] == "1"
                        assert "busy" in (await response.json())["error"]
                        break
                    assert response.status == 202
                assert posted < 100_000, "the store never filled up"
            stored_before = len(board.readings)
            await publish(mosquitto, "devices/m1/telemetry", batch(0, 100))
            device = socketio.AsyncClient(reconnection=False)
            await device.connect(running.url, namespaces=["/devices"], auth={"device_id": "s1"})
            await wait_until(lambda: running.hub.writer.failing is not None)
            # while commits fail, devices that can retry are told so at once, and why
            answer = await device.call(
                "telemetry", {"seq": 1, "values": {"n": 1}}, namespace="/devices", timeout=10
            )
            assert answer["ok"] is False
            assert answer["retry"] is True
            assert "cannot write" in answer["error"]
            assert "full" in answer["error"]
            async with http.post(
                f"{running.url}/api/devices/h2/telemetry", data=batch(0, 1)
            ) as response:
                assert response.status == 503
                assert response.headers["Retry-After"] == "1"
                assert "full" in (await response.json())["error"]

            status, ready = await get(running, "/readyz")
            assert status == 503
            assert "full" in ready["ingest"]["writer"]["failing"]
            # nothing was committed since (the count below), so nothing was sent
            assert len(board.readings) == stored_before
            with sqlite3.connect(settings.storage.path) as db:
                (count,) = db.execute("SELECT count(*) FROM readings").fetchone()
            assert count == stored_before == posted - 100

            # the fault clears: what waited is committed, once
            await store.db.execute("PRAGMA max_page_count = 1073741823")
            await board.wait_readings(200, within=15)
            # the HTTP device was told to retry, and does: same seqs, stored once
            async with http.post(
                f"{running.url}/api/devices/h1/telemetry", data=batch(0, 100)
            ) as response:
                assert response.status == 202
                assert (await response.json())["duplicates"] == 100
            answer = await device.call(
                "telemetry", {"seq": 1, "values": {"n": 1}}, namespace="/devices", timeout=10
            )
            assert (answer["accepted"], answer["duplicates"]) == (1, 0)
            await device.disconnect()
            status, _ = await get(running, "/readyz")
            assert status == 200
        await board.wait_readings(posted + 101)  # s1's reading, the last committed
        with sqlite3.connect(settings.storage.path) as db:
            counts = dict(db.execute("SELECT device_id, count(*) FROM readings GROUP BY device_id"))
        assert counts == {"m1": 100, "h1": posted, "s1": 1}
        assert [r["device_id"] for r in board.readings].count("m1") == 100
        assert len(board.readings) == posted + 101
        seqs = [r["seq"] for r in board.readings]
        assert seqs == sorted(set(seqs))
        await wait_until(lambda: running.hub.writer.failing is None)


async def test_a_full_queue_answers_busy_at_once_and_mqtt_waits(
    settings: Settings, mosquitto: Mosquitto
) -> None:
    settings = replace(settings, storage=replace(settings.storage, queue_max=2, ack_timeout=30.0))
    async with serve_hub(settings) as running:
        store = running.hub.store
        cursor = await store.db.execute("PRAGMA page_count")
        (pages,) = await cursor.fetchone()
        await store.db.execute(f"PRAGMA max_page_count = {pages}")
        async with aiohttp.ClientSession() as http:

            async def post(first: int) -> tuple[int, dict[str, str]]:
                async with http.post(
                    f"{running.url}/api/devices/q1/telemetry", data=batch(first, 100)
                ) as response:
                    return response.status, dict(response.headers)

            # the writer stalls on the first batch that does not fit, then the
            # queue (2) fills with waiting submissions, and the next is refused
            waiting = [asyncio.create_task(post(100 * k)) for k in range(40)]
            await wait_until(lambda: any(t.done() for t in waiting), 10, "a busy answer")
            done = [t.result() for t in waiting if t.done()]
            assert all(status == 503 for status, _ in done)
            assert all(headers["Retry-After"] == "1" for _, headers in done)
            # MQTT is not refused: it waits, unacknowledged, for the store
            await publish(mosquitto, "devices/m2/telemetry", '{"seq": 1, "values": {"n": 1}}')
            metrics = running.hub.metrics
            await wait_until(
                lambda: metrics.value("hub_messages_received_total", source="mqtt") > 0
            )
            await store.db.execute("PRAGMA max_page_count = 1073741823")
            results = await asyncio.gather(*waiting)
        accepted = [k for k, (status, _) in enumerate(results) if status == 202]
        refused = [k for k, (status, _) in enumerate(results) if status == 503]
        assert refused
        assert accepted
        await wait_until(lambda: _count("m2", settings) == 1, 10, "the MQTT reading")
        # what was accepted is stored; what was refused was never queued
        stored_seqs = _seqs("q1", settings)
        for k in accepted:
            assert set(range(100 * k, 100 * k + 100)) <= stored_seqs
        for k in refused:
            assert not set(range(100 * k, 100 * k + 100)) & stored_seqs


def _count(device: str, settings: Settings) -> int:
    with sqlite3.connect(settings.storage.path) as db:
        (count,) = db.execute(
            "SELECT count(*) FROM readings WHERE device_id = ?", (device,)
        ).fetchone()
    return int(count)


def _seqs(device: str, settings: Settings) -> set[int]:
    with sqlite3.connect(settings.storage.path) as db:
        rows = db.execute("SELECT device_seq FROM readings WHERE device_id = ?", (device,))
        return {seq for (seq,) in rows}
