"""`telemetry-sim`: a fleet of simulated devices sending telemetry to the hub.

All devices share one event loop, one asyncio task each. A device sends on a
fixed timetable, the k-th message due at `start + k / rate`, so sleeping late
never accumulates into drift: a device that fell behind sends at once until
it has caught up. The hot path does what one message needs and no more: one
clock read, one sample per metric, one send; counting is a few integer adds,
and progress is drawn by its own task from those counters.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from devices.device import Device
from devices.errors import LinkError, SetupError
from devices.http_link import HttpLink
from devices.link import Link
from devices.mqtt_link import MqttLink
from devices.progress import Progress, Tally
from devices.signals import Signal, make_signals
from devices.socketio_link import SocketIOLink

T = TypeVar("T")

PROTOCOLS = ("mqtt", "socketio", "http")
RECONNECT_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class Options:
    devices: int
    rate: float
    protocol: str
    duration: float
    broker: str
    hub: str
    metrics: tuple[str, ...]
    prefix: str
    id_prefix: str
    token: str
    seed: int | None
    quiet: bool
    transports: list[str] | None = None


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(text)
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(text)
    return value


def _transports(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not names or not set(names) <= {"polling", "websocket"}:
        raise ValueError(text)
    return names


def _metrics(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(","))
    if not all(names):
        raise ValueError(text)
    return names


# argparse names the type function in its error message.
_positive_int.__name__ = "positive integer"
_positive_float.__name__ = "positive number"
_seconds.__name__ = "number of seconds (0 or more)"
_metrics.__name__ = "comma-separated list of metric names"
_transports.__name__ = "comma-separated list of polling, websocket"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="telemetry-sim",
        description="Simulate a fleet of devices sending telemetry to the telemetry hub.",
        epilog=(
            "At exit it prints one line on stdout: sent=N acknowledged=N errors=N "
            "duration=S rate=R msg/s readings=N. 'sent' counts messages handed to a "
            "link, 'acknowledged' those the broker (MQTT) or hub (Socket.IO, HTTP) "
            "took, 'readings' = acknowledged messages x metrics. Exit status: 0 if "
            "no send failed, 1 if any did, 2 for bad arguments."
        ),
    )
    add = parser.add_argument
    add("--devices", type=_positive_int, default=5, help="number of devices (default 5)")
    add(
        "--rate",
        type=_positive_float,
        default=1.0,
        help="messages per second PER DEVICE, fractions allowed; each message carries "
        "one value per metric (default 1)",
    )
    add("--protocol", choices=PROTOCOLS, default="mqtt", help="transport (default mqtt)")
    add(
        "--duration",
        type=_seconds,
        default=0.0,
        help="seconds to run; 0 runs until Ctrl-C or SIGTERM (default 0)",
    )
    add(
        "--broker",
        default="mqtt://127.0.0.1:1883",
        help="MQTT broker URL, user:pass@ allowed, mqtts:// for TLS (default %(default)s)",
    )
    add(
        "--hub",
        default="http://127.0.0.1:8080",
        help="hub URL for Socket.IO and HTTP (default %(default)s)",
    )
    add(
        "--metrics",
        type=_metrics,
        default=("temperature", "humidity", "pressure"),
        help="comma-separated metrics (default temperature,humidity,pressure); known: "
        "temperature, humidity, pressure, voltage, power, co2; others get a unitless walk",
    )
    add("--prefix", default="devices", help="MQTT topic prefix (default devices)")
    add("--id-prefix", default="sim", help="devices are named ID_PREFIX-000, ... (default sim)")
    add("--token", default="", help="device token for Socket.IO and HTTP")
    add(
        "--transports",
        type=_transports,
        default=None,
        help="Socket.IO transports, e.g. polling where websockets are blocked "
        "(default: polling, then upgrade to websocket)",
    )
    add(
        "--seed",
        type=int,
        default=None,
        help="seed for the signals: the same seed gives each device the same level, "
        "phase and random draws (values still follow the wall clock)",
    )
    add("--quiet", action="store_true", help="no progress on stderr")
    return parser


def parse_options(argv: Sequence[str] | None) -> Options:
    """The options, or SystemExit(2) with a usage message for bad arguments."""
    args = build_parser().parse_args(argv)
    return Options(**vars(args))


class Stop:
    """Shutdown requests: the first lets sends finish, a second cuts them off."""

    def __init__(self) -> None:
        self.requested = False
        self.runners: list[Runner] = []

    def __call__(self) -> None:
        force = self.requested
        self.requested = True
        for runner in self.runners:
            # Only a runner waiting for its next slot is cancelled; one in the
            # middle of a send finishes it and then sees `requested`.
            if runner.task is not None and (force or not runner.busy):
                runner.task.cancel()


class Runner:
    """One device's sending loop."""

    def __init__(
        self, device: Device, signals: dict[str, Signal], tally: Tally, progress: Progress
    ) -> None:
        self.device = device
        self.signals = signals
        self.tally = tally
        self.progress = progress
        self.busy = False
        self.task: asyncio.Task[None] | None = None
        self._retry_at = 0.0
        self._reported = False

    async def run(self, first_due: float, period: float, deadline: float, stop: Stop) -> None:
        loop = asyncio.get_running_loop()
        device, signals, tally = self.device, self.signals, self.tally
        wall_clock = time.time
        k = 0
        while not stop.requested:
            due = first_due + k * period
            if due >= deadline:
                # Ending at the deadline, not at the last send, makes the
                # summary's duration and rate the ones asked for.
                await asyncio.sleep(max(deadline - loop.time(), 0))
                return
            k += 1
            delay = due - loop.time()
            # sleep(0) still yields, so a device that is behind cannot starve the others.
            await asyncio.sleep(delay if delay > 0 else 0)
            self.busy = True
            try:
                if not device.connected and loop.time() >= self._retry_at:
                    await self._reconnect(loop)
                now = wall_clock()
                values = {metric: sensor.reading(now) for metric, sensor in signals.items()}
                tally.sent += 1
                try:
                    result = await device.send(values)
                except LinkError as exc:
                    self._failed(str(exc))
                else:
                    if result.ok:
                        tally.acknowledged += 1
                    else:
                        self._failed(f"{device.device_id}: refused: {result.error}")
            finally:
                self.busy = False

    async def _reconnect(self, loop: asyncio.AbstractEventLoop) -> None:
        self._retry_at = loop.time() + RECONNECT_INTERVAL_S
        try:
            await self.device.connect()
        except LinkError as exc:
            self._failed(str(exc), count=False)
        else:
            self._reported = False
            self.progress.note(f"{self.device.device_id}: reconnected")

    def _failed(self, message: str, *, count: bool = True) -> None:
        if count:
            self.tally.errors += 1
        # One line per outage and device, not one per message.
        if not self._reported:
            self._reported = True
            self.progress.note(message)


def make_link(
    options: Options, device_id: str, session: aiohttp.ClientSession | None = None
) -> Link:
    if options.protocol == "mqtt":
        return MqttLink(device_id, options.broker, topic_prefix=options.prefix)
    if options.protocol == "socketio":
        return SocketIOLink(
            device_id, options.hub, token=options.token, transports=options.transports
        )
    return HttpLink(device_id, options.hub, token=options.token, session=session)


def _install(stop: Stop) -> Callable[[], None]:
    """Route SIGINT and SIGTERM to `stop`; returns the undo."""
    loop = asyncio.get_running_loop()
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # only the main thread receives signals
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop)

    def undo() -> None:
        for signum in signals:
            loop.remove_signal_handler(signum)

    return undo


async def run(options: Options, tally: Tally, progress: Progress) -> float | None:
    """Run the fleet; the seconds spent sending, or None if devices could not connect."""
    stop = Stop()
    uninstall = _install(stop)
    try:
        async with AsyncExitStack() as stack:
            session = None
            if options.protocol == "http":
                # One connection pool for the fleet, with room for every device.
                connector = aiohttp.TCPConnector(limit=max(100, options.devices))
                session = aiohttp.ClientSession(connector=connector)
                stack.push_async_callback(session.close)
            runners = [
                Runner(
                    Device(device_id, make_link(options, device_id, session)),
                    make_signals(options.metrics, _rng(options.seed, device_id)),
                    tally,
                    progress,
                )
                for device_id in (f"{options.id_prefix}-{i:03d}" for i in range(options.devices))
            ]
            stop.runners = runners
            stack.push_async_callback(_close_all, runners, progress)
            if not await _connect_all(runners, progress):
                return None
            async with progress:
                return await _send_all(runners, options, stop)
    finally:
        uninstall()


def _rng(seed: int | None, device_id: str) -> random.Random:
    # A string seed is hashed the same way in every process, unlike hash().
    return random.Random(f"{seed}/{device_id}") if seed is not None else random.Random()


async def _connect_all(runners: list[Runner], progress: Progress) -> bool:
    results = await asyncio.gather(
        *(runner.device.connect() for runner in runners), return_exceptions=True
    )
    failures = [result for result in results if isinstance(result, BaseException)]
    for failure in failures:
        if not isinstance(failure, LinkError):
            raise failure
        progress.note(str(failure))
    return not failures


async def _send_all(runners: list[Runner], options: Options, stop: Stop) -> float:
    loop = asyncio.get_running_loop()
    period = 1.0 / options.rate
    start = loop.time()
    deadline = start + options.duration if options.duration > 0 else math.inf
    tasks = []
    for i, runner in enumerate(runners):
        # Staggered over one period, so the fleet sends evenly rather than in bursts.
        first_due = start + period * i / len(runners)
        runner.task = asyncio.create_task(
            runner.run(first_due, period, deadline, stop), name=f"sim-{runner.device.device_id}"
        )
        tasks.append(runner.task)
    await asyncio.wait(tasks)
    elapsed = loop.time() - start
    for task in tasks:
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error
    return elapsed


async def _close_all(runners: list[Runner], progress: Progress) -> None:
    results = await asyncio.gather(
        *(runner.device.close() for runner in runners), return_exceptions=True
    )
    for result in results:
        if isinstance(result, LinkError):
            progress.note(str(result))
        elif isinstance(result, BaseException):
            raise result


def _run_loop(main: Coroutine[Any, Any, T]) -> T:
    # Where uvloop is installed (uvicorn[standard] brings it) the same core
    # sends about a fifth more MQTT messages; the loop, not the sim, is the cost.
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def main(argv: Sequence[str] | None = None) -> int:
    """The `telemetry-sim` command; returns the exit status."""
    try:
        options = parse_options(argv)
    except SystemExit as exc:  # argparse exits 2 on bad arguments, 0 after --help
        return exc.code if isinstance(exc.code, int) else 2
    tally = Tally()
    progress = Progress(tally, sys.stderr, quiet=options.quiet)
    try:
        elapsed = _run_loop(run(options, tally, progress))
    except SetupError as exc:
        print(f"telemetry-sim: error: {exc}", file=sys.stderr)
        return 2
    print(tally.summary(elapsed or 0.0, len(options.metrics)), flush=True)
    return 0 if elapsed is not None and tally.errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
