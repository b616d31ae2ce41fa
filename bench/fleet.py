"""Large fleets (issue 18): what 1,000, 10,000 and 100,000 devices cost the hub,
side by side so that growth shows.

For each size N, on a fresh hub process (`telemetry-hub serve` with the
repository's config.toml, its own SQLite store and its own Mosquitto):

1. ingest: N new devices `fleet-0000000`..., one MQTT message each
   (`{"temperature", "humidity", "battery"}`; every 10th device also sends
   `"group": "north"`, one device `"label": "greenhouse-7"`), published at
   QoS 1 by one paho process; seconds from the first publish until all 3N
   readings are stored.
2. memory: the hub's RSS and anonymous RSS (/proc/PID/status RssAnon) idle
   after the ingest minus idle before it, per device, and per device added
   since the size before (what a device costs past the fixed costs); again
   after a restart on the same store (every device offline, known to the
   store only), against the same hub's first start on an empty store.
   Beside it, the tables the hub keeps per device id, built one by one for
   N ids in a child process and measured with tracemalloc.
3. startup: the hub restarted on the same store, from process start to the
   first /readyz 200; the first start on the empty store for comparison.
4. device API: `GET /api/devices?limit=100` for the first, a middle and the
   last page, and with each filter (status=online, status=offline,
   group=north, q matching one id, q matching one attribute value, q
   matching every device), `--requests` each after a first one; p50/p99.
   Half the devices are online (a retained MQTT status `online`), half
   offline (`offline`). The unpaged `GET /api/devices`: its size and time.
5. search: the first (cold) request and the p99 of `q` finding one device by
   a substring of its id and one by an attribute value.
6. presence flood: every device online over MQTT (a retained status
   `online`), one dashboard (python-socketio) subscribed to `["*"]`; then
   Mosquitto restarts (without persistence: the statuses are gone), the
   hub's broker connection drops and all N go offline at once. Measured:
   the hub's event-loop stall (`/healthz` sent every 10 ms from another
   thread: the slowest answer), the time until the store shows none online,
   and what the dashboard receives (events by name, Socket.IO packet bytes,
   distinct device ids named, and when the last one came).
7. ACL: `telemetry-hub mosquitto-acl` for a config of N `[[devices]]` with
   tokens (every 10th with a group): its time, the passwd and acl sizes,
   and Mosquitto's startup with them (a device then connects with its
   token; given up on after 120 s). The hub restarted with that config (N
   devices listed): its startup, idle memory and the first page's p99.
8. dashboard (when the built page is current): Chromium on the hub with N
   devices: time to the first device row, DOM nodes, JS heap.

The hub runs with `presence.offline_after = 1h` and `dashboard.stale_after =
1h` (a fleet reporting hourly), so that nobody goes offline or stale by
silence during a run; the rate limits are the config's (200/s a device).

    python -m bench.fleet [--sizes 1000,10000,100000] [--requests 50] [--smoke]

It prints a Markdown table (one column per size, the targets and whether
each size met them) and writes everything to `bench/results/fleet-<time>.json`
(and `bench/results/fleet.json`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import http.client
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.error
import urllib.request
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson

from bench.harness import ROOT, broker, machine, percentile
from tests.brokers import free_port, wait_for_port

RESULTS = ROOT / "bench" / "results"
GROUP = "north"  # every 10th device's group
NEEDLE = "greenhouse-7"  # one device's label, found by q
PAGE = 100  # devices per page
READINGS = 3  # per message: temperature, humidity, battery
STALL = 60.0  # s without progress: a step failed
QUIET = 3.0  # s without a new presence event: the dashboard got all it will
HEALTH_EVERY = 0.01  # s between /healthz requests during the flood
SETTLE = 3.0  # s idle before memory is read
HUB_ENV = {
    "HUB_LOG__LEVEL": "warning",
    "HUB_PRESENCE__OFFLINE_AFTER": "1h",
    "HUB_DASHBOARD__STALE_AFTER": "1h",
}
ID = re.compile(r"fleet-\d{7}")


@dataclass(frozen=True, slots=True)
class Options:
    """How much a run does."""

    sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    requests: int = 50  # per device API query, after a first (cold) one
    unpaged_runs: int = 3
    dashboard: bool = True  # step 8, when the built page is current


SMOKE = Options(sizes=(100, 400), requests=10, unpaged_runs=1, dashboard=False)


def device_id(n: int) -> str:
    return f"fleet-{n:07d}"


def needle_device(size: int) -> int:
    """The device that sends the label q finds."""
    return size // 3


def payload(n: int, size: int) -> bytes:
    body: dict[str, Any] = {
        "temperature": round(18 + (n % 100) / 10, 1),
        "humidity": 40 + n % 30,
        "battery": 100 - n % 60,
    }
    if n % 10 == 0:
        body["group"] = GROUP
    if n == needle_device(size):
        body["label"] = NEEDLE
    return orjson.dumps(body)


def messages(kind: str, size: int) -> Iterator[tuple[str, bytes, bool]]:
    """(topic, payload, retain) of one publishing step."""
    for n in range(size):
        topic = f"devices/{device_id(n)}"
        if kind == "telemetry":
            yield f"{topic}/telemetry", payload(n, size), False
        elif kind == "half-online":  # even devices online, odd ones offline
            yield f"{topic}/status", b"offline" if n % 2 else b"online", True
        elif kind == "odd-online" and n % 2:
            yield f"{topic}/status", b"online", True


def publish(port: int, kind: str, size: int, began: Any) -> None:
    """One paho client publishing `messages(kind, size)` at QoS 1 as fast as
    the broker takes them (runs in its own process)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"fleet-{kind}-{os.getpid()}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    began.set()
    last = None
    for count, (topic, body, retain) in enumerate(messages(kind, size), 1):
        last = client.publish(topic, body, qos=1, retain=retain)
        if count % 1000 == 0:
            last.wait_for_publish(60)
    if last is not None:
        last.wait_for_publish(60)
    client.loop_stop()
    client.disconnect()


def published(port: int, kind: str, size: int) -> tuple[multiprocessing.process.BaseProcess, float]:
    """The publisher, started; and when it began publishing (monotonic)."""
    context = multiprocessing.get_context("spawn")
    began = context.Event()
    process = context.Process(target=publish, args=(port, kind, size, began), daemon=True)
    process.start()
    if not began.wait(60):
        process.kill()
        raise RuntimeError(f"the {kind} publisher did not start")
    return process, time.monotonic()


# -- the hub process --------------------------------------------------------------


@dataclass
class FleetHub:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    startup: float  # s from process start to the first /readyz 200

    @property
    def pid(self) -> int:
        return self.process.pid


def start_hub(db: Path, mqtt_url: str, config: Path | None = None) -> FleetHub:
    """`telemetry-hub serve` on `db`; returns once /readyz answers 200 and
    MQTT is connected (the startup time stops at the first)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(
        HUB_ENV,
        HUB_CONFIG=str(config or ROOT / "config.toml"),
        HUB_SERVER__PORT=str(port),
        HUB_STORAGE__PATH=str(db),
        HUB_MQTT__URL=mqtt_url,
        HUB_MQTT__CLIENT_ID=f"fleet-hub-{db.parent.name}",
    )
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "hub.cli", "serve"], env=env, cwd=ROOT)
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the hub exited with {process.returncode} at startup")
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(url + "/readyz", timeout=5) as response,
            ):
                if response.status == 200:
                    break
            if time.monotonic() - started > 300:
                raise RuntimeError("the hub was not ready within 300 s")
            time.sleep(0.01)
        startup = time.monotonic() - started
        running = FleetHub(url, port, process, startup)
        wait_until(lambda: readyz(running)["ingest"]["mqtt"]["state"] == "connected", 30, "MQTT")
        return running
    except BaseException:
        stop_hub(FleetHub(url, port, process, 0.0))
        raise


def stop_hub(running: FleetHub) -> None:
    running.process.send_signal(signal.SIGINT)
    try:
        running.process.wait(120)
    except subprocess.TimeoutExpired:
        running.process.kill()
        running.process.wait()


def get_json(running: FleetHub, path: str) -> Any:
    with urllib.request.urlopen(running.url + path, timeout=60) as response:
        return json.load(response)


def readyz(running: FleetHub) -> dict[str, Any]:
    result: dict[str, Any] = get_json(running, "/readyz")
    return result


def online(running: FleetHub) -> int:
    """Devices the store shows online (stale ones included)."""
    status = get_json(running, "/api/devices/counts")["status"]
    return int(status["online"]) + int(status["stale"])


def memory(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon and RssFile of a process, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile"):
            fields[name] = int(value.split()[0]) * 1024
    return {"rss": fields["VmRSS"], "anon": fields["RssAnon"], "file": fields["RssFile"]}


def wait_until(done: Callable[[], bool], timeout: float, what: str, every: float = 0.05) -> float:
    """Seconds until `done()`; raises after `timeout`."""
    started = time.monotonic()
    while not done():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(every)
    return time.monotonic() - started


def wait_progress(count: Callable[[], int], total: int, what: str, every: float = 0.02) -> None:
    """Until `count()` reaches `total`; raises when it stops moving for STALL s."""
    seen, moved = -1, time.monotonic()
    while (now := count()) < total:
        if now != seen:
            seen, moved = now, time.monotonic()
        elif time.monotonic() - moved > STALL:
            raise RuntimeError(f"{what}: {now:,} of {total:,} and nothing more for {STALL:g} s")
        time.sleep(every)


# -- HTTP with one kept-alive connection --------------------------------------------


class Http:
    def __init__(self, port: int, timeout: float = 120.0):
        self.port = port
        self.timeout = timeout
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def get(self, path: str) -> tuple[float, int, bytes]:
        """(seconds, status, body); a connection the server closed is opened again."""
        for attempt in (1, 2):
            started = time.monotonic()
            try:
                self.connection.request("GET", path)
                response = self.connection.getresponse()
                body = response.read()
                return time.monotonic() - started, response.status, body
            except (OSError, http.client.HTTPException):
                self.connection.close()
                self.connection = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=self.timeout
                )
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.connection.close()


# -- 1 and 2: ingest and memory -------------------------------------------------------


def ingest(running: FleetHub, port: int, size: int) -> dict[str, float]:
    before = readyz(running)["store"]["head"]
    publisher, started = published(port, "telemetry", size)
    wait_progress(lambda: readyz(running)["store"]["head"] - before, READINGS * size, "ingest")
    seconds = time.monotonic() - started
    publisher.join(60)
    return {"seconds": seconds, "msg_s": size / seconds}


def statuses(running: FleetHub, port: int, kind: str, size: int, expect_online: int) -> float:
    """Publish `kind`'s retained statuses; seconds until the store shows
    `expect_online` devices online."""
    publisher, started = published(port, kind, size)
    wait_progress(
        lambda: size - abs(online(running) - expect_online), size, f"statuses {kind}", every=0.2
    )
    publisher.join(60)
    return time.monotonic() - started


def kb_per_device(after: dict[str, int], before: dict[str, int], size: int) -> dict[str, float]:
    return {key: (after[key] - before[key]) / 1024 / size for key in ("rss", "anon")}


# The tables the hub keeps per device id, and their bounds as the code states them.
BOUNDS = {
    "presence, online by data": "devices online or holding a link (hub/presence.py)",
    "presence, online by an MQTT link": "devices online or holding a link (hub/presence.py)",
    "rate limiter buckets": "at most limits.MAX_TRACKED; a bucket full again is forgotten",
    "device names (holders)": "every device id known: loaded from the store at startup",
    "MQTT: devices heard": "at most 100,000 (hub/ingest/mqtt.py _heard_now)",
    "MQTT: decoded topics": "at most mqtt.TOPICS_KEPT, then cleared",
    "normalize: plain names": "distinct payload keys, at most normalize.PLAIN_NAMES_MAX",
    "series numbers (writer)": "at most transaction.SERIES_KEPT series",
}


def structures(size: int) -> dict[str, dict[str, Any]]:
    """Each per-device table of the hub built for `size` ids, as the hub builds
    it, and the memory tracemalloc finds it holds (run in a child process).
    The id strings are made beforehand: the hub's tables share the one it
    took from the topic."""
    from hub.ingest.mqtt import MqttIngest
    from hub.limits import MAX_TRACKED, RateLimiter
    from hub.models import Source
    from hub.mqtt import TOPICS_KEPT
    from hub.normalize import PLAIN_NAMES_MAX, Rules, normalize
    from hub.presence import MQTT_LINK, Presence
    from hub.sources.names import NATIVE, DeviceNames
    from hub.store.transaction import SERIES_KEPT, SeriesNumbers

    ids = [device_id(n) for n in range(size)]
    now = int(time.time() * 1000)
    found: dict[str, dict[str, Any]] = {
        "device id strings (shared)": {
            "bytes": sum(sys.getsizeof(i) for i in ids),
            "held": size,
            "bound": "one per device, in whichever tables hold it",
        }
    }

    def measure(name: str, build: Callable[[], Any], held: Callable[[Any], int]) -> None:
        gc.collect()
        tracemalloc.start()
        start = tracemalloc.get_traced_memory()[0]
        table = build()
        taken = tracemalloc.get_traced_memory()[0] - start
        tracemalloc.stop()
        found[name] = {"bytes": taken, "held": held(table), "bound": BOUNDS[name]}
        del table

    def seen() -> Presence:
        presence = Presence(3_600_000)
        for i in ids:
            presence.seen(i, now)
        return presence

    def linked() -> Presence:
        presence = Presence(3_600_000)
        for i in ids:
            presence.link_up(i, MQTT_LINK, now)
        return presence

    def limiter() -> RateLimiter:
        limits = RateLimiter(200.0, 400.0)
        for i in ids:
            limits.allow(i)
        return limits

    def names() -> DeviceNames:
        holders = DeviceNames()
        for i in ids:
            holders.claim(i, NATIVE, i)
        return holders

    def heard() -> Any:
        ingest = MqttIngest.__new__(MqttIngest)  # just the table _heard_now keeps
        ingest._heard = OrderedDict()
        for i in ids:
            ingest._heard_now(i)
        return ingest._heard

    def topics() -> dict[bytes, str]:
        kept: dict[bytes, str] = {}  # hub.mqtt's cache: topic as received -> decoded
        for i in ids:
            for kind in ("telemetry", "status"):
                if len(kept) > TOPICS_KEPT:
                    kept.clear()
                topic = f"devices/{i}/{kind}".encode()
                kept[topic] = topic.decode()
        return kept

    def plain_names() -> Rules:
        rules = Rules()
        for n, i in enumerate(ids):
            normalize(
                payload(n, size), device_id=i, source=Source.MQTT, received_ms=now, rules=rules
            )
        return rules

    def series() -> SeriesNumbers:
        numbers = SeriesNumbers()

        async def create(keys: list[tuple[str, str, str]]) -> list[tuple[Any, ...]]:
            return [(*key, n, n) for n, key in enumerate(keys)]

        async def fill() -> None:
            batch = [(i, m, "") for i in ids for m in ("temperature", "humidity", "battery")]
            for start in range(0, len(batch), 2000):
                await numbers.resolve(batch[start : start + 2000], create)
                numbers.committed()

        asyncio.run(fill())
        return numbers

    measure("presence, online by data", seen, len)
    measure("presence, online by an MQTT link", linked, len)
    measure("rate limiter buckets", limiter, lambda t: len(t._buckets))
    measure("device names (holders)", names, len)
    measure("MQTT: devices heard", heard, len)
    measure("MQTT: decoded topics", topics, len)
    measure("normalize: plain names", plain_names, lambda r: len(r.plain_names))
    measure("series numbers (writer)", series, len)
    limits = {
        "limits.MAX_TRACKED": MAX_TRACKED,
        "mqtt.TOPICS_KEPT": TOPICS_KEPT,
        "normalize.PLAIN_NAMES_MAX": PLAIN_NAMES_MAX,
        "transaction.SERIES_KEPT": SERIES_KEPT,
    }
    for entry in found.values():
        for name, value in limits.items():
            entry["bound"] = entry["bound"].replace(name, f"{value:,}")
        entry["per_device"] = entry["bytes"] / size
    return found


def structures_apart(size: int) -> dict[str, dict[str, Any]]:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(structures, size).result(600)


# -- 4 and 5: the device API ------------------------------------------------------------


def queries(size: int) -> list[tuple[str, str, int]]:
    """(name, query string, the total it should find)."""
    last = device_id(size - PAGE - 1) if size > PAGE else ""
    return [
        ("first page", f"limit={PAGE}", size),
        ("middle page", f"limit={PAGE}&after={device_id(size // 2)}", size),
        ("last page", f"limit={PAGE}&after={last}", size),
        ("status=online", f"limit={PAGE}&status=online", (size + 1) // 2),
        ("status=offline", f"limit={PAGE}&status=offline", size // 2),
        (f"group={GROUP} (10%)", f"limit={PAGE}&group={GROUP}", (size + 9) // 10),
        ("q=<id substring, 1 device>", f"limit={PAGE}&q={size // 2:07d}", 1),
        ("q=<attribute value, 1 device>", f"limit={PAGE}&q={NEEDLE}", 1),
        ("q=fleet (every device)", f"limit={PAGE}&q=fleet", size),
    ]


SEARCHES = {"id": "q=<id substring, 1 device>", "attribute": "q=<attribute value, 1 device>"}


def device_api(port: int, size: int, requests: int) -> dict[str, dict[str, Any]]:
    client = Http(port)
    found: dict[str, dict[str, Any]] = {}
    try:
        for name, query, expected in queries(size):
            first, status, body = client.get(f"/api/devices?{query}")
            if status != 200:
                raise RuntimeError(f"GET /api/devices?{query}: {status} {body[:200]!r}")
            page = orjson.loads(body)
            times = [client.get(f"/api/devices?{query}")[0] * 1000 for _ in range(requests)]
            found[name] = {
                "query": query,
                "first_ms": first * 1000,
                "p50_ms": percentile(times, 0.5),
                "p99_ms": percentile(times, 0.99),
                "max_ms": max(times),
                "bytes": len(body),
                "total": page["total"],
                "expected_total": expected,
                "returned": len(page["devices"]),
                "next": page["next"],
            }
    finally:
        client.close()
    return found


def unpaged(port: int, runs: int) -> dict[str, Any]:
    client = Http(port, timeout=600)
    try:
        answers = [client.get("/api/devices") for _ in range(runs)]
    finally:
        client.close()
    times = sorted(seconds for seconds, _, _ in answers)
    return {
        "seconds": times[len(times) // 2],
        "runs": times,
        "bytes": len(answers[-1][2]),
        "devices": len(orjson.loads(answers[-1][2])["devices"]),
    }


# -- 6: the presence flood -----------------------------------------------------------


class HealthSampler(threading.Thread):
    """GET /healthz every HEALTH_EVERY s (start to start) on one kept-alive
    connection; (sent, seconds) of each answer."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.samples: list[tuple[float, float]] = []
        self.failures = 0
        self._stopping = threading.Event()

    def run(self) -> None:
        client = Http(self.port)
        while not self._stopping.is_set():
            sent = time.monotonic()
            try:
                seconds, _, _ = client.get("/healthz")
            except (OSError, http.client.HTTPException):
                self.failures += 1
                seconds = time.monotonic() - sent
            self.samples.append((sent, seconds))
            self._stopping.wait(max(0.0, HEALTH_EVERY - (time.monotonic() - sent)))
        client.close()

    def stop(self) -> None:
        self._stopping.set()
        self.join(60)


def watch_presence(url: str, commands: Connection) -> None:
    """A dashboard subscribed to every device (its own process): it counts
    what it receives and answers `mark` (start counting again), `report`
    and `stop` on `commands`."""
    asyncio.run(_watch(url, commands))


async def _watch(url: str, commands: Connection) -> None:
    import socketio

    counts: dict[str, Any] = {}

    def reset() -> None:
        counts.update(events=Counter(), bytes=0, ids=set(), first=None, last=None)

    class Counting(socketio.AsyncClient):  # type: ignore[misc]
        async def _handle_eio_message(self, data: str | bytes) -> None:
            text = data if isinstance(data, str) else data.decode("utf-8", "replace")
            counts["bytes"] += len(data)
            counts["ids"].update(ID.findall(text))
            await super()._handle_eio_message(data)

    reset()
    client = Counting(reconnection=False)
    disconnected: list[float] = []

    async def anything(event: str, *args: Any) -> None:
        counts["events"][event] += 1
        counts["first"] = counts["first"] or time.time()
        counts["last"] = time.time()

    async def gone(*args: Any) -> None:
        disconnected.append(time.time())

    client.on("*", anything, namespace="/dashboard")
    client.on("disconnect", gone, namespace="/dashboard")
    await client.connect(url, namespaces=["/dashboard"], transports=["websocket"])
    answer = await client.call("subscribe", {"devices": ["*"]}, namespace="/dashboard", timeout=60)
    commands.send({"ready": True, "subscribed": answer})
    while True:
        if not commands.poll():
            await asyncio.sleep(0.05)
            continue
        command = commands.recv()
        if command == "mark":
            reset()
        commands.send(
            {
                "events": dict(counts["events"]),
                "bytes": counts["bytes"],
                "devices": len(counts["ids"]),
                "first": counts["first"],
                "last": counts["last"],
                "disconnected": disconnected[:1],
            }
        )
        if command == "stop":
            break
    with contextlib.suppress(Exception):
        await client.disconnect()


def presence_flood(running: FleetHub, mosquitto: Any, size: int) -> dict[str, Any]:
    """All `size` devices online over MQTT go offline at once: Mosquitto restarts."""
    context = multiprocessing.get_context("spawn")
    mine, theirs = context.Pipe()
    watcher = context.Process(target=watch_presence, args=(running.url, theirs), daemon=True)
    watcher.start()
    sampler = HealthSampler(running.port)
    try:
        if not mine.poll(60):
            raise RuntimeError("the dashboard did not subscribe within 60 s")
        mine.recv()
        # Presence changes still on their way to dashboards (the statuses just
        # published) arrive first: the flood's are counted from when none has
        # come for a while.
        tail = quiet(mine, 2.0, 120.0)
        sampler.start()
        time.sleep(1.0)  # /healthz at rest first
        mine.send("mark")
        mine.recv()
        wall, started = time.time(), time.monotonic()
        mosquitto.stop()
        mosquitto.start()
        restarted = time.monotonic() - started
        timeout = max(120.0, size / 200)
        all_offline = restarted + wait_until(
            lambda: online(running) == 0, timeout, "all offline", every=0.1
        )
        report: dict[str, Any] = {}
        heard, moved = -1, time.monotonic()
        while time.monotonic() - started < timeout:
            mine.send("report")
            report = mine.recv()
            if report["devices"] >= size:
                break
            if report["devices"] != heard:
                heard, moved = report["devices"], time.monotonic()
            elif time.monotonic() - moved > QUIET:
                break
            time.sleep(0.1)
        time.sleep(0.5)
        sampler.stop()
        mine.send("stop")
        report = mine.recv()
    finally:
        if sampler.is_alive():
            sampler.stop()
        watcher.join(30)
        if watcher.is_alive():
            watcher.kill()
    at_rest = [s for sent, s in sampler.samples if sent < started]
    during = [s for sent, s in sampler.samples if sent >= started]
    return {
        "broker_restart_s": restarted,
        "all_offline_s": all_offline,
        "stall_ms": max(during) * 1000,
        "healthz_p50_ms": percentile(during, 0.5) * 1000,
        "healthz_p99_ms": percentile(during, 0.99) * 1000,
        "healthz_over_100ms": sum(s > 0.1 for s in during),
        "healthz_samples": len(during),
        "healthz_failures": sampler.failures,
        "healthz_rest_max_ms": max(at_rest, default=0.0) * 1000,
        "dashboard_events": sum(report["events"].values()),
        "dashboard_events_by_name": report["events"],
        "dashboard_bytes": report["bytes"],
        "dashboard_devices": report["devices"],
        "dashboard_last_s": (report["last"] - wall) if report["last"] else None,
        "dashboard_disconnected": bool(report["disconnected"]),
        "dashboard_events_before": tail,
    }


def quiet(watcher: Connection, seconds: float, timeout: float) -> int:
    """Wait until the dashboard has received nothing for `seconds`; the events
    it had received by then."""
    events, moved = -1, time.monotonic()
    deadline = moved + timeout
    while time.monotonic() < deadline:
        watcher.send("report")
        now = sum(watcher.recv()["events"].values())
        if now != events:
            events, moved = now, time.monotonic()
        elif time.monotonic() - moved >= seconds:
            break
        time.sleep(0.1)
    return events


# -- 7: the broker's files for N listed devices ---------------------------------------------


def token(n: int) -> str:
    return f"fleet-token-{n:07d}-{n * 7919 % 100_003:05d}"


def fleet_config(folder: Path, size: int) -> Path:
    """The repository's config.toml with `size` [[devices]] entries."""
    entries = []
    for n in range(size):
        group = f'group = "{GROUP}"\n' if n % 10 == 0 else ""
        entries.append(f'[[devices]]\nid = "{device_id(n)}"\ntoken = "{token(n)}"\n{group}')
    path = folder / "fleet.toml"
    path.write_text((ROOT / "config.toml").read_text() + "\n" + "\n".join(entries))
    return path


def acl_files(folder: Path, config: Path) -> dict[str, Any]:
    out = folder / "broker"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    started = time.monotonic()
    command = ["mosquitto-acl", "--config", str(config), "--out", str(out)]
    subprocess.run(
        [sys.executable, "-m", "hub.cli", *command],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        check=True,
        timeout=1800,
    )
    seconds = time.monotonic() - started
    passwd, acl = out / "passwd", out / "acl"
    startup, connects = broker_startup(folder, "fleet", passwd, acl)
    return {
        "seconds": seconds,
        "passwd_bytes": passwd.stat().st_size,
        "acl_bytes": acl.stat().st_size,
        "mosquitto_startup_s": startup,
        "mosquitto_gave_up_s": None if startup is not None else MOSQUITTO_WAIT,
        "device_connects": connects,
    }


MOSQUITTO_WAIT = 120.0  # s: a broker not listening by then is given up on


def broker_startup(folder: Path, name: str, passwd: Path, acl: Path) -> tuple[float | None, bool]:
    """Seconds from starting Mosquitto with `passwd` and `acl` to listening
    (None: not within MOSQUITTO_WAIT), and whether device 0 then connects
    with its token."""
    port = free_port()
    conf = folder / f"mosquitto-{name}.conf"
    # As root Mosquitto drops to its own user, which cannot read the 0600 passwd.
    user = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\n{user}"
        f"password_file {passwd}\nacl_file {acl}\n"
    )
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    started = time.monotonic()
    with (folder / f"mosquitto-{name}.log").open("ab") as log:
        mosquitto = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=log)
    try:
        while not listening(port):
            if mosquitto.poll() is not None:
                raise RuntimeError(f"Mosquitto exited: see {folder / f'mosquitto-{name}.log'}")
            if time.monotonic() - started > MOSQUITTO_WAIT:
                return None, False
            time.sleep(0.01)
        return time.monotonic() - started, device_connects(port, 0)
    finally:
        mosquitto.terminate()
        try:
            mosquitto.wait(30)
        except subprocess.TimeoutExpired:
            mosquitto.kill()
            mosquitto.wait()


def listening(port: int) -> bool:
    try:
        wait_for_port(port, 0.01)
    except TimeoutError:
        return False
    return True


def device_connects(port: int, n: int) -> bool:
    """Whether the broker takes device n's CONNECT with its token."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    answered = threading.Event()
    codes: list[Any] = []

    def connected(client: Any, userdata: Any, flags: Any, code: Any, properties: Any) -> None:
        codes.append(code)
        answered.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=device_id(n))
    client.username_pw_set(device_id(n), token(n))
    client.on_connect = connected
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        answered.wait(30)
    finally:
        client.loop_stop()
        client.disconnect()
    return bool(codes) and not codes[0].is_failure


def listed_hub(db: Path, mqtt_url: str, config: Path, requests: int) -> dict[str, Any]:
    """The hub restarted with every device listed in [[devices]]."""
    running = start_hub(db, mqtt_url, config)
    try:
        time.sleep(SETTLE)
        idle = memory(running.pid)
        client = Http(running.port)
        client.get(f"/api/devices?limit={PAGE}")
        times = [client.get(f"/api/devices?limit={PAGE}")[0] * 1000 for _ in range(requests)]
        group = [
            client.get(f"/api/devices?limit={PAGE}&group={GROUP}")[0] * 1000
            for _ in range(requests)
        ]
        client.close()
        return {
            "startup_s": running.startup,
            "first_page_p50_ms": percentile(times, 0.5),
            "first_page_p99_ms": percentile(times, 0.99),
            "group_p99_ms": percentile(group, 0.99),
            "memory": idle,
        }
    finally:
        stop_hub(running)


# -- 8: the dashboard -------------------------------------------------------------------


def dashboard(url: str) -> dict[str, Any]:
    from tests.browser import page_build_problem

    problem = page_build_problem()
    if problem:
        return {"skipped": problem}
    return asyncio.run(_dashboard(url))


ROWS = "[data-device]"


async def _dashboard(url: str) -> dict[str, Any]:
    from tests.browser import chromium

    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1440, "height": 900})
        cdp = await page.context.new_cdp_session(page)
        await cdp.send("Performance.enable")
        started = time.monotonic()
        await page.goto(url)
        await page.wait_for_selector(ROWS, timeout=300_000)
        first_row = time.monotonic() - started
        nodes, still = -1, 0
        while still < 3 and time.monotonic() - started < 300:  # until the DOM stops changing
            await asyncio.sleep(0.5)
            now = await page.evaluate("document.getElementsByTagName('*').length")
            still, nodes = (still + 1, nodes) if now == nodes else (0, now)
        settled = time.monotonic() - started
        rows = await page.evaluate(f"document.querySelectorAll('{ROWS}').length")
        metrics = await cdp.send("Performance.getMetrics")
        values = {m["name"]: m["value"] for m in metrics["metrics"]}
    return {
        "first_row_s": first_row,
        "settled_s": settled,
        "dom_nodes": nodes,
        "rows": rows,
        "js_heap_mb": values.get("JSHeapUsedSize", 0) / 1e6,
    }


# -- one size ---------------------------------------------------------------------------


def guarded(details: dict[str, Any], key: str, step: Callable[[], Any]) -> Any:
    """Run one step; a failure is recorded (and the run goes on) instead of
    losing every other figure."""
    try:
        details[key] = step()
    except Exception as exc:
        print(f"  {key} failed: {exc!r}", flush=True)
        details[key] = {"error": repr(exc)}
    return details[key]


def code() -> dict[str, Any]:
    """The commit measured, and whether hub/ had changes not committed."""

    def git(*args: str) -> str:
        command = ["git", "-C", str(ROOT), *args]
        return subprocess.run(command, capture_output=True, text=True).stdout.strip()

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "hub_changed": bool(git("status", "--porcelain", "hub")),
    }


def measure_size(size: int, options: Options) -> dict[str, Any]:
    found: dict[str, Any] = {"devices": size, "code": code()}

    def say(text: str) -> None:
        print(f"  [{size:,}] {text}", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as name, broker() as mosquitto:
        folder = Path(name)
        db = folder / "hub.db"
        running = start_hub(db, mosquitto.url)
        try:
            time.sleep(SETTLE)
            empty = memory(running.pid)
            say(f"hub up in {running.startup:.2f} s; ingest")
            found["ingest"] = ingest(running, mosquitto.port, size)
            time.sleep(SETTLE)
            ingested = memory(running.pid)
            say("statuses: half online")
            found["statuses_s"] = statuses(
                running, mosquitto.port, "half-online", size, (size + 1) // 2
            )
            say("device API")
            found["api"] = device_api(running.port, size, options.requests)
            found["unpaged"] = unpaged(running.port, options.unpaged_runs)
            say("statuses: all online; presence flood")
            found["all_online_s"] = statuses(running, mosquitto.port, "odd-online", size, size)
            guarded(found, "flood", lambda: presence_flood(running, mosquitto, size))
        finally:
            stop_hub(running)
        say("restart")
        running_again = start_hub(db, mosquitto.url)
        try:
            time.sleep(SETTLE)
            restarted = memory(running_again.pid)
            if options.dashboard:
                say("dashboard")
                guarded(found, "dashboard", lambda: dashboard(running_again.url))
        finally:
            stop_hub(running_again)
        found["startup"] = {"empty_s": running.startup, "devices_s": running_again.startup}
        found["memory"] = {
            "empty": empty,
            "ingested": ingested,
            "restarted": restarted,
            "after_ingest_kb": kb_per_device(ingested, empty, size),
            "after_restart_kb": kb_per_device(restarted, empty, size),
        }
        say("mosquitto-acl")
        config = fleet_config(folder, size)
        guarded(found, "acl", lambda: acl_files(folder, config))
        guarded(found, "listed", lambda: listed_hub(db, mosquitto.url, config, options.requests))
    say("tables, one by one")
    found["structures"] = structures_apart(size)
    # Others may commit while a run goes on: the hub processes started since
    # then ran their code.
    found["code_after"] = code()
    if found["code_after"] != found["code"]:
        say(f"the code changed during this size: {found['code']} -> {found['code_after']}")
    return found


# -- the table ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """One figure: how to find it in a size's result, and its target."""

    name: str
    get: Callable[[dict[str, Any]], float]
    unit: str
    fmt: str = "{:,.1f}"
    limit: float | None = None  # target: at most this
    show: Callable[[dict[str, Any]], str] | None = None  # the cell, when not just the value
    step: str = ""  # the result's key of an optional step, which may be skipped

    @property
    def target(self) -> str:
        return "" if self.limit is None else f"<= {self.limit:g} {self.unit}"


def _p50_p99(name: str) -> Callable[[dict[str, Any]], str]:
    return lambda r: f"{r['api'][name]['p50_ms']:.1f} / {r['api'][name]['p99_ms']:.1f}"


def _p99(name: str) -> Callable[[dict[str, Any]], float]:
    return lambda r: float(r["api"][name]["p99_ms"])


def _search(key: str) -> Callable[[dict[str, Any]], float]:
    def worst(result: dict[str, Any]) -> float:
        query = result["api"][SEARCHES[key]]
        return float(max(query["first_ms"], query["p99_ms"]))

    return worst


def _first_p99(key: str) -> Callable[[dict[str, Any]], str]:
    def cell(result: dict[str, Any]) -> str:
        query = result["api"][SEARCHES[key]]
        return f"{query['first_ms']:.1f} / {query['p99_ms']:.1f}"

    return cell


def _broker_startup(result: dict[str, Any]) -> str:
    acl = result["acl"]
    if acl["mosquitto_startup_s"] is None:
        return f"> {acl['mosquitto_gave_up_s']:g} (gave up)"
    return f"{acl['mosquitto_startup_s']:,.2f}"


def rows(options: Options) -> list[Row]:
    api = [
        Row(
            f"device API p50 / p99, {name} (ms)",
            _p99(name),
            "ms",
            limit=50.0,
            show=_p50_p99(name),
        )
        for name, _, _ in queries(1000)
    ]
    found = [
        Row(
            "ingest: N new devices, 1 message each, until all stored (s)",
            lambda r: r["ingest"]["seconds"],
            "s",
            "{:,.2f}",
        ),
        Row("ingest rate (messages/s)", lambda r: r["ingest"]["msg_s"], "msg/s", "{:,.0f}"),
        Row(
            "hub RSS growth per device, idle after ingest, all online (KB)",
            lambda r: r["memory"]["after_ingest_kb"]["rss"],
            "KB",
            "{:,.2f}",
        ),
        Row(
            "hub anonymous memory per device, idle after ingest, all online (KB)",
            lambda r: r["memory"]["after_ingest_kb"]["anon"],
            "KB",
            "{:,.2f}",
            limit=1.0,
        ),
        Row(
            "... per device added since the previous size: anonymous, after ingest (KB)",
            lambda r: r["memory"]["marginal_kb"]["anon"],
            "KB",
            "{:,.2f}",
        ),
        Row(
            "hub anonymous memory per device after a restart, all offline (KB)",
            lambda r: r["memory"]["after_restart_kb"]["anon"],
            "KB",
            "{:,.2f}",
            limit=1.0,
        ),
        Row(
            "the hub's per-device tables, all online over MQTT, summed (bytes per device)",
            lambda r: sum(
                v["per_device"]
                for k, v in r["structures"].items()
                if k != "presence, online by data"
            ),
            "B",
            "{:,.0f}",
        ),
        Row(
            "startup on an empty store, to /readyz 200 (s)",
            lambda r: r["startup"]["empty_s"],
            "s",
            "{:,.2f}",
        ),
        Row(
            "startup with N devices in the store, to /readyz 200 (s)",
            lambda r: r["startup"]["devices_s"],
            "s",
            "{:,.2f}",
        ),
        *api,
        Row(
            "unpaged GET /api/devices: size (MB)",
            lambda r: r["unpaged"]["bytes"] / 1e6,
            "MB",
            "{:,.2f}",
        ),
        Row(
            "unpaged GET /api/devices: time (ms)",
            lambda r: r["unpaged"]["seconds"] * 1000,
            "ms",
            "{:,.0f}",
        ),
        Row(
            "search: q=<id substring>, first / p99 (ms)",
            _search("id"),
            "ms",
            limit=500.0,
            show=_first_p99("id"),
        ),
        Row(
            "search: q=<attribute value>, first / p99 (ms)",
            _search("attribute"),
            "ms",
            limit=500.0,
            show=_first_p99("attribute"),
        ),
        Row(
            "presence flood: event loop stall, slowest /healthz (ms)",
            lambda r: r["flood"]["stall_ms"],
            "ms",
            "{:,.0f}",
        ),
        Row(
            "presence flood: /healthz p99 during it (ms)",
            lambda r: r["flood"]["healthz_p99_ms"],
            "ms",
            "{:,.1f}",
        ),
        Row(
            "presence flood: broker restart to store all offline (s)",
            lambda r: r["flood"]["all_offline_s"],
            "s",
            "{:,.2f}",
        ),
        Row(
            "presence flood: dashboard events received",
            lambda r: r["flood"]["dashboard_events"],
            "",
            "{:,.0f}",
        ),
        Row(
            "presence flood: dashboard bytes received (KB)",
            lambda r: r["flood"]["dashboard_bytes"] / 1024,
            "KB",
            "{:,.0f}",
        ),
        Row(
            "presence flood: devices named in them",
            lambda r: r["flood"]["dashboard_devices"],
            "",
            "{:,.0f}",
        ),
        Row(
            "presence flood: broker restart to the dashboard's last event (s)",
            lambda r: r["flood"]["dashboard_last_s"],
            "s",
            "{:,.2f}",
        ),
        Row(
            "mosquitto-acl for N [[devices]] with tokens (s)",
            lambda r: r["acl"]["seconds"],
            "s",
            "{:,.2f}",
        ),
        Row(
            "mosquitto-acl: passwd + acl size (MB)",
            lambda r: (r["acl"]["passwd_bytes"] + r["acl"]["acl_bytes"]) / 1e6,
            "MB",
            "{:,.2f}",
        ),
        Row(
            "Mosquitto startup with them, to listening (s)",
            lambda r: r["acl"]["mosquitto_startup_s"],
            "s",
            show=_broker_startup,
        ),
        Row(
            "hub startup with N [[devices]] listed (s)",
            lambda r: r["listed"]["startup_s"],
            "s",
            "{:,.2f}",
        ),
        Row(
            "hub anonymous memory per device with N [[devices]] listed, idle (KB)",
            lambda r: (
                (r["listed"]["memory"]["anon"] - r["memory"]["empty"]["anon"]) / 1024 / r["devices"]
            ),
            "KB",
            "{:,.2f}",
            limit=1.0,
        ),
        Row(
            "device API p50 / p99 with N [[devices]] listed, first page (ms)",
            lambda r: r["listed"]["first_page_p99_ms"],
            "ms",
            limit=50.0,
            show=lambda r: (
                f"{r['listed']['first_page_p50_ms']:.1f} / {r['listed']['first_page_p99_ms']:.1f}"
            ),
        ),
    ]
    if options.dashboard:
        found += [
            Row(
                "dashboard: Chromium time to the first device row (s)",
                lambda r: r["dashboard"]["first_row_s"],
                "s",
                "{:,.2f}",
                step="dashboard",
            ),
            Row(
                "dashboard: DOM nodes once settled",
                lambda r: r["dashboard"]["dom_nodes"],
                "",
                "{:,.0f}",
                step="dashboard",
            ),
            Row(
                "dashboard: JS heap (MB)",
                lambda r: r["dashboard"]["js_heap_mb"],
                "MB",
                "{:,.1f}",
                step="dashboard",
            ),
        ]
    return found


def figures(options: Options, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row's value, cell and verdict for every size (None: not measured)."""
    out = []
    for row in rows(options):
        values: list[float | None] = []
        cells: list[str] = []
        for result in results:
            try:
                got = row.get(result)
                value = None if got is None else float(got)
            except (KeyError, TypeError):  # a step that failed, or was skipped
                values.append(None)
                skipped = row.step and result.get(row.step, {}).get("skipped")
                cells.append("skipped" if skipped else "n/a")
                continue
            values.append(value)  # None: nothing to measure (as the cell says)
            if row.show:
                cells.append(row.show(result))
            else:
                cells.append("-" if value is None else row.fmt.format(value))
        met = [None if row.limit is None or v is None else v <= row.limit for v in values]
        out.append(
            {
                "name": row.name,
                "unit": row.unit,
                "target": row.target,
                "values": values,
                "cells": cells,
                "met": met,
            }
        )
    return out


def table(sizes: tuple[int, ...], found: list[dict[str, Any]]) -> str:
    heads = " | ".join(f"{size:,}" for size in sizes)
    lines = [
        f"| figure | {heads} | target | met |",
        "|---|" + "---:|" * len(sizes) + "---|---|",
    ]
    for f in found:
        met = (
            ""
            if all(m is None for m in f["met"])
            else ", ".join({None: "-", True: "yes", False: "no"}[m] for m in f["met"])
        )
        lines.append(f"| {f['name']} | {' | '.join(f['cells'])} | {f['target']} | {met} |")
    return "\n".join(lines)


def structures_table(sizes: tuple[int, ...], results: list[dict[str, Any]]) -> str:
    heads = " | ".join(f"{size:,}: held, B/device" for size in sizes)
    lines = [f"| table | bound (from the code) | {heads} |", "|---|---|" + "---:|" * len(sizes)]
    for name, entry in results[0]["structures"].items():
        cells = [
            f"{r['structures'][name]['held']:,}, {r['structures'][name]['per_device']:,.0f}"
            for r in results
        ]
        lines.append(f"| {name} | {entry['bound']} | {' | '.join(cells)} |")
    return "\n".join(lines)


def marginal(previous: dict[str, Any] | None, result: dict[str, Any]) -> dict[str, float | None]:
    """Memory per device added between two sizes (the growth after ingest of
    each, apart): what a device costs once the fixed costs are paid."""
    if previous is None:
        return {"rss": None, "anon": None}

    def growth(found: dict[str, Any], key: str) -> int:
        memory = found["memory"]
        return int(memory["ingested"][key] - memory["empty"][key])

    added = result["devices"] - previous["devices"]
    return {
        key: (growth(result, key) - growth(previous, key)) / 1024 / added for key in ("rss", "anon")
    }


def run(options: Options) -> dict[str, Any]:
    started = time.time()
    results = []
    for size in options.sizes:
        size_started = time.monotonic()
        results.append(measure_size(size, options))
        print(f"({size:,} devices: {time.monotonic() - size_started:.0f} s)", flush=True)
    for previous, result in zip([None, *results], results, strict=False):
        result["memory"]["marginal_kb"] = marginal(previous, result)
    found = figures(options, results)
    wrong = [
        f"{result['devices']:,} devices, {name}: total {query['total']:,}, "
        f"expected {query['expected_total']:,}"
        for result in results
        for name, query in result["api"].items()
        if query["total"] != query["expected_total"]
    ]
    return {
        "wrong_totals": wrong,
        "machine": machine(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started),
        "options": {name: getattr(options, name) for name in Options.__slots__},
        "sizes": list(options.sizes),
        "figures": found,
        "results": results,
        "table": table(options.sizes, found),
        "structures_table": structures_table(options.sizes, results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", help="comma-separated fleet sizes (default 1000,10000,100000)")
    parser.add_argument("--requests", type=int, help="requests per device API query (default 50)")
    parser.add_argument("--smoke", action="store_true", help=f"sizes {SMOKE.sizes}, few requests")
    parser.add_argument("--no-dashboard", action="store_true", help="skip Chromium")
    parser.add_argument("--json", type=Path, help="write the result here (default bench/results)")
    args = parser.parse_args()
    options = SMOKE if args.smoke else Options()
    if args.sizes:
        options = replace(options, sizes=tuple(int(s) for s in args.sizes.split(",") if s))
    if args.requests:
        options = replace(options, requests=args.requests)
    if args.no_dashboard:
        options = replace(options, dashboard=False)
    result = run(options)
    print(
        f"\nmachine: {result['machine']}; started {result['started']}; "
        f"{result['seconds']} s in all\n"
    )
    print(result["table"])
    print()
    print(result["structures_table"])
    text = json.dumps(result, indent=2, default=str)
    if args.json:
        args.json.write_text(text)
    else:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime())
        (RESULTS / f"fleet-{stamp}.json").write_text(text)
        (RESULTS / "fleet.json").write_text(text)
    for line in result["wrong_totals"]:
        print(f"wrong total: {line}")
    missing = [f["name"] for f in result["figures"] if "n/a" in f["cells"]]
    if missing:
        sys.exit(f"no figure for: {'; '.join(missing)}")


if __name__ == "__main__":
    main()
