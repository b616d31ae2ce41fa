"""The fleet benchmark (bench/fleet.py) runs at tiny sizes and yields every
figure for every size; timings are not judged (`python -m bench.fleet`
measures them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import fleet

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.bench


@pytest.mark.timeout(180)
def test_the_smoke_fleet_has_every_figure_for_every_size(tmp_path: Path) -> None:
    output = tmp_path / "fleet.json"
    finished = subprocess.run(
        [sys.executable, "-m", "bench.fleet", "--smoke", "--json", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    result = json.loads(output.read_text())
    sizes = list(fleet.SMOKE.sizes)
    assert result["sizes"] == sizes
    # Every row, with a value for every size, and a verdict wherever there is a target.
    assert [f["name"] for f in result["figures"]] == [r.name for r in fleet.rows(fleet.SMOKE)]
    for figure in result["figures"]:
        assert len(figure["values"]) == len(sizes), figure
        assert not {"n/a", "skipped"} & set(figure["cells"]), figure
        # Nothing to measure only for growth since the size before the first.
        first = figure["name"].startswith("... per device added since the previous size")
        assert [v is None for v in figure["values"]] == [first] + [False] * (len(sizes) - 1)
        assert (None in figure["met"]) == (not figure["target"]), figure
    # The pages and searches found what the fleet holds.
    assert result["wrong_totals"] == []
    for size, found in zip(sizes, result["results"], strict=True):
        assert found["devices"] == size
        for name, query in found["api"].items():
            assert query["returned"] == min(query["total"], fleet.PAGE) or name == "middle page"
        # The dashboard heard of every device going offline, and a listed
        # device could connect to the broker with its generated password.
        assert found["flood"]["dashboard_devices"] == size, found["flood"]
        assert found["acl"]["device_connects"] is True
        assert found["unpaged"]["devices"] == size
        tables = found["structures"]
        assert set(tables) == {"device id strings (shared)", *fleet.BOUNDS}
        assert tables["device names (holders)"]["held"] == size
    # The printed tables are the JSON's: a column per size, a line per figure.
    assert result["table"] in finished.stdout
    assert result["structures_table"] in finished.stdout
    lines = result["table"].splitlines()
    assert lines[0] == f"| figure | {' | '.join(f'{s:,}' for s in sizes)} | target | met |"
    assert len(lines) == 2 + len(result["figures"])
