"""MQTT ingest: `{prefix}/+/telemetry` and `{prefix}/+/status` into the
writer, `{prefix}/+/replies` to the command router, and the topics of each
`[[mqtt.sources]]` (`hub.sources`) into the writer like the native ones.

Messages are taken from the connection in batches, normalized, queued for
the next commit, and acknowledged to the broker only once that commit is
durable (QoS 1, manual acks), so a crash before the commit means the broker
delivers them again, and the dedup rule absorbs the repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from types import TracebackType

from hub.config import MqttSettings
from hub.errors import HubClosing
from hub.ingest.pipeline import Pipeline
from hub.models import (
    Accepted,
    Attribute,
    LinkEvent,
    Normalized,
    RejectReason,
    Source,
    is_valid_device_id,
)
from hub.mqtt import MqttConnection, MqttMessage, MqttState, MqttStatus
from hub.normalize import rejected
from hub.presence import MQTT_LINK
from hub.sources import base as sources
from hub.sources import build_sources
from hub.sources.names import device_id_for

DESCRIBED_MAX = 100_000  # source devices whose name, source and group were stored this run

log = logging.getLogger(__name__)


class MqttIngest:
    def __init__(
        self,
        settings: MqttSettings,
        pipeline: Pipeline,
        *,
        batch_max: int = 1000,
    ):
        self.settings = settings
        self.pipeline = pipeline
        self.writer = pipeline.writer
        self.auth = pipeline.auth
        self.metrics = pipeline.metrics
        self.batch_max = batch_max
        # Set by the command router: (device id, reply payload) for each reply.
        self.on_reply: Callable[[str, bytes], None] | None = None
        # device id -> when it was last heard over MQTT (bounded, least recent dropped)
        self._heard: OrderedDict[str, float] = OrderedDict()
        prefix = settings.topic_prefix
        # Shared by the hubs of a cluster: each message goes to one of them.
        # Subscribed again on every connect (hub.mqtt), which Mosquitto 2.0
        # needs: it forgets shared subscriptions when it restarts, even with
        # the session kept. Status and replies stay unshared: every hub sees them.
        share = f"$share/{settings.shared_group}/" if settings.shared_group else ""
        self.sources = build_sources(settings.sources)
        self._described: set[str] = set()
        foreign = [
            (f"{share if s.telemetry else ''}{s.filter}", settings.qos)
            for source in self.sources
            for s in source.subscriptions()
        ]
        self.connection = MqttConnection(
            settings,
            [
                (f"{share}{prefix}/+/telemetry", settings.qos),
                (f"{prefix}/+/status", settings.qos),
                (f"{prefix}/+/replies", settings.qos),
                *foreign,
            ],
            high_water=max(10_000, settings.receive_maximum * 2),
            on_lost=self._lost,
        )
        self._consumer: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Future[Accepted]] = set()
        # Messages received and not yet committed. The broker is asked to keep
        # at most `receive_maximum` of them unacknowledged, but Mosquitto 2.0.11
        # sends far more once acknowledgements flow (measured: 21,896
        # outstanding with a window of 100), so the hub keeps the bound itself:
        # past it, it takes nothing more from the connection, whose buffer then
        # fills and stops reading the socket.
        self._uncommitted = 0
        self._window = settings.receive_maximum
        self._room = asyncio.Event()
        self._in_flight_tasks: set[asyncio.Task[None]] = set()

    @property
    def status(self) -> MqttStatus:
        return self.connection.status

    async def __aenter__(self) -> MqttIngest:
        await self.connection.__aenter__()
        self._consumer = asyncio.create_task(self._consume(), name="mqtt-ingest")
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Drain: read nothing new, hand over what was received, wait for its
        # commit so that it is acknowledged, then disconnect.
        self.connection.stop_reading()
        if self._consumer is not None:
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
        while batch := self.connection.take(self.batch_max):
            await self._handle(batch)
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        await self.connection.close()

    def _lost(self) -> None:
        """The broker connection dropped: the devices whose presence it carried
        are offline as far as the hub can tell (their retained statuses bring
        them back when it reconnects)."""
        task = asyncio.create_task(self._drop_presence(), name="mqtt-presence-lost")
        self._in_flight_tasks.add(task)
        task.add_done_callback(self._in_flight_tasks.discard)

    async def _drop_presence(self) -> None:
        with contextlib.suppress(HubClosing):
            await self.writer.enqueue(Source.MQTT, int(time.time() * 1000), [], dropped=[MQTT_LINK])

    async def _consume(self) -> None:
        while True:
            while self._uncommitted >= self._window:
                self._room.clear()
                await self._room.wait()
            room = self._window - self._uncommitted
            batch = await self.connection.receive(min(self.batch_max, room))
            try:
                await self._handle(batch)
            except Exception:
                log.exception(
                    "MQTT batch of %d messages failed; they will be redelivered", len(batch)
                )

    async def _handle(self, batch: list[MqttMessage]) -> None:
        prefix = self.settings.topic_prefix + "/"
        messages: list[Normalized] = []
        seen: list[str] = []
        links: list[LinkEvent] = []
        for message in batch:
            if not message.topic.startswith(prefix):
                self._foreign(message, messages, seen, links)
                continue
            device_id, _, kind = message.topic[len(prefix) :].partition("/")
            if kind == "telemetry":
                messages.append(self._telemetry(message, device_id, seen))
            elif kind == "status":
                self._status(message, device_id, links, messages, seen)
            elif kind == "replies" and self.on_reply is not None:
                self.on_reply(device_id, message.payload)
            elif self.sources:
                self._foreign(message, messages, seen, links)
        self.metrics.inc("hub_messages_received_total", len(batch), source="mqtt")
        future = await self.writer.enqueue(
            Source.MQTT, int(time.time() * 1000), messages, seen, links
        )
        self._in_flight.add(future)
        self._uncommitted += len(batch)
        future.add_done_callback(lambda done: self._committed(done, batch))

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish at the subscription QoS (commands to devices)."""
        self.connection.publish(topic, payload, self.settings.qos)

    def heard_from(self, device_id: str, within: float) -> bool:
        """Whether the device spoke over MQTT in the last `within` seconds."""
        heard = self._heard.get(device_id)
        return heard is not None and time.monotonic() - heard < within

    def _heard_now(self, device_id: str) -> None:
        self._heard.pop(device_id, None)
        self._heard[device_id] = time.monotonic()
        if len(self._heard) > 100_000:
            self._heard.popitem(last=False)

    def _telemetry(self, message: MqttMessage, device_id: str, seen: list[str]) -> Normalized:
        prepared = self.pipeline.prepare(
            Source.MQTT, device_id, message.payload, message.received_ms
        )
        if prepared.admitted:
            seen.append(device_id)
            self._heard_now(device_id)
        return prepared.normalized

    def _foreign(
        self,
        message: MqttMessage,
        messages: list[Normalized],
        seen: list[str],
        links: list[LinkEvent],
    ) -> None:
        """A message on a source's topics: the first source that knows the
        topic says what it means."""
        for source in self.sources:
            decoded = source.decode(message.topic, message.payload, message.retain)
            if decoded is None:
                continue
            for item in decoded:
                self._decoded(source, item, message, messages, seen, links)
            return

    def _decoded(
        self,
        source: sources.Source,
        item: sources.Decoded,
        message: MqttMessage,
        messages: list[Normalized],
        seen: list[str],
        links: list[LinkEvent],
    ) -> None:
        device_id = device_id_for(item.name)
        if isinstance(item, sources.Telemetry):
            prepared = self.pipeline.prepare(
                Source.MQTT,
                device_id,
                message.payload,
                message.received_ms,
                item.document,
                parsed=True,
                units=item.units,
                pack=item.senml,
                origin=(source.label, item.name),
            )
            normalized = prepared.normalized
            if message.retain and normalized.readings:
                # Handed over on subscribing: a last state of unknown age.
                normalized = dataclasses.replace(normalized, readings=())
            messages.append(normalized)
            if prepared.admitted:
                seen.append(device_id)
                self._heard_now(device_id)
                self._describe(source, device_id, item.name, message.received_ms, messages)
            return
        holder = self.pipeline.names.claim(device_id, source.label, item.name)
        if holder is not None or not self.auth.device_allowed(device_id):
            return  # refused with a reason when it sends readings
        if isinstance(item, sources.Availability):
            _link(device_id, item.online, links, seen)
            self._heard_now(device_id)
            self._describe(source, device_id, item.name, message.received_ms, messages)
        else:
            messages.append(
                _refused(
                    message, device_id, RejectReason.INVALID_VALUE, f"{source.label}: {item.detail}"
                )
            )

    def _describe(
        self,
        source: sources.Source,
        device_id: str,
        name: str,
        received_ms: int,
        messages: list[Normalized],
    ) -> None:
        """The first time this run a source's device is heard from: its name
        there, its source and its group, as attributes."""
        if device_id in self._described or len(self._described) >= DESCRIBED_MAX:
            return
        self._described.add(device_id)
        described = [
            Attribute(device_id, "name", name, received_ms),
            Attribute(device_id, "source", source.label, received_ms),
        ]
        if source.group:
            self.auth.join_group(device_id, source.group)  # unless [[devices]] gives one
            group = self.auth.groups[device_id]
            described.append(Attribute(device_id, "group", group, received_ms))
        messages.append(Normalized(attributes=tuple(described)))

    def _status(
        self,
        message: MqttMessage,
        device_id: str,
        links: list[LinkEvent],
        messages: list[Normalized],
        seen: list[str],
    ) -> None:
        text = message.payload.decode("utf-8", errors="replace").strip().lower()
        if not text:
            return  # a retained status being cleared
        if not is_valid_device_id(device_id) or not self.auth.device_allowed(device_id):
            return
        if text in ("online", "offline"):
            _link(device_id, text == "online", links, seen)
            self._heard_now(device_id)
        else:
            messages.append(
                _refused(
                    message,
                    device_id,
                    RejectReason.INVALID_STATUS,
                    "status must be 'online' or 'offline'",
                )
            )

    def _committed(self, future: asyncio.Future[Accepted], batch: list[MqttMessage]) -> None:
        self._in_flight.discard(future)
        self._uncommitted -= len(batch)
        self._room.set()
        if future.cancelled() or future.exception() is not None:
            return  # not acknowledged: the broker delivers these again
        self.connection.ack(batch)

    @property
    def ready(self) -> bool:
        return self.connection.status.state is MqttState.CONNECTED


def _link(device_id: str, online: bool, links: list[LinkEvent], seen: list[str]) -> None:
    """The device's link came up or went down. A device that says it is
    offline after a message earlier in the same batch is offline: the writer
    applies a batch's links before what it heard."""
    links.append(LinkEvent(device_id, MQTT_LINK, online))
    if not online:
        seen[:] = [d for d in seen if d != device_id]


def _refused(message: MqttMessage, device_id: str, reason: RejectReason, detail: str) -> Normalized:
    """A message that cannot be taken, as its dead letter."""
    return rejected(
        message.payload,
        device_id=device_id,
        source=Source.MQTT,
        received_ms=message.received_ms,
        reason=reason,
        detail=detail,
    )
