"""Fan-out to 100 dashboards: the hub against two Node.js Socket.IO servers
(issue 7), and the hub's polling against its websocket figure.

For each server, a ramp of offered rates (doubling from 500 readings/s, then
`--refine` bisections between the last step that passed and the first that
failed) finds the highest rate at which 100 dashboards subscribed to `*` get
every reading with a p99 latency under 100 ms. The figure is the readings
per second delivered, summed over the dashboards (per-client rate x 100).

    python -m bench.fanout            # full: a few minutes
    python -m bench.fanout --smoke    # one short step per server (~30 s), for CI
    python -m bench.fanout --help     # rates, clients, step lengths

Servers (one at a time, each step on a fresh broker and a fresh server):
- `hub`: `telemetry-hub serve` via `bench.harness.hub` (QoS 1, acknowledged
  after the SQLite commit, everything stored, one frame per tick).
- `per_reading`: `bench/node/per_reading.js`, one `reading` event per reading.
- `batching`: `bench/node/batching.js`, one `readings` frame per 20 ms tick.
The Node servers subscribe at QoS 0 and store nothing.

Load, the same for every server (`bench/node`; run `npm ci --prefix
bench/node` once):
- `publish.js`: envelopes of 3 metrics for 10 devices at QoS 1, so that the
  hub gets QoS 1 messages and takes its real at-least-once path (MQTT
  delivers at the lower of the publish and subscribe QoS; the Node servers
  get QoS 0). Node, because paho-mqtt in Python needs about four times the
  CPU per message and could not offer 10,000 msg/s here.
- `clients.js`: the dashboards (socket.io-client, websocket or polling only),
  in `--client-processes` Node processes. Latency is the dashboard's clock
  minus the reading's `ts`, stamped by the publisher when it sends.

A step passes when every dashboard received every reading published in the
measured window (by `ts`, after the warm-up), p99 < 100 ms, and the publisher
kept its rate. Each step also reports the CPU (% of one core) of the broker,
the server, the clients and the publisher over the window, and what else
used the machine ("other"): everything shares this machine's cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from bench.harness import broker, hub, machine
from tests.brokers import free_port

NODE_DIR = Path(__file__).resolve().parent / "node"
SERVERS = ("hub", "per_reading", "batching")
METRICS_PER_MESSAGE = 3
PUBLISHER_SHORTFALL = 0.97  # below this share of the offered rate, the step is void
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Options:
    clients: int = 100
    devices: int = 10
    start: float = 500.0  # readings/s offered at the first step
    ceiling: float = 512_000.0  # stop doubling here
    floor: float = 50.0  # stop halving here (when the first step fails)
    refine: int = 2  # bisections after the first failure
    warmup: float = 2.0
    seconds: float = 5.0
    drain: float = 5.0  # how long after the window the dashboards may lag
    client_processes: int = 1
    p99_limit: float = 100.0  # ms
    quiet: float = 25.0  # before a step, wait for others' CPU use to fall under this %
    patience: float = 120.0  # ... for at most this long
    retries: int = 2  # a step failed while others used over `quiet` % is run again


# A rate every server manages, to check that everything runs and yields each
# figure; the ratios of a smoke run mean nothing. CI machines are noisy: a
# smoke step fails on lost readings, not on a slow second.
SMOKE = Options(
    start=150.0,
    ceiling=150.0,
    refine=0,
    warmup=1.0,
    seconds=2.0,
    drain=3.0,
    p99_limit=1000.0,
    patience=5.0,
    retries=0,
)


@dataclass(frozen=True, slots=True)
class Step:
    server: str
    transport: str
    offered: float  # readings/s
    published: int  # readings published in the window (per dashboard)
    delivered: float  # readings/s summed over the dashboards
    lost: int  # readings the worst dashboard missed
    p50: float
    p90: float
    p99: float
    max: float
    cpu: dict[str, float] = field(default_factory=dict)  # % of one core over the window
    failure: str = ""  # empty when the step passed

    @property
    def passed(self) -> bool:
        return not self.failure


@dataclass(frozen=True, slots=True)
class Ramp:
    server: str
    transport: str
    steps: tuple[Step, ...]

    @property
    def best(self) -> Step | None:
        passed = [s for s in self.steps if s.passed]
        return max(passed, key=lambda s: s.offered) if passed else None

    @property
    def delivered(self) -> float:
        best = self.best
        return best.delivered if best else 0.0


# -- processes -----------------------------------------------------------------


def node() -> str:
    binary = shutil.which("node")
    if binary is None:
        raise RuntimeError("bench.fanout needs Node.js (node) on PATH")
    if not (NODE_DIR / "node_modules").is_dir():
        raise RuntimeError(f"run `npm ci --prefix {NODE_DIR}` first")
    return binary


def spawn(script: str, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [node(), str(NODE_DIR / script), *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def read_json(stream: TextIO | None, timeout: float) -> dict[str, Any]:
    """The next line a Node process prints, as JSON; its lines are whole."""
    assert stream is not None
    ready, _, _ = select.select([stream], [], [], timeout)
    line = stream.readline() if ready else ""
    if not line:
        raise RuntimeError(f"no answer from a Node process within {timeout:.0f} s")
    result: dict[str, Any] = json.loads(line)
    return result


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def serving(server: str, mqtt_url: str) -> Iterator[tuple[str, int]]:
    """(url, pid) of one server, running until the block ends."""
    if server == "hub":
        with contextlib.ExitStack() as stack:
            # Slow-commit warnings would break up the table; the CPU columns
            # tell the same story.
            running = stack.enter_context(hub(mqtt_url, LOG__LEVEL="error"))
            try:
                yield running.url, running.process.pid
            finally:
                # A hub that fell far behind may take longer than the harness
                # waits to drain; the figure is taken, so cut it short.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    stack.close()
                if running.process.poll() is None:
                    running.process.kill()
                    running.process.wait()
        return
    port = free_port()
    process = spawn(f"{server}.js", port, mqtt_url)
    try:
        read_json(process.stdout, 20)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        stop(process)


def cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def machine_ticks() -> tuple[int, int]:
    """CPU time the whole machine spent busy, and of it in interrupts (which
    no process is charged for: loopback networking is mostly softirq)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values) - values[3] - values[4], values[5] + values[6]


def busy_ticks() -> int:
    return machine_ticks()[0]


def cpu_snapshot(pids: dict[str, list[int]]) -> dict[str, int]:
    snapshot = {name: sum(cpu_ticks(p) for p in group) for name, group in pids.items()}
    snapshot["machine"], snapshot["irq"] = machine_ticks()
    return snapshot


def cpu_share(before: dict[str, int], after: dict[str, int], seconds: float) -> dict[str, float]:
    used = {name: (after[name] - before[name]) / TICKS / seconds * 100 for name in before}
    used["other"] = used.pop("machine") - sum(used.values())
    return {name: round(value) for name, value in used.items()}


def wait_for_quiet(limit: float, patience: float) -> float:
    """Wait (at most `patience` s) until the machine, busy with others' work
    alone, uses under `limit` % of one core; the share seen last."""
    deadline = time.monotonic() + patience
    while True:
        before = busy_ticks()
        time.sleep(1.0)
        share = (busy_ticks() - before) / TICKS * 100
        if share < limit or time.monotonic() > deadline:
            return share


def sleep_until(epoch_ms: float) -> None:
    time.sleep(max(0.0, epoch_ms / 1000 - time.time()))


# -- one step, one ramp ----------------------------------------------------------


def percentiles(histogram: dict[int, int]) -> dict[str, float]:
    total = sum(histogram.values())
    if not total:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    out: dict[str, float] = {}
    for name, fraction in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        rank, seen = round(fraction * (total - 1)), 0
        for ms in sorted(histogram):
            seen += histogram[ms]
            if seen > rank:
                out[name] = float(ms)
                break
    out["max"] = float(max(histogram))
    return out


def run_step(server: str, transport: str, offered: float, options: Options) -> Step:
    wait_for_quiet(options.quiet, options.patience)
    groups = [
        options.clients // options.client_processes
        + (k < options.clients % options.client_processes)
        for k in range(options.client_processes)
    ]
    with broker() as mosquitto, serving(server, mosquitto.url) as (url, server_pid):
        clients = [
            spawn("clients.js", url, n, transport, options.drain * 1000) for n in groups if n
        ]
        publisher: subprocess.Popen[str] | None = None
        try:
            connected = sum(read_json(c.stdout, 60)["connected"] for c in clients)
            start = time.time() * 1000
            window = (
                start + options.warmup * 1000,
                start + (options.warmup + options.seconds) * 1000,
            )
            for c in clients:
                assert c.stdin is not None
                c.stdin.write(f"{window[0]:.0f} {window[1]:.0f}\n")
                c.stdin.flush()
            publisher = spawn(
                "publish.js",
                mosquitto.url,
                options.devices,
                offered / METRICS_PER_MESSAGE,
                options.warmup + options.seconds + 0.5,  # past the window: ends the drain
                1,
                f"{window[0]:.0f}",
                f"{window[1]:.0f}",
            )
            assert mosquitto.process is not None
            pids = {
                "broker": [mosquitto.process.pid],
                "server": [server_pid],
                "clients": [c.pid for c in clients],
                "publisher": [publisher.pid],
            }
            sleep_until(window[0])
            before = cpu_snapshot(pids)
            sleep_until(window[1])
            cpu = cpu_share(before, cpu_snapshot(pids), options.seconds)
            sent = read_json(publisher.stdout, options.seconds + 60)
            deadline = options.drain + 60
            results = [read_json(c.stdout, deadline) for c in clients]
        finally:
            for process in [*clients, publisher]:
                if process is not None:
                    stop(process)
    histogram: dict[int, int] = {}
    for result in results:
        for ms, n in result["histogram"].items():
            histogram[int(ms)] = histogram.get(int(ms), 0) + n
    published = sent["in_window"] * METRICS_PER_MESSAGE
    lost = published - min(r["min_received"] for r in results)
    latency = percentiles(histogram)
    failure = ""
    if connected < options.clients:
        failure = f"{options.clients - connected} dashboards not connected"
    elif published < PUBLISHER_SHORTFALL * offered * options.seconds:
        failure = f"publisher sent only {published / options.seconds:,.0f} readings/s"
    elif lost > 0:
        failure = f"{lost:,} readings lost or late (> {options.drain:g} s)"
    elif latency["p99"] >= options.p99_limit:
        failure = f"p99 {latency['p99']:.0f} ms"
    return Step(
        server=server,
        transport=transport,
        offered=offered,
        published=published,
        delivered=sum(r["received"] for r in results) / options.seconds,
        lost=lost,
        cpu=cpu,
        failure=failure,
        **latency,
    )


def ramp(server: str, transport: str, options: Options, report: bool = True) -> Ramp:
    """Double the rate until a step fails (or halve it until one passes), then
    bisect `options.refine` times between the best pass and the first failure."""
    steps: list[Step] = []

    def step(rate: float) -> Step:
        for attempt in range(options.retries + 1):
            result = run_step(server, transport, rate, options)
            steps.append(result)
            # Others' work on this shared machine can fail a step the server
            # would pass: such a failure does not count until it repeats.
            interfered = result.cpu.get("other", 0) >= options.quiet
            again = not result.passed and interfered and attempt < options.retries
            if report:
                print(row(result) + (" (others busy: again)" if again else ""), flush=True)
            if not again:
                break
        return result

    passed, failed = 0.0, 0.0
    rate = options.start
    while True:
        if step(rate).passed:
            passed = rate
        else:
            failed = rate
        if passed and not failed and rate * 2 <= options.ceiling:
            rate *= 2  # up while it passes
        elif failed and not passed and rate / 2 >= options.floor:
            rate /= 2  # down while it fails
        else:
            break
    for _ in range(options.refine if passed and failed else 0):
        middle = (passed + failed) / 2
        if step(middle).passed:
            passed = middle
        else:
            failed = middle
    return Ramp(server, transport, tuple(steps))


# -- the benchmark ----------------------------------------------------------------


def fanout(options: Options = Options()) -> dict[str, Any]:
    """Run every ramp; the figures (delivered readings/s), their ratios, and
    every step."""
    print(f"machine: {machine()}", flush=True)
    print(header(), flush=True)
    ramps = [ramp(server, "websocket", options) for server in SERVERS]
    ramps.append(ramp("hub", "polling", options))
    hub_ws, per_reading, batching, hub_polling = (r.delivered for r in ramps)
    figures = {
        "hub_websocket": hub_ws,
        "per_reading": per_reading,
        "batching": batching,
        "hub_polling": hub_polling,
    }
    ratios = {
        "hub_per_reading": ratio(hub_ws, per_reading),
        "hub_batching": ratio(hub_ws, batching),
        "polling_websocket": ratio(hub_polling, hub_ws),
    }
    return {
        "machine": machine(),
        "options": asdict(options),
        "figures": figures,
        "ratios": ratios,
        "steps": [asdict(s) for r in ramps for s in r.steps],
        "best": {f"{r.server}/{r.transport}": asdict(r.best) if r.best else None for r in ramps},
    }


def ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else float("nan")


def header() -> str:
    return (
        f"{'server':<12} {'transport':<9} {'offered/s':>9} {'delivered/s':>11} "
        f"{'p50':>5} {'p99':>6} {'max':>6}  "
        "cpu % (broker server clients publisher irq other)  result"
    )


def row(step: Step) -> str:
    cpu = " ".join(
        f"{step.cpu.get(k, 0):>3.0f}"
        for k in ("broker", "server", "clients", "publisher", "irq", "other")
    )
    return (
        f"{step.server:<12} {step.transport:<9} {step.offered:>9,.0f} {step.delivered:>11,.0f} "
        f"{step.p50:>5.0f} {step.p99:>6.0f} {step.max:>6.0f}  {cpu:<44} "
        f"{step.failure or 'pass'}"
    )


def summary(result: dict[str, Any]) -> str:
    ratios, best = result["ratios"], result["best"]
    lines = [
        "",
        "| server | dashboards | best offered readings/s | delivered readings/s | p99 ms |",
        "|---|---|---|---|---|",
    ]
    names = {
        "hub/websocket": "hub",
        "per_reading/websocket": "Node, one emit per reading",
        "batching/websocket": "Node, one frame per 20 ms",
        "hub/polling": "hub",
    }
    for key, name in names.items():
        step = best[key]
        transport = key.split("/")[1]
        if step is None:
            lines.append(f"| {name} | 100 {transport} | none passed | 0 | - |")
        else:
            lines.append(
                f"| {name} | 100 {transport} | {step['offered']:,.0f} | "
                f"{step['delivered']:,.0f} | {step['p99']:.0f} |"
            )
    lines += [
        "",
        f"hub / per-reading Node: {ratios['hub_per_reading']:.2f} (target >= 3.0)",
        f"hub / batching Node:    {ratios['hub_batching']:.2f} (target >= 0.5)",
        f"hub polling / websocket: {ratios['polling_websocket']:.2f} (target >= 0.5)",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="one short step per server")
    defaults = SMOKE if "--smoke" in sys.argv else Options()
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    options = Options(**{name: getattr(args, name) for name in asdict(defaults)})
    result = fanout(options)
    print(summary(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    missing = [name for name, value in result["figures"].items() if not value]
    if missing:
        sys.exit(f"no step passed for: {', '.join(missing)}")


if __name__ == "__main__":
    main()
