"""The benchmark suite (`make bench`): every figure of docs/performance.md,
measured side by side in one run on this machine, each against its baseline.

    python -m bench.suite                   # the full suite: about 20 minutes
    python -m bench.suite --smoke           # short runs of everything (CI)
    python -m bench.suite --only fanout,latency

It prints a table and writes the figures, with every step behind them, to
`bench/results/suite-<time>.json` (and `bench/results/suite.json`). Ratios
are the figure ÷ its baseline, both measured in this run: the machines are
shared and noisy, so absolute figures from different runs do not compare.
Targets are reported, not enforced; a smoke run's ratios mean nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench import cluster, fanout, fleet, ingest_ratio, latency, memory, replay
from bench.harness import ROOT, broker, hub, machine, percentile

RESULTS = ROOT / "bench" / "results"
DASHBOARDS = 10  # websocket dashboards watching the latency runs


@dataclass(frozen=True, slots=True)
class Figure:
    """One line of the table."""

    name: str
    value: float
    unit: str
    baseline: str = ""  # what the value is divided by, when it has one
    baseline_value: float | None = None
    target: str = ""  # e.g. ">= 0.6", on the ratio if there is one, else on the value
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline_value is None:
            return None
        return self.value / self.baseline_value if self.baseline_value else float("nan")


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much of everything a run does."""

    ingest_messages: int
    fanout: fanout.Options
    latency_seconds: float
    latency_warmup: float
    replay_backlog: int
    memory_connections: int
    memory_stall: float
    storm_clients: int
    storm_behind: int
    cluster_messages: int
    fleet: fleet.Options


FULL = Sizes(
    ingest_messages=200_000,
    fanout=fanout.Options(),
    latency_seconds=20.0,
    latency_warmup=3.0,
    replay_backlog=100_000,
    memory_connections=1000,
    memory_stall=60.0,
    storm_clients=200,
    storm_behind=5000,
    cluster_messages=100_000,
    fleet=fleet.Options(),
)
SMOKE = Sizes(
    ingest_messages=4_000,
    fanout=fanout.SMOKE,
    latency_seconds=3.0,
    latency_warmup=1.0,
    replay_backlog=5_000,
    memory_connections=50,
    memory_stall=3.0,
    storm_clients=10,
    storm_behind=500,
    cluster_messages=2_000,
    fleet=fleet.SMOKE,
)


def at_least(value: float | None, target: float) -> bool | None:
    return None if value is None else value >= target


def at_most(value: float | None, target: float) -> bool | None:
    return None if value is None else value <= target


# -- the parts: each returns its figures and the details behind them --------------


def ingest_part(sizes: Sizes) -> tuple[list[Figure], dict[str, Any]]:
    result = ingest_ratio.measure(sizes.ingest_messages)
    figure = Figure(
        "ingest: hub MQTT QoS 1, stored + acked + 10 dashboards (msg/s)",
        result["hub_msg_s"],
        "msg/s",
        "bare paho-mqtt subscriber",
        result["paho_msg_s"],
    )
    figure = _judged(figure, at_least(figure.ratio, 0.6), ">= 0.6")
    return [figure], result


def fanout_part(sizes: Sizes) -> tuple[list[Figure], dict[str, Any]]:
    result = fanout.fanout(sizes.fanout)
    print(fanout.summary(result), flush=True)
    f = result["figures"]
    hub = "fan-out: hub, 100 websocket dashboards, p99 < 100 ms (readings/s delivered)"
    per_reading = Figure(
        hub, f["hub_websocket"], "readings/s", "Node, one emit per reading", f["per_reading"]
    )
    batching = Figure(
        hub, f["hub_websocket"], "readings/s", "Node, one frame per 20 ms tick", f["batching"]
    )
    polling = Figure(
        "polling: hub, 100 polling-only dashboards (readings/s delivered)",
        f["hub_polling"],
        "readings/s",
        "the hub's websocket figure",
        f["hub_websocket"],
    )
    return [
        _judged(per_reading, at_least(per_reading.ratio, 3.0), ">= 3.0"),
        _judged(batching, at_least(batching.ratio, 1.0), ">= 1.0"),
        _judged(polling, at_least(polling.ratio, 0.75), ">= 0.75"),
    ], result


def latency_part(sizes: Sizes) -> tuple[list[Figure], dict[str, Any]]:
    figures: list[Figure] = []
    details: dict[str, Any] = {}
    for rate in (1000, 5000):
        latencies = latency.measure_rate(
            rate,
            seconds=sizes.latency_seconds,
            warmup=sizes.latency_warmup,
            dashboards=DASHBOARDS,
        )
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        details[str(rate)] = {
            "readings": len(latencies),
            "expected": rate * sizes.latency_seconds * DASHBOARDS,
            "p50": p50,
            "p90": percentile(latencies, 0.9),
            "p99": p99,
            "max": max(latencies),
        }
        name = f"latency at {rate:,} readings/s, {DASHBOARDS} websocket dashboards"
        p50_figure = Figure(f"{name}: p50 (ms)", p50, "ms")
        p99_figure = Figure(f"{name}: p99 (ms)", p99, "ms")
        if rate == 1000:
            p50_figure = _judged(p50_figure, at_most(p50, 5.0), "<= 5 ms")
            p99_figure = _judged(p99_figure, at_most(p99, 20.0), "<= 20 ms")
        figures += [p50_figure, p99_figure]
    return figures, details


def replay_part(sizes: Sizes) -> tuple[list[Figure], dict[str, Any]]:
    with broker() as mosquitto:
        result = replay.replay_against_select(mosquitto.url, sizes.replay_backlog)
    figure = Figure(
        f"replay, no rate limit, {result['readings']:,.0f} readings (readings/s)",
        result["replay_per_s"],
        "readings/s",
        "raw SQLite SELECT of the same rows",
        result["select_per_s"],
    )
    return [_judged(figure, at_least(figure.ratio, 0.5), ">= 0.5")], result


def storm_part(sizes: Sizes) -> tuple[list[Figure], dict[str, Any]]:
    """Live p99 of 5 connected dashboards at 1,000 readings/s while
    `storm_clients` dashboards reconnect at once, each `storm_behind`
    readings behind, against their p99 idle just before."""
    with broker() as mosquitto, hub(mosquitto.url) as running:
        result = asyncio.run(
            replay.storm(running.url, mosquitto.url, sizes.storm_clients, sizes.storm_behind)
        )
    idle, during = result.pop("idle"), result.pop("during")
    result.update(
        idle_p50=percentile(idle, 0.5),
        idle_p99=percentile(idle, 0.99),
        storm_p50=percentile(during, 0.5),
        storm_p99=percentile(during, 0.99),
    )
    figure = Figure(
        f"reconnect storm: live p99 of 5 dashboards while {sizes.storm_clients} reconnect "
        f"{sizes.storm_behind:,} behind (ms)",
        result["storm_p99"],
        "ms",
        "their p99 idle",
        result["idle_p99"],
    )
    return [_judged(figure, at_most(figure.ratio, 2.0), "<= 2.0")], result


def memory_part(sizes: Sizes) -> tuple[list[Figure], dict[str, Any]]:
    result = memory.measure(sizes.memory_connections, sizes.memory_stall)
    idle = Figure(
        f"memory: hub RSS per idle dashboard, {sizes.memory_connections:,} connections (KB)",
        result["kb_per_idle_connection"],
        "KB",
    )
    stalled = Figure(
        f"memory: RSS growth, one dashboard stalled {sizes.memory_stall:g} s (MB)",
        result["stalled_growth_mb"],
        "MB",
    )
    return [
        _judged(idle, at_most(idle.value, 50.0), "<= 50 KB"),
        _judged(stalled, at_most(stalled.value, 20.0), "<= 20 MB"),
    ], result


def cluster_part(sizes: Sizes) -> tuple[list[Figure], dict[str, Any]]:
    """Ingest on PostgreSQL against SQLite, and two hubs against one."""
    result = cluster.measure(sizes.cluster_messages)
    one = Figure(
        "cluster: one hub on PostgreSQL, MQTT QoS 1 stored + acked (msg/s)",
        result["postgres_msg_s"],
        "msg/s",
        "one hub on SQLite",
        result["sqlite_msg_s"],
    )
    two = Figure(
        "cluster: two hubs on PostgreSQL, a shared subscription (msg/s)",
        result["two_hubs_msg_s"],
        "msg/s",
        "one hub on PostgreSQL",
        result["postgres_msg_s"],
    )
    return [
        _judged(one, at_least(one.ratio, 0.5), ">= 0.5"),
        _judged(two, at_least(two.ratio, 1.0), ">= 1.0"),
    ], result


def fleet_part(sizes: Sizes) -> tuple[list[Figure], dict[str, Any]]:
    """The largest fleet's figures (bench/fleet.py); its table, every size
    side by side, is printed and kept in the details."""
    result = fleet.run(sizes.fleet)
    print(result["table"], flush=True)
    last = result["results"][-1]
    n = f"fleet of {last['devices']:,}"

    def value(get: Callable[[dict[str, Any]], float]) -> float:
        try:
            return float(get(last))
        except (KeyError, TypeError):  # a step that failed: no figure
            return 0.0

    def slowest_search(r: dict[str, Any]) -> float:
        found = [r["api"][name] for name in fleet.SEARCHES.values()]
        return float(max(max(q["first_ms"], q["p99_ms"]) for q in found))

    ingest = Figure(
        f"{n}: ingest, one message a new device, until all stored (s)",
        value(lambda r: r["ingest"]["seconds"]),
        "s",
    )
    idle = Figure(
        f"{n}: hub anonymous memory per device, idle after ingest (KB)",
        value(lambda r: r["memory"]["after_ingest_kb"]["anon"]),
        "KB/device",
    )
    restarted = Figure(
        f"{n}: hub anonymous memory per device after a restart (KB)",
        value(lambda r: r["memory"]["after_restart_kb"]["anon"]),
        "KB/device",
    )
    startup = Figure(
        f"{n}: startup on the store, to /readyz 200 (s)",
        value(lambda r: r["startup"]["devices_s"]),
        "s",
    )
    api = Figure(
        f"{n}: GET /api/devices?limit=100, the slowest query's p99 (ms)",
        value(lambda r: max(q["p99_ms"] for q in r["api"].values())),
        "ms",
    )
    search = Figure(
        f"{n}: search by id or attribute, slowest of first and p99 (ms)",
        value(slowest_search),
        "ms",
    )
    stall = Figure(
        f"{n}: presence flood, event loop stall (ms)", value(lambda r: r["flood"]["stall_ms"]), "ms"
    )
    offline = Figure(
        f"{n}: presence flood, until the store shows all offline (s)",
        value(lambda r: r["flood"]["all_offline_s"]),
        "s",
    )
    acl = Figure(
        f"{n}: mosquitto-acl for every device (s)", value(lambda r: r["acl"]["seconds"]), "s"
    )
    return [
        ingest,
        _judged(idle, at_most(idle.value, 1.0), "<= 1 KB"),
        _judged(restarted, at_most(restarted.value, 1.0), "<= 1 KB"),
        startup,
        _judged(api, at_most(api.value, 50.0), "<= 50 ms"),
        _judged(search, at_most(search.value, 500.0), "<= 500 ms"),
        stall,
        offline,
        acl,
    ], result


def _judged(figure: Figure, met: bool | None, target: str) -> Figure:
    return replace(figure, met=met, target=target)


PARTS: dict[str, Callable[[Sizes], tuple[list[Figure], dict[str, Any]]]] = {
    "ingest": ingest_part,
    "fanout": fanout_part,
    "latency": latency_part,
    "replay": replay_part,
    "storm": storm_part,
    "memory": memory_part,
    "cluster": cluster_part,
    "fleet": fleet_part,
}


# -- the table ----------------------------------------------------------------------


def table(figures: list[Figure]) -> str:
    lines = [
        "| figure | value | baseline | baseline value | ratio | target | met |",
        "|---|---:|---|---:|---:|---|---|",
    ]
    for f in figures:
        ratio = "" if f.ratio is None else f"{f.ratio:.2f}"
        base = "" if f.baseline_value is None else _number(f.baseline_value)
        met = {None: "", True: "yes", False: "no"}[f.met]
        lines.append(
            f"| {f.name} | {_number(f.value)} | {f.baseline} | {base} | {ratio} | "
            f"{f.target} | {met} |"
        )
    return "\n".join(lines)


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"


def run(parts: list[str], sizes: Sizes) -> dict[str, Any]:
    figures: list[Figure] = []
    details: dict[str, Any] = {}
    started = time.time()
    for name in parts:
        print(f"\n== {name}", flush=True)
        part_started = time.monotonic()
        found, details[name] = PARTS[name](sizes)
        figures.extend(found)
        print(f"({name}: {time.monotonic() - part_started:.0f} s)", flush=True)
    return {
        "machine": machine(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started),
        "figures": [{**asdict(f), "ratio": f.ratio} for f in figures],
        "details": details,
        "table": table(figures),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="short runs of everything")
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts")
    parser.add_argument("--json", type=Path, help="write the result here (default bench/results)")
    args = parser.parse_args()
    parts = [p for p in args.only.split(",") if p]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {unknown}; the parts are {', '.join(PARTS)}")
    result = run(parts, SMOKE if args.smoke else FULL)
    print(f"\nmachine: {result['machine']}; {result['seconds']} s in all\n")
    print(result["table"])
    text = json.dumps(result, indent=2, default=str)
    if args.json:
        args.json.write_text(text)
    else:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime())
        (RESULTS / f"suite-{stamp}.json").write_text(text)
        (RESULTS / "suite.json").write_text(text)
    # Memory growth may well be 0 MB (or KB a device); any other figure of 0
    # means nothing passed.
    empty = [
        f["name"]
        for f in result["figures"]
        if not f["value"] and f["unit"] not in ("MB", "KB/device")
    ]
    if empty:
        sys.exit(f"no figure for: {'; '.join(empty)}")


if __name__ == "__main__":
    main()
