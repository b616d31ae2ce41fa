"""`telemetry-sim --firmware`: devices that publish as Tasmota, Zigbee2MQTT,
Homie or ESPHome do (devices/firmware/), for the hub's `[[mqtt.sources]]`
presets.

Each firmware client has one MQTT connection with the firmware's Last Will:
it announces itself on connecting and says goodbye on a clean stop. Each
device reports on its own timetable, as the native devices of devices/sim.py
do: its sensors are sampled, and the firmware's messages for them published
at QoS 1, each one the broker acknowledges counted. Firmware keeps no
telemetry while offline, so neither does this: a publish that fails is an
error, and the connection is tried again at most once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import ssl
import time
from contextlib import AsyncExitStack

import aiomqtt

from devices.errors import LinkError
from devices.firmware import Firmware, Message, Sample, fleet
from devices.link import Deadlines, describe
from devices.mqtt_link import parse_broker_url
from devices.progress import Progress, Tally, connected_all
from devices.signals import MetricSpec, Signal, Spikes, make_signals, seeded
from devices.sim_options import Options
from devices.stop import Stop
from devices.timetable import Timetable

RECONNECT_INTERVAL_S = 1.0

RSSI = MetricSpec(
    unit="dBm", base=-62.0, spread=8.0, daily_amplitude=2.0,
    walk_stddev=3.0, walk_tau_s=120.0,
    spikes_per_hour=1.0, spike_magnitude=-15.0, spike_duration_s=10.0,
    low=-95.0, high=-30.0, decimals=0, send_unit=False,
)  # fmt: skip
LINKQUALITY = MetricSpec(
    unit=None, base=150.0, spread=40.0, daily_amplitude=5.0,
    walk_stddev=15.0, walk_tau_s=300.0,
    spikes_per_hour=0.0, spike_magnitude=0.0, spike_duration_s=0.0,
    low=0.0, high=255.0, decimals=0, send_unit=False,
)  # fmt: skip


class Sensors:
    """One device's sensors: the climate signals of devices/signals.py, Wi-Fi
    and Zigbee link quality, a battery, and a motion sensor."""

    def __init__(self, rng: random.Random, started: float) -> None:
        self.climate = make_signals(("temperature", "humidity", "pressure"), rng)
        self.rssi = Signal("rssi", RSSI, rng)
        self.linkquality = Signal("linkquality", LINKQUALITY, rng)
        self.motion = Spikes(rng, per_hour=30.0, magnitude=1.0, duration_s=30.0)
        self.battery = rng.randint(60, 100)
        self.started = started

    def sample(self, now: float) -> Sample:
        climate = {metric: signal.sample(now)[0] for metric, signal in self.climate.items()}
        return Sample(
            time=now,
            temperature=climate["temperature"],
            humidity=climate["humidity"],
            pressure=climate["pressure"],
            battery=self.battery,
            voltage=2700 + 5 * self.battery,  # a coin cell: 3.0 V to 3.2 V
            linkquality=int(self.linkquality.sample(now)[0]),
            rssi=int(self.rssi.sample(now)[0]),
            motion=self.motion.sample(now) > 0,
            uptime=int(now - self.started),
        )


class Connection:
    """One firmware client's MQTT connection: its Last Will, its hello on
    connecting, its goodbye before a clean DISCONNECT, and QoS 1 publishes
    that fail as soon as the connection drops."""

    transport = "mqtt"

    def __init__(
        self, firmware: Firmware, url: str, *, timeout: float = 10.0, keepalive: int = 60
    ) -> None:
        self.firmware = firmware
        self.address = parse_broker_url(url)
        devices = firmware.devices
        self.label = devices[0] if len(devices) == 1 else firmware.client_id
        self._deadlines = Deadlines(timeout)
        self._keepalive = keepalive
        self._client: aiomqtt.Client | None = None
        self._stack: AsyncExitStack | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._lost = False
        self._reconnecting = asyncio.Lock()
        self._retry_at = 0.0

    @property
    def connected(self) -> bool:
        return self._client is not None and not self._lost

    async def connect(self) -> None:
        """Connect and publish the hello; raises `LinkError`."""
        await self._release()
        address, will = self.address, self.firmware.will()
        client = aiomqtt.Client(
            address.host,
            address.port,
            username=address.username,
            password=address.password,
            identifier=self.firmware.client_id,
            will=aiomqtt.Will(will.topic, will.payload, qos=1, retain=will.retain),
            timeout=self._deadlines.seconds,
            keepalive=self._keepalive,
            tls_context=ssl.create_default_context() if address.tls else None,
        )
        stack = AsyncExitStack()
        try:
            await stack.enter_async_context(client)
        except aiomqtt.MqttError as exc:
            raise self._error("connect", describe(exc)) from exc
        self._client, self._stack, self._lost = client, stack, False
        self._watcher = asyncio.create_task(self._watch(client), name=f"mqtt-watch-{self.label}")
        try:
            for message in self.firmware.hello():
                await self._publish(client, message)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            await self._release()
            raise self._error("connect", describe(exc)) from exc

    async def reconnect(self) -> bool:
        """Connect again unless connected or tried less than a second ago;
        True if this call did. Raises `LinkError`."""
        async with self._reconnecting:  # the devices of a bridge share it
            now = asyncio.get_running_loop().time()
            if self.connected or now < self._retry_at:
                return False
            self._retry_at = now + RECONNECT_INTERVAL_S
            await self.connect()
            return True

    async def publish(self, message: Message) -> None:
        """Publish at QoS 1 and wait for the PUBACK; raises `LinkError`."""
        client = self._client
        if client is None or self._lost:
            raise self._error("publish", "not connected")
        try:
            await self._publish(client, message)
        except aiomqtt.MqttError as exc:
            raise self._error("publish", describe(exc)) from exc
        except TimeoutError as exc:
            if self._lost:
                detail = "connection lost before the broker acknowledged"
            else:
                detail = f"no acknowledgement within {self._deadlines.seconds:g} s"
            raise self._error("publish", detail) from exc

    async def close(self) -> None:
        """Publish the goodbye and disconnect cleanly. Safe to call twice."""
        client = self._client
        if client is not None and not self._lost:
            # If the goodbye fails, so is the connection: the broker sends the Will.
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                for message in self.firmware.goodbye():
                    await self._publish(client, message)
        await self._release()

    async def _publish(self, client: aiomqtt.Client, message: Message) -> None:
        await self._deadlines.run(
            client.publish(
                message.topic, message.payload, qos=1, retain=message.retain, timeout=math.inf
            )
        )

    def _error(self, operation: str, detail: str) -> LinkError:
        return LinkError(self.transport, self.label, operation, detail)

    async def _watch(self, client: aiomqtt.Client) -> None:
        # Nothing is subscribed: iterating only learns that the connection dropped.
        with contextlib.suppress(aiomqtt.MqttError):
            async for _ in client.messages:
                pass
        self._lost = True
        self._deadlines.expire()

    async def _release(self) -> None:
        watcher, stack = self._watcher, self._stack
        self._client = self._stack = self._watcher = None
        self._lost = False
        self._deadlines.expire()
        if watcher is not None:
            watcher.cancel()
            await asyncio.wait([watcher])
        if stack is not None:
            try:
                await stack.aclose()  # a clean DISCONNECT unless already gone
            except aiomqtt.MqttError as exc:
                raise self._error("close", describe(exc)) from exc


class Reporter:
    """One device's reporting loop."""

    def __init__(
        self,
        device: str,
        connection: Connection,
        sensors: Sensors,
        tally: Tally,
        progress: Progress,
        rate: float,
    ) -> None:
        self.device = device
        self.connection = connection
        self.sensors = sensors
        self.tally = tally
        self.progress = progress
        self.timetable = Timetable(rate)
        self.readings = 0  # values in the acknowledged publishes
        self.busy = False
        self.task: asyncio.Task[None] | None = None
        self._reported = False

    async def run(self, first_due: float, deadline: float, stop: Stop) -> None:
        loop = asyncio.get_running_loop()
        timetable = self.timetable
        timetable.start(first_due)
        while not stop.requested:
            due = timetable.due
            delay = min(due, deadline) - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if due >= deadline:
                return
            timetable.advance()
            if delay <= 0:
                await asyncio.sleep(0)  # a device that is behind must not starve the others
            self.busy = True
            try:
                await self._report()
            finally:
                self.busy = False

    async def _report(self) -> None:
        connection, tally = self.connection, self.tally
        if not connection.connected:
            try:
                if await connection.reconnect():
                    self.progress.note(f"{connection.label}: reconnected")
            except LinkError as exc:
                self._failed(str(exc), count=False)
        sample = self.sensors.sample(time.time())
        for message in connection.firmware.report(self.device, sample):
            tally.sent += 1
            try:
                await connection.publish(message)
            except LinkError as exc:
                self._failed(str(exc))
            else:
                tally.acknowledged += 1
                self.readings += message.values
                self._reported = False

    def _failed(self, message: str, *, count: bool = True) -> None:
        if count:
            self.tally.errors += 1
        # One line per outage and device, not one per message.
        if not self._reported:
            self._reported = True
            self.progress.note(message)


async def run_firmware(
    options: Options, tally: Tally, progress: Progress, stop: Stop
) -> float | None:
    """Run the fleet of `options.firmware`; the seconds spent reporting, or
    None if devices could not connect."""
    assert options.firmware is not None
    firmwares = fleet(options.firmware, options.devices, options.id_prefix)
    connections = [Connection(firmware, options.broker) for firmware in firmwares]
    started = time.time()
    reporters = [
        Reporter(
            device,
            connection,
            Sensors(seeded(options.seed, device), started),
            tally,
            progress,
            options.rate,
        )
        for connection in connections
        for device in connection.firmware.devices
    ]
    stop.runners = reporters
    try:
        if not await _connect_all(connections, progress):
            return None
        async with progress:
            return await _report_all(reporters, options, stop)
    finally:
        await _close_all(connections, progress)
        tally.readings = sum(reporter.readings for reporter in reporters)


async def _connect_all(connections: list[Connection], progress: Progress) -> bool:
    return await connected_all((connection.connect() for connection in connections), progress)


async def _report_all(reporters: list[Reporter], options: Options, stop: Stop) -> float:
    loop = asyncio.get_running_loop()
    period = 1.0 / options.rate
    start = loop.time()
    deadline = start + options.duration if options.duration > 0 else math.inf
    tasks = []
    for i, reporter in enumerate(reporters):
        # Staggered over one period, so the fleet reports evenly rather than in bursts.
        first_due = start + period * i / len(reporters)
        task = asyncio.create_task(
            reporter.run(first_due, deadline, stop), name=f"sim-{reporter.device}"
        )
        reporter.task = task
        tasks.append(task)
    await asyncio.wait(tasks)
    elapsed = loop.time() - start
    for task in tasks:
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error
    return elapsed


async def _close_all(connections: list[Connection], progress: Progress) -> None:
    results = await asyncio.gather(
        *(connection.close() for connection in connections), return_exceptions=True
    )
    for result in results:
        if isinstance(result, LinkError):
            progress.note(str(result))
        elif isinstance(result, BaseException):
            raise result
