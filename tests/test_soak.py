"""A short soak (`bench.soak`, 75 s instead of an hour): the hub as operators
leave it running, at 6,000 readings/s with 20 websocket dashboards, keeps
its write-ahead log bounded and stores every reading sent.

Before issue 13 the WAL grew by about 50 MB a second here and passed the
bound within two seconds; the run stops early once it passes 256 MiB."""

from __future__ import annotations

import pytest

from bench import soak

pytestmark = pytest.mark.slow


def test_a_steady_6000_readings_per_second_keeps_the_wal_bounded() -> None:
    result = soak.run(
        soak.Options(
            seconds=75,
            warmup=15,
            window=15,
            report=15,
            abort_wal=256 * soak.MiB,
        )
    )
    assert not result["aborted"]
    assert result["wal_max_bytes"] <= soak.WAL_LIMIT
    assert result["readings_stored"] == result["readings_sent"] > 300_000
    # the WAL is written many times over, yet its file stays within bounds
    assert result["wal_bytes_per_reading"] is not None
