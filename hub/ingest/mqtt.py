"""MQTT ingest: `{prefix}/+/telemetry` and `{prefix}/+/status` into the
writer, `{prefix}/+/replies` to the command router.

Messages are taken from the connection in batches, normalized, queued for
the next commit, and acknowledged to the broker only once that commit is
durable (QoS 1, manual acks), so a crash before the commit means the broker
delivers them again, and the dedup rule absorbs the repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from types import TracebackType

from hub.config import MqttSettings
from hub.errors import HubClosing
from hub.ingest.pipeline import Pipeline
from hub.models import Accepted, LinkEvent, Normalized, RejectReason, Source, is_valid_device_id
from hub.mqtt import MqttConnection, MqttMessage, MqttState, MqttStatus
from hub.normalize import rejected
from hub.presence import MQTT_LINK

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
        self.connection = MqttConnection(
            settings,
            [
                (f"{share}{prefix}/+/telemetry", settings.qos),
                (f"{prefix}/+/status", settings.qos),
                (f"{prefix}/+/replies", settings.qos),
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
            device_id, _, kind = message.topic.removeprefix(prefix).partition("/")
            if kind == "telemetry":
                messages.append(self._telemetry(message, device_id, seen))
            elif kind == "status":
                self._status(message, device_id, links, messages)
            elif kind == "replies" and self.on_reply is not None:
                self.on_reply(device_id, message.payload)
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

    def _status(
        self,
        message: MqttMessage,
        device_id: str,
        links: list[LinkEvent],
        messages: list[Normalized],
    ) -> None:
        text = message.payload.decode("utf-8", errors="replace").strip().lower()
        if not text:
            return  # a retained status being cleared
        if not is_valid_device_id(device_id) or not self.auth.device_allowed(device_id):
            return
        if text in ("online", "offline"):
            links.append(LinkEvent(device_id, MQTT_LINK, text == "online"))
            self._heard_now(device_id)
        else:
            messages.append(
                rejected(
                    message.payload,
                    device_id=device_id,
                    source=Source.MQTT,
                    received_ms=message.received_ms,
                    reason=RejectReason.INVALID_STATUS,
                    detail="status must be 'online' or 'offline'",
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
