"""What `telemetry-hub serve` sets up in its process before the hub runs."""

from __future__ import annotations

import gc

import pytest

from hub.cli import tune_garbage_collection

pytestmark = pytest.mark.unit


def test_serving_tunes_the_cycle_collector_for_many_short_lived_objects() -> None:
    before = gc.get_threshold()
    try:
        tune_garbage_collection()
        assert gc.get_threshold()[0] == 20_000
        assert gc.get_freeze_count() > 0  # what startup built is left out of full collections
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
