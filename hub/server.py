"""Serving the hub on uvicorn, and stopping it without losing anything.

uvicorn's own signal handling closes connections first and runs the ASGI
lifespan shutdown last; the hub needs the opposite: drain (commit and
acknowledge what was received) while clients are still connected, then close
them. So signals are ours: on SIGINT/SIGTERM, `Hub.stop()` drains, and only
then is uvicorn told to exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import signal
import socket
from collections.abc import AsyncIterator, Generator

import uvicorn

from hub.app import PACKET_OVERHEAD, Hub, create_hub
from hub.config import Settings

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn's server, with its signal handling left to the hub. This is the
    one place that relies on uvicorn's internals: its `serve` asks
    `capture_signals` to install its handlers (uvicorn 0.29 on; tested on
    0.55). Should a release stop asking, `handed_over` stays False, `running`
    says so, and uvicorn's own order applies: on SIGTERM it closes the
    connections first and the hub drains after (in its lifespan shutdown).
    Nothing is lost that way either, but devices then send again what they
    were not yet told was stored."""

    handed_over = False

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The hub installs its own handlers (see module docstring).
        self.handed_over = True
        yield


@contextlib.asynccontextmanager
async def running(settings: Settings, sock: socket.socket | None = None) -> AsyncIterator[Hub]:
    """Serve the hub until the block exits, then drain and stop it.

    `sock` is an already bound listening socket (tests bind port 0 and pass
    it); without it, the hub binds `server.host`/`server.port`.
    """
    hub = create_hub(settings)
    config = uvicorn.Config(
        hub.asgi,
        host=settings.server.host,
        port=settings.server.port,
        log_level=settings.log.level,
        lifespan="on",
        ws="websockets-sansio",
        # A websocket message larger than a device payload is refused by the
        # server instead of being read whole (uvicorn's default is 16 MiB).
        ws_max_size=settings.normalize.max_payload_bytes + PACKET_OVERHEAD,
        # Off by default, as in Node's engine.io: permessage-deflate compresses
        # every frame once per client (broadcast frames are shared, their
        # compression is not) and keeps zlib state for every connection.
        ws_per_message_deflate=settings.server.websocket_compression,
        timeout_graceful_shutdown=max(1, round(settings.server.shutdown_timeout)),
        access_log=False,
    )
    server = _Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock] if sock else None), name="uvicorn")
    while not server.started:
        if serving.done():
            serving.result()  # startup failed: raise its error
            raise RuntimeError("the server stopped during startup")
        await asyncio.sleep(0.01)
    if not server.handed_over:
        log.warning(
            "uvicorn %s handles SIGINT and SIGTERM itself (capture_signals was not "
            "called): on a signal it closes connections before the hub drains",
            importlib.metadata.version("uvicorn"),
        )
    try:
        yield hub
    finally:
        await hub.stop()
        server.should_exit = True
        await serving


async def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then drain and return."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with running(settings) as hub:
            port = settings.server.port
            log.info("dashboard at http://%s:%d/", settings.server.host, port)
            del hub
            await stop.wait()
            log.info("signal received: draining")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
