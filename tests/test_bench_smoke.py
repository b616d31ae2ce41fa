"""The benchmark suite runs and yields every figure (a smoke run: short, with
no thresholds, since CI machines are noisy; `make bench` measures)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.suite import PARTS

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.bench

EXPECTED = {
    "ingest": 1,
    "fanout": 3,  # hub ÷ per-reading Node, hub ÷ batching Node, polling ÷ websocket
    "latency": 4,  # p50 and p99 at 1,000 and 5,000 readings/s
    "replay": 1,
    "storm": 1,  # live p99 during a reconnect storm ÷ idle
    "cluster": 2,  # PostgreSQL ÷ SQLite ingest, two hubs ÷ one
    "memory": 2,
    # the largest smoke fleet: ingest, memory idle and after a restart, startup,
    # the slowest page, the slowest search, the presence flood's stall and
    # time to all offline, mosquitto-acl
    "fleet": 9,
}


@pytest.mark.timeout(600)  # every part, the storm's idle and storm windows included
def test_the_smoke_suite_produces_every_figure(tmp_path: Path) -> None:
    output = tmp_path / "suite.json"
    finished = subprocess.run(
        [sys.executable, "-m", "bench.suite", "--smoke", "--json", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    result = json.loads(output.read_text())
    assert set(result["details"]) == set(PARTS) == set(EXPECTED)
    figures = result["figures"]
    assert len(figures) == sum(EXPECTED.values())
    for figure in figures:
        assert figure["value"] > 0 or figure["unit"] in ("MB", "KB/device"), figure
        if figure["baseline"]:
            assert figure["baseline_value"] > 0, figure
            assert figure["ratio"] == pytest.approx(figure["value"] / figure["baseline_value"])
    # Every reading reached the dashboards in the fan-out and latency runs.
    for step in result["details"]["fanout"]["steps"]:
        assert step["lost"] == 0, step
    for rate, latencies in result["details"]["latency"].items():
        assert latencies["readings"] >= 0.9 * latencies["expected"], (rate, latencies)
    replayed = result["details"]["replay"]
    assert replayed["readings"] == 5_000
    storm = result["details"]["storm"]
    assert storm["completed"] == 10, storm
    # The printed table is the one in the JSON.
    assert result["table"] in finished.stdout
