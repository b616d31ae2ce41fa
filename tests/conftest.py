from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.config import Settings
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
def settings(tmp_path: Path, mosquitto: Mosquitto) -> Settings:
    """Settings for a hub with its own store, wired to the test's broker."""
    return hub_settings(tmp_path, mosquitto.url)
