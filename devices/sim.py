"""`telemetry-sim`: a fleet of simulated devices sending telemetry to the hub.

All devices share one event loop, one asyncio task each. A device sends on a
fixed timetable, the k-th message due at `start + k / rate`, so sleeping late
never accumulates into drift: a device that fell behind sends at once until
it has caught up. The hot path does what one message needs and no more: one
clock read, one sample per metric, one send; counting is a few integer adds,
and progress is drawn by its own task from those counters.

Devices buffer by default (`--buffer`): a message that cannot go now is kept
by the device (devices/forwarder.py) and delivered after it reconnects.
`--offline-every`/`--offline-for` switch each device's radio off now and then
(devices/outage.py) to exercise that.

Over MQTT and Socket.IO each device answers the hub's commands: `ping`,
`get_rate`, and `set_rate`, which gives that device a new timetable from the
moment it is set.

With `--firmware` the devices publish as Tasmota, Zigbee2MQTT, Homie or
ESPHome do instead (devices/firmware_sim.py).
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import Coroutine, Sequence
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import aiohttp

from devices.buffer import Buffering, BufferStats
from devices.device import Device
from devices.errors import LinkError, SetupError
from devices.firmware_sim import run_firmware
from devices.http_link import HttpLink
from devices.link import Link, SendResult
from devices.mqtt_link import MqttLink
from devices.outage import Radio, run_outages
from devices.progress import Progress, Tally, connected_all
from devices.signals import Signal, make_signals, seeded
from devices.sim_options import PROTOCOLS, Options, build_parser, parse_options
from devices.socketio_link import SocketIOLink
from devices.stop import Stop, install
from devices.timetable import Timetable

__all__ = ["PROTOCOLS", "Options", "build_parser", "main", "parse_options", "run"]

T = TypeVar("T")

# Without buffering the runner reconnects, at most once a second.
RECONNECT_INTERVAL_S = 1.0
# With buffering the device reconnects itself, with backoff between these
# bounds: quick after a short outage, and a thousand devices that lost the
# broker together still spread over a second or more when they come back.
RECONNECT_MIN_S = 0.1
RECONNECT_MAX_S = 2.0
# The last flush at exit; what is left after it counts as errors.
CLOSE_TIMEOUT_S = 10.0
# A flushed batch must stay well under the hub's payload limit (64 KiB).
BATCH_BYTES = 32_768


class Runner:
    """One device's sending loop."""

    def __init__(
        self,
        device: Device,
        signals: dict[str, Signal],
        tally: Tally,
        progress: Progress,
        radio: Radio | None = None,
        rate: float = 1.0,
    ) -> None:
        self.device = device
        self.signals = signals
        self.tally = tally
        self.progress = progress
        self.radio = radio
        self.busy = False
        self.task: asyncio.Task[None] | None = None
        self._retry_at = 0.0
        self._reported = False
        self._seen = BufferStats()
        self._buffering = False
        self.timetable = Timetable(rate)
        self.timetable.register(device.commands)

    async def run(self, first_due: float, deadline: float, stop: Stop) -> None:
        loop = asyncio.get_running_loop()
        device, signals, tally = self.device, self.signals, self.tally
        buffered = device.buffering is not None
        wall_clock = time.time
        timetable = self.timetable
        timetable.start(first_due)
        while not stop.requested:
            due = timetable.due
            # Ending at the deadline, not at the last send, makes the
            # summary's duration and rate the ones asked for.
            delay = min(due, deadline) - loop.time()
            if delay > 0 and await timetable.sleep(delay):
                continue  # set_rate made a new timetable meanwhile
            if due >= deadline:
                return
            timetable.advance()
            if delay <= 0:
                # Still yield, so a device that is behind cannot starve the others.
                await asyncio.sleep(0)
            self.busy = True
            try:
                if not buffered and not device.connected and loop.time() >= self._retry_at:
                    await self._reconnect(loop)
                now = wall_clock()
                values = {metric: sensor.reading(now) for metric, sensor in signals.items()}
                tally.sent += 1
                try:
                    result = await device.send(values)
                except LinkError as exc:
                    self._failed(str(exc))
                else:
                    if buffered:
                        self._after_buffered_send(result)
                    elif result.ok:
                        tally.acknowledged += 1
                    else:
                        self._failed(f"{device.device_id}: refused: {result.error}")
            finally:
                self.busy = False

    def sync(self) -> None:
        """Bring the tally up to date with the device's store-and-forward counts."""
        stats, seen, tally = self.device.stats, self._seen, self.tally
        tally.acknowledged += stats.delivered - seen.delivered
        tally.errors += stats.rejected - seen.rejected + stats.unsent - seen.unsent
        tally.buffered += stats.buffered_total - seen.buffered_total
        tally.waiting += stats.buffered - seen.buffered
        tally.dropped += stats.dropped - seen.dropped
        self._seen = stats
        if self._buffering and stats.buffered == 0:
            self._buffering = False
            if self._reported:
                self._reported = False
                self.progress.note(f"{self.device.device_id}: reconnected, buffer flushed")

    def _after_buffered_send(self, result: SendResult) -> None:
        if result.buffered and not self._buffering:
            self._buffering = True
            # A simulated outage is expected; a real one is worth a line.
            if self.radio is None or self.radio.on:
                error = self.device.stats.last_error
                detail = f" after: {error}" if error else ""
                self._failed(f"{self.device.device_id}: link down, buffering{detail}", count=False)
        elif not result.ok and not result.buffered:
            self._failed(f"{self.device.device_id}: refused: {result.error}", count=False)
        self.sync()

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


def make_buffering(options: Options) -> Buffering | None:
    if options.buffer == 0:
        return None
    # Roughly 60 bytes per metric and 40 for the envelope around them.
    batch_size = max(1, min(100, BATCH_BYTES // (40 + 60 * len(options.metrics))))
    return Buffering(
        max_envelopes=options.buffer,
        policy=options.buffer_policy,
        batch_size=batch_size,
        flush_rate=options.flush_rate,
        reconnect_min=RECONNECT_MIN_S,
        reconnect_max=RECONNECT_MAX_S,
        close_timeout=CLOSE_TIMEOUT_S,
    )


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


async def run(options: Options, tally: Tally, progress: Progress) -> float | None:
    """Run the fleet; the seconds spent sending, or None if devices could not connect."""
    stop = Stop()
    uninstall = install(stop)
    try:
        if options.firmware is not None:
            return await run_firmware(options, tally, progress, stop)
        async with AsyncExitStack() as stack:
            session = None
            if options.protocol == "http":
                # One connection pool for the fleet, with room for every device.
                connector = aiohttp.TCPConnector(limit=max(100, options.devices))
                session = aiohttp.ClientSession(connector=connector)
                stack.push_async_callback(session.close)
            buffering = make_buffering(options)
            runners = []
            for i in range(options.devices):
                device_id = f"{options.id_prefix}-{i:03d}"
                link = make_link(options, device_id, session)
                radio = Radio(link) if options.offline_every is not None else None
                device = Device(
                    device_id,
                    radio or link,
                    buffer=buffering,
                    rng=seeded(options.seed, f"{device_id}/reconnect"),
                )
                signals = make_signals(options.metrics, seeded(options.seed, device_id))
                runners.append(Runner(device, signals, tally, progress, radio, options.rate))
            stop.runners = runners
            stack.push_async_callback(_close_all, runners, progress)
            if not await _connect_all(runners, progress):
                return None
            async with progress:
                return await _send_all(runners, options, stop)
    finally:
        uninstall()


async def _connect_all(runners: list[Runner], progress: Progress) -> bool:
    if not await connected_all((runner.device.connect() for runner in runners), progress):
        return False
    for runner in runners:
        await runner.device.start()
    return True


async def _send_all(runners: list[Runner], options: Options, stop: Stop) -> float:
    loop = asyncio.get_running_loop()
    period = 1.0 / options.rate
    start = loop.time()
    deadline = start + options.duration if options.duration > 0 else math.inf
    tasks = []
    outages = []
    done = asyncio.Event()
    for i, runner in enumerate(runners):
        # Staggered over one period, so the fleet sends evenly rather than in bursts.
        first_due = start + period * i / len(runners)
        device_id = runner.device.device_id
        runner.task = asyncio.create_task(
            runner.run(first_due, deadline, stop), name=f"sim-{device_id}"
        )
        tasks.append(runner.task)
        if runner.radio is not None and options.offline_every and options.offline_for:
            rng = seeded(options.seed, f"{device_id}/outages")
            outages.append(
                asyncio.create_task(
                    run_outages(
                        runner.radio, options.offline_every, options.offline_for, rng, done
                    ),
                    name=f"outages-{device_id}",
                )
            )
    await asyncio.wait(tasks)
    elapsed = loop.time() - start
    # Radios come back on at the end, so the last flush can deliver what waits.
    done.set()
    if outages:
        await asyncio.wait(outages)
    for task in tasks:
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error
    return elapsed


async def _close_all(runners: list[Runner], progress: Progress) -> None:
    results = await asyncio.gather(
        *(runner.device.close() for runner in runners), return_exceptions=True
    )
    for runner, result in zip(runners, results, strict=True):
        runner.sync()
        runner.tally.commands += runner.device.commands.stats.answered
        if isinstance(result, LinkError):
            progress.note(str(result))
        elif isinstance(result, BaseException):
            raise result
        elif result:
            progress.note(f"{runner.device.device_id}: {result} buffered messages left unsent")


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
    return 0 if elapsed is not None and tally.errors == 0 and tally.dropped == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
