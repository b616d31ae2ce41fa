"""The dashboard's rendering cost at 100 devices x 5 metrics x 10 Hz
(5,000 readings/s) in real Chromium.

telemetry-sim feeds the hub (its own process, MQTT QoS 1); Chromium opens the
page with one device's charts and the whole list, and for `--seconds` the
page records its requestAnimationFrame deltas while a CDP session samples
the renderer's `Performance.getMetrics` (TaskDuration, ScriptDuration, ...).

    python -m bench.dashboard [--devices 100] [--rate 10] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from bench.harness import broker, hub, machine, mqtt_fleet, percentile
from tests.browser import ROOT, chromium, hub_state, open_dashboard, page_build_problem

RESULTS = ROOT / "bench" / "results"

# Frame deltas from requestAnimationFrame, collected by the page itself.
COLLECT_FRAMES = """(ms) => new Promise((resolve) => {
  const deltas = [];
  let last = null;
  const end = performance.now() + ms;
  const tick = (t) => {
    if (last !== null) deltas.push(t - last);
    last = t;
    if (t < end) requestAnimationFrame(tick); else resolve(deltas);
  };
  requestAnimationFrame(tick);
})"""

CPU_METRICS = ("TaskDuration", "ScriptDuration", "LayoutDuration", "RecalcStyleDuration")


async def performance_metrics(cdp: Any) -> dict[str, float]:
    answer = await cdp.send("Performance.getMetrics")
    return {m["name"]: float(m["value"]) for m in answer["metrics"]}


async def measure(url: str, device: str, seconds: float, warmup: float) -> dict[str, Any]:
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1440, "height": 900})
        await open_dashboard(page, f"{url}/#device={device}")
        cdp = await page.context.new_cdp_session(page)
        await cdp.send("Performance.enable", {"timeDomain": "threadTicks"})
        await asyncio.sleep(warmup)
        before_state = await hub_state(page)
        before = await performance_metrics(cdp)
        started = time.monotonic()
        deltas: list[float] = await page.evaluate(COLLECT_FRAMES, seconds * 1000)
        wall = time.monotonic() - started
        after = await performance_metrics(cdp)
        after_state = await hub_state(page)
        await page.screenshot(path=str(RESULTS / "dashboard.png"))
    received = after_state["stats"]["readings"] - before_state["stats"]["readings"]
    open_series = after_state["open"]["series"]
    return {
        "wall": wall,
        "deltas": deltas,
        "cpu": {name: (after[name] - before[name]) / wall for name in CPU_METRICS},
        "heap_mb": after.get("JSHeapUsedSize", 0) / 1e6,
        "received_per_s": received / wall,
        "devices": len(after_state["devices"]),
        "charts": {name: s["points"] for name, s in open_series.items()},
        "state": after_state["connection"]["state"],
    }


def report(result: dict[str, Any], offered: float) -> None:
    deltas = result["deltas"]
    cpu = result["cpu"]
    print(f"machine: {machine()}")
    print(
        f"offered {offered:,.0f} readings/s; the page received "
        f"{result['received_per_s']:,.0f} readings/s over {result['wall']:.1f} s "
        f"({result['devices']} devices listed, connection {result['state']})"
    )
    print(f"open device charts (points per metric): {result['charts']}")
    print(
        f"frames: {len(deltas)} ({len(deltas) / result['wall']:.1f} fps); delta ms: "
        f"mean {statistics.fmean(deltas):.1f}, p95 {percentile(deltas, 0.95):.1f}, "
        f"p99 {percentile(deltas, 0.99):.1f}, max {max(deltas):.1f}; "
        f"over 50 ms: {sum(d > 50 for d in deltas)}"
    )
    print(
        "renderer main thread, share of wall time: "
        f"tasks {cpu['TaskDuration']:.1%} (script {cpu['ScriptDuration']:.1%}, "
        f"layout {cpu['LayoutDuration']:.1%}, style {cpu['RecalcStyleDuration']:.1%}); "
        f"JS heap {result['heap_mb']:.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10.0, help="messages/s per device")
    parser.add_argument("--metrics", default="a,b,c,d,e")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    args = parser.parse_args()
    problem = page_build_problem()
    if problem:
        raise SystemExit(problem)
    metrics = args.metrics.split(",")
    offered = args.devices * args.rate * len(metrics)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with broker() as mosquitto, hub(mosquitto.url) as running:
        sim = mqtt_fleet(
            mosquitto.url, args.devices, args.rate, args.warmup + args.seconds + 10, args.metrics
        )
        try:
            result = asyncio.run(measure(running.url, "sim-000", args.seconds, args.warmup))
        finally:
            sim.terminate()
            sim.wait(30)
    report(result, offered)


if __name__ == "__main__":
    main()
