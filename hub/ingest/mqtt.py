"""MQTT ingest: `{prefix}/+/telemetry` and `{prefix}/+/status` into the writer.

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
from types import TracebackType

from hub.auth import Authenticator
from hub.config import MqttSettings
from hub.errors import HubClosing
from hub.metrics import Metrics
from hub.models import (
    Normalized,
    Rejection,
    RejectReason,
    Source,
    is_valid_device_id,
)
from hub.mqtt import MqttConnection, MqttMessage, MqttState, MqttStatus
from hub.normalize import EXCERPT_BYTES, Rules, normalize
from hub.presence import MQTT_LINK
from hub.writer import Accepted, LinkEvent, Writer

log = logging.getLogger(__name__)


class MqttIngest:
    def __init__(
        self,
        settings: MqttSettings,
        writer: Writer,
        rules: Rules,
        auth: Authenticator,
        metrics: Metrics,
        *,
        batch_max: int = 1000,
    ):
        self.settings = settings
        self.writer = writer
        self.rules = rules
        self.auth = auth
        self.metrics = metrics
        self.batch_max = batch_max
        prefix = settings.topic_prefix
        self.connection = MqttConnection(
            settings,
            [(f"{prefix}/+/telemetry", settings.qos), (f"{prefix}/+/status", settings.qos)],
            high_water=max(10_000, settings.receive_maximum * 2),
            on_lost=self._lost,
        )
        self._consumer: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Future[Accepted]] = set()
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
            batch = await self.connection.receive(self.batch_max)
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
        self.metrics.inc("hub_messages_received_total", len(batch), source="mqtt")
        future = await self.writer.enqueue(
            Source.MQTT, int(time.time() * 1000), messages, seen, links
        )
        self._in_flight.add(future)
        future.add_done_callback(lambda done: self._committed(done, batch))

    def _telemetry(self, message: MqttMessage, device_id: str, seen: list[str]) -> Normalized:
        if is_valid_device_id(device_id) and not self.auth.device_allowed(device_id):
            return _rejected(
                message,
                device_id,
                RejectReason.UNKNOWN_DEVICE,
                "not listed in [[devices]] and enrollment is not open",
            )
        normalized = normalize(
            message.payload,
            device_id=device_id,
            source=Source.MQTT,
            received_ms=message.received_ms,
            rules=self.rules,
        )
        if is_valid_device_id(device_id):
            seen.append(device_id)
        return normalized

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
        else:
            messages.append(
                _rejected(
                    message,
                    device_id,
                    RejectReason.INVALID_STATUS,
                    "status must be 'online' or 'offline'",
                )
            )

    def _committed(self, future: asyncio.Future[Accepted], batch: list[MqttMessage]) -> None:
        self._in_flight.discard(future)
        if future.cancelled() or future.exception() is not None:
            return  # not acknowledged: the broker delivers these again
        self.connection.ack(batch)

    @property
    def ready(self) -> bool:
        return self.connection.status.state is MqttState.CONNECTED


def _rejected(
    message: MqttMessage, device_id: str, reason: RejectReason, detail: str
) -> Normalized:
    excerpt = message.payload[:EXCERPT_BYTES].decode("utf-8", errors="replace")
    rejection = Rejection(Source.MQTT, device_id[:64], reason, detail, message.received_ms, excerpt)
    return Normalized(rejections=(rejection,))
