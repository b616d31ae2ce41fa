"""Every answer under /api is JSON, errors included: 404, 405, 413 and 500,
from a real hub behind uvicorn."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from hub.app import create_hub
from hub.config import Settings
from tests.hubs import hub_settings, serve_hub


@pytest.fixture
def no_mqtt(tmp_path: Path) -> Settings:
    """A hub without MQTT: these tests need no broker."""
    return hub_settings(tmp_path)


async def test_http_errors_under_api_are_json(no_mqtt: Settings) -> None:
    async with serve_hub(no_mqtt) as running, aiohttp.ClientSession() as http:
        async with http.get(f"{running.url}/api/nothing-here") as response:
            assert response.status == 404
            assert response.content_type == "application/json"
            assert (await response.json())["error"].startswith("not found")
        async with http.delete(f"{running.url}/api/devices") as response:
            assert response.status == 405
            assert response.content_type == "application/json"
            assert (await response.json())["error"].startswith("method not allowed")
            assert "GET" in response.headers["Allow"]
        too_large = b"x" * (no_mqtt.normalize.max_payload_bytes + 8192)
        async with http.post(f"{running.url}/api/devices/d1/telemetry", data=too_large) as response:
            assert response.status == 413
            assert response.content_type == "application/json"
            assert "error" in await response.json()
        # outside /api the page's own answers are unchanged
        async with http.get(f"{running.url}/nothing-here") as response:
            assert response.status == 404
            assert response.content_type != "application/json"


async def test_a_server_error_under_api_is_json_and_logged(
    no_mqtt: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async with serve_hub(no_mqtt) as running, aiohttp.ClientSession() as http:
        async with http.post(
            f"{running.url}/api/devices/d1/telemetry", data='{"temperature": 20}'
        ) as response:
            assert response.status == 202
        # the store breaks under the hub: its readings are gone
        with sqlite3.connect(no_mqtt.storage.path) as db:
            db.execute("DROP VIEW readings")
            db.execute("DROP TABLE samples")
        url = f"{running.url}/api/devices/d1/readings?metric=temperature"
        async with http.get(url) as response:
            assert response.status == 500
            assert response.content_type == "application/json"
            body = await response.json()
            assert body == {"error": "internal server error: internal error"}
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("no such table" in str(r.exc_info) for r in logged)


async def test_asked_while_the_store_is_closed_the_api_answers_503(no_mqtt: Settings) -> None:
    """A dashboard polling the counts as the hub stops: not a 500."""
    hub = create_hub(no_mqtt)  # never started: its store is not open
    client = hub.quart.test_client()
    response = await client.get("/api/devices/counts")
    assert response.status_code == 503
    assert await response.get_json() == {"error": "the hub is stopping: the store is closed"}
