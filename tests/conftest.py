from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from hub.config import Settings
from tests import postgres
from tests.brokers import Mosquitto, free_port
from tests.hubs import hub_settings


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A real Mosquitto on a free port, private to the test."""
    directory = tmp_path / "mosquitto"
    directory.mkdir()
    broker = Mosquitto(directory=directory, port=free_port())
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings for a hub with its own store; wired to the test's broker when
    the test uses one (asks for `mosquitto`), else with MQTT off, so that
    no broker starts for tests that do not need one."""
    if "mosquitto" in request.fixturenames:
        broker: Mosquitto = request.getfixturevalue("mosquitto")
        return hub_settings(tmp_path, broker.url)
    return hub_settings(tmp_path)


@pytest.fixture(autouse=True)
def _no_thread_left_behind() -> Iterator[None]:
    """A non-daemon thread left running (an unclosed aiosqlite connection, say)
    keeps the test process alive after the last test; name the test that did it."""
    before = set(threading.enumerate())
    yield
    stray = [
        t
        for t in threading.enumerate()
        if t not in before
        and not t.daemon
        and t is not threading.main_thread()
        and "asyncio" not in t.name  # the default executor's workers exit with their loop
    ]
    for thread in stray:
        thread.join(timeout=2)  # a closed connection's thread may take a moment to end
    alive = [t.name for t in stray if t.is_alive()]
    assert not alive, f"threads left running: {alive}"


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """The URL of a database that does not exist yet (the store creates it),
    dropped after the test."""
    name = postgres.new_name()
    try:
        yield postgres.database_url(name)
    finally:
        await postgres.drop(name)
