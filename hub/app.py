"""All the wiring, in one place.

`create_hub` builds Quart, the Socket.IO server and every component, and
hands each what it needs. Nothing runs until Quart's `while_serving` enters
`Hub.start`, which opens them in dependency order on an `AsyncExitStack`;
`Hub.stop` unwinds it: MQTT stops reading and hands over what it received,
the writer commits everything queued (so every acknowledgement goes out), the
live path sends the last of the store's log, dashboards are disconnected, the
store closes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import socketio
from quart import Quart

from hub import __version__
from hub.admin import AdminNamespace
from hub.api import api
from hub.auth import Authenticator
from hub.commands import Bus, Commands
from hub.config import Settings
from hub.cors import allow_origins
from hub.dashboard import DashboardNamespace
from hub.ingest.http import http_ingest
from hub.ingest.mqtt import MqttIngest
from hub.ingest.pipeline import Pipeline
from hub.ingest.socketio import DeviceNamespace
from hub.limits import RateLimiter
from hub.live import Live
from hub.metrics import Metrics
from hub.normalize import Rules
from hub.pages import pages
from hub.polling import Engine, LongPolls
from hub.presence import Presence
from hub.replay import Replay
from hub.sources.names import DeviceNames
from hub.store import SqliteStore, Store, open_store
from hub.wire import HubPacket
from hub.writer import Writer

log = logging.getLogger(__name__)

# Room for the Socket.IO packet framing around a device payload.
PACKET_OVERHEAD = 4096


@dataclass
class Hub:
    settings: Settings
    sio: socketio.AsyncServer
    quart: Quart
    asgi: Any
    store: Store
    presence: Presence
    live: Live
    writer: Writer
    mqtt: MqttIngest | None
    metrics: Metrics
    names: DeviceNames
    _stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    _started: bool = False

    async def start(self) -> None:
        stack = self._stack
        await self.store.open()
        stack.push_async_callback(self.store.close)
        await self.store.enroll([(d.id, d.group) for d in self.settings.devices])
        known = await self.store.known_devices()
        self.presence.load(known)
        self.names.load(known)
        stack.push_async_callback(self._disconnect_clients)
        await stack.enter_async_context(self.live)
        await stack.enter_async_context(self.writer)
        if self.mqtt is not None:
            await stack.enter_async_context(self.mqtt)
        self._started = True
        log.info(
            "hub %sstarted: store %s epoch %s head %d",
            f"{self.settings.cluster.node_id} " if self.settings.cluster.node_id else "",
            self.store.status().get("url") or self.settings.storage.path,
            self.store.epoch,
            self.store.head,
        )

    async def stop(self) -> None:
        """Drain and close; safe to call more than once."""
        if self._started:
            self._started = False
            log.info("hub stopping: draining")
        await self._stack.aclose()

    async def _disconnect_clients(self) -> None:
        self.live.engine.release_all()

    def ingest_status(self) -> dict[str, Any]:
        mqtt: dict[str, Any] = (
            self.mqtt.status.to_wire() if self.mqtt is not None else {"state": "disabled"}
        )
        return {
            "mqtt": mqtt,
            "socketio": {
                "state": "listening",
                "devices": len(self.sio.manager.rooms.get("/devices", {}).get(None, {})),
            },
            "http": {"state": "listening"},
            "writer": {"backlog": self.writer.backlog, "failing": self.writer.failing},
        }


def create_hub(settings: Settings, web_root: Path | None = None) -> Hub:
    metrics = Metrics(node=settings.cluster.node_id)
    rules = Rules.from_settings(settings.normalize)
    auth = Authenticator(settings.auth, settings.devices)
    store = open_store(settings.storage)
    presence = Presence(round(settings.presence.offline_after * 1000))
    server = settings.server
    origins = list(server.cors_allowed_origins)
    sio = socketio.AsyncServer(
        async_mode="asgi",
        transports=list(server.transports),
        cors_allowed_origins=("*" if origins == ["*"] else origins) if origins else None,
        ping_interval=server.ping_interval,
        ping_timeout=server.ping_timeout,
        max_http_buffer_size=settings.normalize.max_payload_bytes + PACKET_OVERHEAD,
        serializer=HubPacket,
    )
    engine = Engine(sio)
    replay = Replay(sio, store, settings.replay, metrics, engine)
    live = Live(
        sio,
        store,
        replay,
        metrics,
        tick=settings.broadcast.tick,
        frame_rate=settings.broadcast.frame_rate,
        hold_max=settings.replay.max_backlog,
        presence_rate=settings.broadcast.presence_rate,
    )
    writer = Writer(
        store,
        presence,
        metrics,
        batch_max=settings.storage.batch_max,
        linger=settings.storage.commit_linger,
        linger_busy=settings.storage.commit_linger_busy,
        queue_max=settings.storage.queue_max,
        retention_ms=round(settings.storage.retention * 1000),
        retention_batch=settings.storage.retention_batch,
    )
    limiter = RateLimiter(settings.limits.device_rate, settings.limits.device_burst)
    names = DeviceNames()
    pipeline = Pipeline(writer, rules, auth, limiter, metrics, settings.storage.ack_timeout, names)
    mqtt = MqttIngest(settings.mqtt, pipeline) if settings.mqtt.enabled else None
    devices = DeviceNamespace(pipeline)
    sio.register_namespace(devices)
    commands = Commands(
        sio,
        store,
        presence,
        metrics,
        settings.commands,
        topic_prefix=settings.mqtt.topic_prefix,
        offline_after=settings.presence.offline_after,
        bus=store if isinstance(store, Bus) else None,
    )
    commands.socket_of = devices.sid_of
    metrics.gauge("hub_commands_in_flight", lambda: float(commands.in_flight))
    if mqtt is not None:
        mqtt.on_reply = commands.on_mqtt_reply
        commands.mqtt_publish = mqtt.publish
        commands.heard_over_mqtt = mqtt.heard_from
    sio.register_namespace(AdminNamespace(commands, auth))
    sio.register_namespace(DashboardNamespace(live, auth))

    quart = Quart(__name__)
    quart.config["MAX_CONTENT_LENGTH"] = settings.normalize.max_payload_bytes + PACKET_OVERHEAD
    hub = Hub(settings, sio, quart, None, store, presence, live, writer, mqtt, metrics, names)
    info = {
        "version": __version__,
        "node": settings.cluster.node_id,
        "transports": list(server.transports),
        "stale_after_ms": round(settings.dashboard.stale_after * 1000),
        "offline_after_ms": round(settings.presence.offline_after * 1000),
    }
    quart.register_blueprint(api(store, presence, auth, metrics, hub.ingest_status, info))
    quart.register_blueprint(http_ingest(pipeline))
    quart.register_blueprint(pages(web_root))
    allow_origins(quart, settings.server.cors_allowed_origins)
    metrics.gauge("hub_store_head_seq", lambda: float(store.head))
    metrics.gauge("hub_devices_online", lambda: float(len(presence)))
    metrics.gauge("hub_writer_backlog", lambda: float(writer.backlog))
    metrics.gauge("hub_writer_busy", lambda: float(writer.pace.busy))
    metrics.gauge("hub_dashboard_clients", lambda: float(live.clients))
    metrics.gauge("hub_replays_active", lambda: float(replay.active))
    metrics.gauge("hub_replays_queued", lambda: float(live.replays - replay.active))
    metrics.gauge("hub_replay_holds", lambda: float(live.holds))
    metrics.gauge("hub_dashboards_lagging", lambda: float(live.lagging))
    metrics.gauge(
        "hub_mqtt_connected", lambda: float(mqtt is not None and mqtt.connection.connected)
    )
    if isinstance(store, SqliteStore):
        checkpoints = store.checkpoints
        metrics.gauge("hub_db_bytes", lambda: float(store.db_bytes()))
        metrics.gauge("hub_wal_bytes", lambda: float(checkpoints.wal_bytes()))
        metrics.counted("hub_wal_written_bytes_total", lambda: float(store.wal.written_bytes))
        metrics.counted("hub_wal_restarts_total", lambda: float(store.wal.restarts))
        metrics.gauge("hub_checkpoints_failing", lambda: float(checkpoints.failing is not None))

    @quart.while_serving
    async def lifespan() -> AsyncGenerator[None, None]:
        await hub.start()
        yield
        await hub.stop()

    long_polls = LongPolls(
        sio,
        socketio.ASGIApp(sio, other_asgi_app=quart, socketio_path="socket.io"),
        metrics,
        rate=settings.broadcast.poll_rate,
        engine=engine,
    )
    metrics.gauge("hub_long_poll_interval_seconds", lambda: long_polls.current_interval)
    hub.asgi = long_polls
    return hub
