"""Soak: the hub left running under steady load, sampled once a second.

A private Mosquitto and the hub in its own process (default `config.toml`,
its own store); telemetry-sim sends `--devices` x `--rate` messages a second
of 3 metrics each over MQTT (QoS 1); `--dashboards` Node.js socket.io-client
dashboards on websocket, subscribed to everything, report the latency of
every reading (their clock minus the device's timestamp, same machine).

Every second it reads the hub's WAL and database file sizes, its RSS
(anonymous and file-backed, from /proc) and /metrics; every `--report`
seconds it prints a row. At the end it checks the targets of issue 13:

- the WAL at most 64 MiB at every sample;
- anonymous RSS growth at most 8 MB after the first minute (the last
  minute's mean over the first's; the peak is reported beside it);
- readings stored = readings sent;
- latency p99 over the last minute within 1.5x of the first minute after
  the warm-up;

and reports WAL bytes, database bytes and commits per reading. Rows and
results go to `bench/results/soak-<time>.json`.

    python -m bench.soak                        # 1 hour at 6,000 readings/s
    python -m bench.soak --minutes 2            # what CI runs (tests/test_soak.py)
    python -m bench.soak --retention 2m         # with storage.retention set
"""

from __future__ import annotations

import argparse
import json
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any

from bench.harness import ROOT, broker, hub, machine, mqtt_fleet, summary

CLIENTS = ROOT / "bench" / "node" / "soak_clients.js"
RESULTS = ROOT / "bench" / "results"
MiB = 1024 * 1024

WAL_LIMIT = 64 * MiB
RSS_GROWTH_LIMIT = 8 * 1000 * 1000  # bytes of anonymous RSS after the first minute
P99_GROWTH_LIMIT = 1.5


@dataclass(frozen=True, slots=True)
class Options:
    """What a soak run does."""

    seconds: float = 3600.0
    devices: int = 20
    rate: float = 100.0  # messages per second per device, 3 readings each
    dashboards: int = 20
    warmup: float = 60.0  # s: RSS growth and the start latency are taken after this
    window: float = 60.0  # s of samples behind the start and end latency
    report: float = 30.0  # s between printed rows
    retention: str = ""  # storage.retention for the hub, e.g. "2m"
    abort_wal: int = 4096 * MiB  # stop early (and fail) once the WAL passes this
    # more settings for the hub, as HUB_<KEY> names them: {"storage__batch_max": "500"}
    overrides: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Sample:
    """One second of the hub, as seen from outside and through /metrics."""

    t: float
    wal: int
    db: int
    rss_anon: int
    rss_file: int
    stored: float
    commits: float
    commit_seconds: float
    wal_written: float | None  # hub_wal_written_bytes_total, where the hub has it
    received: int = 0  # readings the dashboards got in this second
    histogram: dict[int, int] = field(default_factory=dict)


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def rss(pid: int) -> tuple[int, int]:
    """(anonymous, file-backed) RSS in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("RssAnon", "RssFile"):
            fields[name] = int(value.split()[0]) * 1024
    return fields["RssAnon"], fields["RssFile"]


def scrape(url: str) -> dict[str, float]:
    """Every sample of /metrics, summed over labels."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    values: Counter[str] = Counter()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name.partition("{")[0]] += float(value)
    return dict(values)


def percentile(histogram: dict[int, int], fraction: float) -> float | None:
    total = sum(histogram.values())
    if not total:
        return None
    rank = round(fraction * (total - 1))
    seen = 0
    for ms in sorted(histogram):
        seen += histogram[ms]
        if seen > rank:
            return float(ms)
    return float(max(histogram))


def merged(samples: list[Sample]) -> dict[int, int]:
    total: Counter[int] = Counter()
    for sample in samples:
        total.update(sample.histogram)
    return dict(total)


class Dashboards:
    """The Node.js dashboards, read on a thread: one histogram per second."""

    def __init__(self, url: str, count: int):
        self.process = subprocess.Popen(
            ["node", str(CLIENTS), url, str(count), "1000"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        ready = json.loads(self.process.stdout.readline())
        self.connected = int(ready["connected"])
        self.lines: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._lock:
                self.lines.append(json.loads(line))

    def take(self) -> list[dict[str, Any]]:
        with self._lock:
            lines, self.lines = self.lines, []
        return lines

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


def run(options: Options, *, quiet: bool = False) -> dict[str, Any]:
    say = (lambda *_: None) if quiet else print
    overrides = dict(options.overrides)
    if options.retention:
        overrides["storage__retention"] = options.retention
    samples: list[Sample] = []
    aborted = ""
    with broker() as mosquitto, hub(mosquitto.url, **overrides) as running:
        wal_path = Path(f"{running.db}-wal")
        dashboards = Dashboards(running.url, options.dashboards)
        sim = mqtt_fleet(mosquitto.url, options.devices, options.rate, options.seconds)
        say(
            f"soak: {options.devices} devices x {options.rate:g} msg/s x 3 metrics = "
            f"{options.devices * options.rate * 3:,.0f} readings/s, "
            f"{dashboards.connected} dashboards, {options.seconds:g} s; {machine()}"
        )
        say(header())
        started = time.monotonic()
        next_report = options.report
        try:
            while sim.poll() is None:
                time.sleep(max(0.0, started + len(samples) + 1 - time.monotonic()))
                sample = take_sample(running.url, running.process.pid, running.db, wal_path)
                sample.t = time.monotonic() - started
                for line in dashboards.take():
                    sample.received += int(line["received"])
                    for ms, n in line["histogram"].items():
                        sample.histogram[int(ms)] = sample.histogram.get(int(ms), 0) + int(n)
                samples.append(sample)
                if sample.t >= next_report:
                    say(row(samples, options.report))
                    next_report += options.report
                if sample.wal > options.abort_wal:
                    aborted = f"the WAL passed {options.abort_wal / MiB:.0f} MiB"
                    say(f"aborting: {aborted}")
                    sim.terminate()
                    break
            output, _ = sim.communicate(timeout=60)
            sent = summary(output)
            # what was sent is committed within moments of the last message
            deadline = time.monotonic() + 30
            stored = scrape(running.url).get("hub_readings_stored_total", 0.0)
            while stored < sent["sent"] * 3 and time.monotonic() < deadline and not aborted:
                time.sleep(0.2)
                stored = scrape(running.url).get("hub_readings_stored_total", 0.0)
            final = take_sample(running.url, running.process.pid, running.db, wal_path)
        finally:
            dashboards.close()
            if sim.poll() is None:
                sim.kill()
    result = results(options, samples, sent, stored, final, aborted)
    say(report(result))
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"soak-{stamp}.json").write_text(
        json.dumps({**result, "samples": [asdict(s) for s in samples]}, indent=1)
    )
    return result


def take_sample(url: str, pid: int, db: Path, wal: Path) -> Sample:
    metrics = scrape(url)
    anon, filed = rss(pid)
    return Sample(
        t=0.0,
        wal=file_size(wal),
        db=file_size(db),
        rss_anon=anon,
        rss_file=filed,
        stored=metrics.get("hub_readings_stored_total", 0.0),
        commits=metrics.get("hub_commits_total", 0.0),
        commit_seconds=metrics.get("hub_commit_seconds_total", 0.0),
        wal_written=metrics.get("hub_wal_written_bytes_total"),
    )


def per_reading(later: float | None, earlier: float | None, readings: float) -> float | None:
    if later is None or earlier is None or readings <= 0:
        return None
    return (later - earlier) / readings


def results(
    options: Options,
    samples: list[Sample],
    sent: dict[str, float],
    stored: float,
    final: Sample,
    aborted: str,
) -> dict[str, Any]:
    after_warmup = [s for s in samples if s.t >= options.warmup] or samples[-1:]
    first = after_warmup[0]
    last = samples[-1]
    start = [s for s in after_warmup if s.t < first.t + options.window]
    end = [s for s in samples if s.t > last.t - options.window]
    readings = last.stored - first.stored
    seconds = max(last.t - first.t, 1e-9)
    # Without the hub's own count, a WAL that never restarted grew by what was written.
    wal_written = (
        per_reading(last.wal_written, first.wal_written, readings)
        if last.wal_written is not None
        else per_reading(float(last.wal), float(first.wal), readings)
    )
    p99_start = percentile(merged(start), 0.99)
    p99_end = percentile(merged(end), 0.99)
    wal_max = max(s.wal for s in samples)
    # growth is the trend (the last window's mean over the first's); a peak
    # is one moment, reported beside it
    rss_start = mean(s.rss_anon for s in start)
    rss_growth = mean(s.rss_anon for s in end) - rss_start
    rss_peak = max(s.rss_anon for s in after_warmup) - rss_start
    readings_sent = sent["sent"] * 3
    checks = {
        "wal_max_bytes <= 64 MiB": wal_max <= WAL_LIMIT,
        "anonymous RSS growth after the warm-up <= 8 MB": rss_growth <= RSS_GROWTH_LIMIT,
        "stored == sent": stored == readings_sent and not aborted,
        "p99 end <= 1.5x start": (
            p99_start is not None
            and p99_end is not None
            and p99_end <= P99_GROWTH_LIMIT * max(p99_start, 1.0)
        ),
    }
    return {
        "options": asdict(options),
        "machine": machine(),
        "aborted": aborted,
        "seconds": last.t,
        "readings_sent": readings_sent,
        "readings_stored": stored,
        "wal_max_bytes": wal_max,
        "wal_end_bytes": final.wal,
        "db_end_bytes": final.db,
        "rss_anon_after_warmup": rss_start,
        "rss_anon_growth": rss_growth,
        "rss_anon_peak_growth": rss_peak,
        "rss_file_growth": mean(s.rss_file for s in end) - mean(s.rss_file for s in start),
        "wal_bytes_per_reading": wal_written,
        "db_bytes_per_reading": per_reading(float(last.db), float(first.db), readings),
        "commits_per_second": (last.commits - first.commits) / seconds,
        "readings_per_commit": readings / max(last.commits - first.commits, 1),
        "commit_ms": 1000
        * (last.commit_seconds - first.commit_seconds)
        / max(last.commits - first.commits, 1),
        "p50_start_ms": percentile(merged(start), 0.5),
        "p99_start_ms": p99_start,
        "p50_end_ms": percentile(merged(end), 0.5),
        "p99_end_ms": p99_end,
        "checks": checks,
        "ok": all(checks.values()),
    }


def header() -> str:
    return (
        f"{'t s':>6} {'stored':>11} {'WAL MiB':>8} {'DB MiB':>8} {'anon MiB':>8} "
        f"{'file MiB':>8} {'commit/s':>8} {'WAL B/rd':>8} {'DB B/rd':>7} "
        f"{'p50 ms':>6} {'p99 ms':>6}"
    )


def row(samples: list[Sample], span: float) -> str:
    last = samples[-1]
    window = [s for s in samples if s.t > last.t - span]
    before = samples[max(0, len(samples) - len(window) - 1)]
    readings = last.stored - before.stored
    seconds = max(last.t - before.t, 1e-9)
    wal = per_reading(last.wal_written, before.wal_written, readings)
    db = per_reading(float(last.db), float(before.db), readings)
    histogram = merged(window)
    p50, p99 = percentile(histogram, 0.5), percentile(histogram, 0.99)
    return (
        f"{last.t:6.0f} {last.stored:11,.0f} {last.wal / MiB:8.1f} {last.db / MiB:8.1f} "
        f"{last.rss_anon / MiB:8.1f} {last.rss_file / MiB:8.1f} "
        f"{(last.commits - before.commits) / seconds:8.1f} "
        f"{'-' if wal is None else f'{wal:.0f}':>8} {'-' if db is None else f'{db:.0f}':>7} "
        f"{'-' if p50 is None else f'{p50:.0f}':>6} {'-' if p99 is None else f'{p99:.0f}':>6}"
    )


def report(result: dict[str, Any]) -> str:
    def n(key: str, scale: float = 1.0, digits: int = 1) -> str:
        value = result[key]
        return "-" if value is None else f"{value / scale:,.{digits}f}"

    aborted = f" (aborted: {result['aborted']})" if result["aborted"] else ""
    sent, stored = result["readings_sent"], result["readings_stored"]
    latency = (
        f"start {n('p50_start_ms', digits=0)}/{n('p99_start_ms', digits=0)} ms, "
        f"end {n('p50_end_ms', digits=0)}/{n('p99_end_ms', digits=0)} ms"
    )
    lines = [
        f"soak over {result['seconds']:.0f} s{aborted}",
        f"  readings sent {sent:,.0f}, stored {stored:,.0f}",
        f"  WAL max {n('wal_max_bytes', MiB)} MiB, at the end {n('wal_end_bytes', MiB)} MiB; "
        f"database {n('db_end_bytes', MiB)} MiB",
        f"  anonymous RSS {n('rss_anon_after_warmup', MiB)} MiB after warm-up, then "
        f"{n('rss_anon_growth', 1e6)} MB (peak {n('rss_anon_peak_growth', 1e6)} MB); "
        f"file-backed {n('rss_file_growth', 1e6)} MB",
        f"  per reading: WAL {n('wal_bytes_per_reading', digits=0)} B, "
        f"database {n('db_bytes_per_reading', digits=0)} B; "
        f"{n('commits_per_second')} commits/s of {n('readings_per_commit')} readings, "
        f"each {n('commit_ms')} ms",
        f"  latency p50/p99: {latency}",
    ]
    lines += [f"  {'met ' if ok else 'MISSED'} {name}" for name, ok in result["checks"].items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--rate", type=float, default=100.0, help="messages/s per device")
    parser.add_argument("--dashboards", type=int, default=20)
    parser.add_argument("--report", type=float, default=30.0, help="seconds between rows")
    parser.add_argument("--retention", default="", help="storage.retention, e.g. 2m")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION__KEY=VALUE",
        help="a hub setting, as HUB_SECTION__KEY=VALUE would set it (repeatable)",
    )
    parser.add_argument("--abort-wal-mib", type=float, default=4096.0)
    args = parser.parse_args()
    options = Options(
        seconds=args.minutes * 60,
        devices=args.devices,
        rate=args.rate,
        dashboards=args.dashboards,
        warmup=min(60.0, args.minutes * 60 / 4),
        window=min(60.0, args.minutes * 60 / 4),
        report=args.report,
        retention=args.retention,
        abort_wal=int(args.abort_wal_mib * MiB),
        overrides=dict(item.split("=", 1) for item in args.set),
    )
    result = run(options)
    raise SystemExit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
