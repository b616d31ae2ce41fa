"""Long-polling: what the hub needs from python-engineio beyond its API
(connection endings, how much a client has queued but not yet been sent), and
the hub's own answer to a long-poll GET (`LongPolls`). This module is the one
place that touches python-engineio's internals (`Engine`), after checking
that they behave as expected (`engineio_problem`).

When a polling client says goodbye (an Engine.IO CLOSE packet in a POST),
python-engineio closes the session but leaves the client's pending GET
waiting for up to ping_interval + ping_timeout. The official JavaScript client
does not care (it aborts its request), but python-engineio's client waits for
that GET in `disconnect()`, so it hangs for tens of seconds. The Node.js
server answers the pending GET at once; so does the hub, by handing the
closed session's queue a NOOP packet.

python-engineio's poll (4.15.1) turns a cancellation into an empty queue:
a GET whose task is cancelled while it waits closes its session and
returns a 400 instead of raising CancelledError. Whatever cancels a task
inside a long-poll must not count on the cancellation reaching it.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import math
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import socketio
from engineio import packet
from engineio.async_socket import AsyncSocket
from engineio.exceptions import EngineIOError

from hub.metrics import Metrics

log = logging.getLogger(__name__)

MAX_INTERVAL = 1.0  # the longest a busy session waits between two answers
ACTIVE = 2 * MAX_INTERVAL  # a session answered this recently counts as polling
RECOUNT = 0.25  # seconds between two counts of the polling sessions

ASGIHandler = Callable[[dict[str, Any], Callable[..., Any], Callable[..., Any]], Awaitable[None]]


def engineio_problem(sio: socketio.AsyncServer) -> str | None:
    """What keeps the hub from using python-engineio's internals on `sio`, or
    None when nothing does. It builds a session as python-engineio does,
    queues a packet in it and answers it the way `LongPolls` does (`_ok`,
    `_bad_request`, the CORS headers and check, the compressions), and looks
    for the session table and the disconnect handler the hub wraps."""
    eio = sio.eio
    try:
        if not isinstance(eio.sockets, dict):
            return "eio.sockets is not the table of sessions"
        if not callable(eio.handlers.get("disconnect")):
            return "eio.handlers has no disconnect handler"
        eio.reason.CLIENT_DISCONNECT  # noqa: B018 (only that it exists)
        session = AsyncSocket(eio, "hub-check")
        if not callable(getattr(session, "handle_get_request", None)) or not all(
            getattr(session, flag) is False
            for flag in ("connected", "closed", "upgrading", "upgraded")
        ):
            return "a session lacks handle_get_request or its state flags"
        session.queue.put_nowait(packet.Packet(packet.MESSAGE, "check"))
        if session.queue.qsize() != 1:
            return "a session's queue does not count what it holds"
        answer = eio._ok([session.queue.get_nowait()])
        if not answer["status"].startswith("200") or answer["response"] != b"4check":
            return f"_ok answered {answer!r}"
        if not eio._bad_request()["status"].startswith("400"):
            return "_bad_request is not a 400"
        for environ in ({"REQUEST_METHOD": "GET"}, _cors_environ([(b"origin", b"http://a.test")])):
            headers = eio._cors_headers(environ)
            if not isinstance(headers, list) or not all(
                isinstance(h, tuple) and len(h) == 2 and all(isinstance(x, str) for x in h)
                for h in headers
            ):
                return f"_cors_headers answered {headers!r}"
        allowed = eio._cors_allowed_origins(_cors_environ([(b"origin", b"http://a.test")]))
        if allowed is not None and not isinstance(allowed, list):
            return f"_cors_allowed_origins answered {allowed!r}"
        for method in eio.compression_methods:
            if not isinstance(getattr(eio, "_" + method)(b"x" * 100), bytes):
                return f"no _{method} compression"
    except Exception as exc:  # whatever changed, python-engineio's own path still works
        return f"{type(exc).__name__}: {exc}"
    return None


class Engine:
    """The hub's one access to python-engineio's internals, for one server:
    how much a client has queued, a pending long-poll answered at once when
    its client says goodbye, every connection ended at shutdown, and (through
    `LongPolls`) long-polls answered directly. `engineio_problem` checks them
    first; when it finds a problem (or with `direct=False`), the hub logs why
    and uses python-engineio's public path: its own long-polling, no queue
    counts (a client that lags is not taken out; replay keeps its rate
    limits), goodbyes and shutdown as python-engineio handles them."""

    def __init__(self, sio: socketio.AsyncServer, *, direct: bool | None = None):
        self.sio = sio
        if direct is None:
            problem = engineio_problem(sio)
            if problem is not None:
                log.warning(
                    "python-engineio %s: its internals are not as the hub needs (%s); "
                    "using its public path, which is slower",
                    engineio_version(),
                    problem,
                )
            direct = problem is None
        self.direct = direct
        if direct:
            self._release_polls_on_close()

    def queued(self, sid: str, namespace: str) -> int:
        """Packets waiting in the client's Engine.IO queue (0 when it is gone,
        or unknown). The queue is unbounded; the hub must not fill it faster
        than it drains."""
        if not self.direct:
            return 0
        sio = self.sio
        eio_sid = sio.manager.eio_sid_from_sid(sid, namespace)
        session = sio.eio.sockets.get(eio_sid) if eio_sid else None
        return int(session.queue.qsize()) if session is not None else 0

    def release_all(self) -> None:
        """End every client's connection the way a crash would look to it: the
        websocket just closes, a pending long-poll returns empty and the next
        one finds no session. Both JavaScript and Python clients then
        reconnect on their own, which is what a hub restart needs. (A graceful
        Engine.IO CLOSE would stop python-socketio's client from ever
        reconnecting.) On the public path the server's shutdown ends them."""
        if not self.direct:
            return
        for session in list(self.sio.eio.sockets.values()):
            # python-engineio's close is a coroutine only for the disconnect
            # handlers it runs; marking the session closed here is enough, the
            # namespaces learn of it when the transports end.
            session.closed = True
            session.queue.put_nowait(None)

    def _release_polls_on_close(self) -> None:
        eio = self.sio.eio
        handle_disconnect = eio.handlers["disconnect"]

        async def on_disconnect(eio_sid: str, reason: Any) -> None:
            await handle_disconnect(eio_sid, reason)
            if reason == eio.reason.CLIENT_DISCONNECT:
                session = eio.sockets.get(eio_sid)
                if session is not None and not session.upgraded:
                    session.queue.put_nowait(packet.Packet(packet.NOOP))

        eio.on("disconnect", on_disconnect)


def engineio_version() -> str:
    return importlib.metadata.version("python-engineio")


class LongPolls:
    """The ASGI app in front of python-socketio's: answers the long-poll GETs
    of connected polling sessions itself, paced, and hands everything else on.

    A polling dashboard sends a GET for every answer it gets, so with data
    flowing it polls as fast as the hub answers: with a 20 ms tick, 100 polling
    dashboards made 3,960-4,560 requests a second. Two things make that cheap:

    - **A direct answer.** For each GET python-engineio builds a WSGI-style
      environ (every header copied, the query run through `parse_qs`), then a
      response dict, then the ASGI messages. This answers the same request
      with python-engineio's own parts (the session and its
      `handle_get_request`, the payload encoding, the error handling, the
      compression, and the CORS check and headers for a request with an
      Origin header) and skips the rest. Whatever it does not expect goes on
      to python-engineio untouched: handshakes, POSTs, upgrades, JSONP,
      unknown or closed sessions, and origins it does not accept (python-
      engineio refuses those, and logs them).
    - **Pacing.** The hub aims to answer at most `rate` long-polls a second
      in all: with N sessions polling, each is answered at most once per
      N / `rate` seconds (never less often than once a second), at its next
      slot, at a phase of its own, so that the answers (and the clients' next
      requests) are spread over the interval instead of all leaving at each
      tick. Each answer carries every frame queued since the last. A few
      polling dashboards get an interval of a few milliseconds, a hundred at
      the default 2,000 a second get 50 ms. A session that waited longer than
      its interval for data (a quiet stream) is answered as soon as data
      comes: pacing adds latency only where frames come faster than that.
    """

    def __init__(
        self,
        sio: socketio.AsyncServer,
        app: ASGIHandler,
        metrics: Metrics,
        *,
        rate: float = 0.0,
        path: str = "/socket.io/",
        engine: Engine | None = None,
    ):
        self.engine = engine or Engine(sio)
        self.eio = sio.eio
        self.app = app
        self.metrics = metrics
        self.rate = rate
        self.path = path
        # When each session was last answered; an entry goes with its session.
        self._answered: weakref.WeakKeyDictionary[AsyncSocket, float] = weakref.WeakKeyDictionary()
        self._interval = 0.0
        self._counted = -math.inf
        # What python-engineio adds to every response to a request without an
        # Origin header: nothing, or Access-Control-Allow-Credentials.
        self.cors_headers: list[tuple[bytes, bytes]] = []
        if self.engine.direct:
            self.cors_headers = _encoded(self.eio._cors_headers({"REQUEST_METHOD": "GET"}))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and scope["path"] == self.path
            and self.engine.direct
        ):
            sid = _polling_sid(scope["query_string"])
            session = self.eio.sockets.get(sid) if sid is not None else None
            headers = _poll_headers(scope["headers"])
            if sid is not None and session is not None and headers is not None and _ready(session):
                encodings, origin = headers
                cors = self._cors(scope) if origin else self.cors_headers
                if cors is not None:
                    await self._answer(sid, session, encodings, cors, send)
                    return
        await self.app(scope, receive, send)

    def _cors(self, scope: dict[str, Any]) -> list[tuple[bytes, bytes]] | None:
        """The CORS headers python-engineio adds for a request with an Origin
        header, or None for an origin it refuses."""
        eio = self.eio
        environ = _cors_environ(scope["headers"])
        if eio.cors_allowed_origins != []:
            allowed = eio._cors_allowed_origins(environ)
            if allowed is not None and environ["HTTP_ORIGIN"] not in allowed:
                return None
        return _encoded(eio._cors_headers(environ))

    async def _answer(
        self,
        sid: str,
        session: AsyncSocket,
        encodings: bytes,
        cors: list[tuple[bytes, bytes]],
        send: Any,
    ) -> None:
        """What python-engineio's `handle_request` does for such a GET."""
        eio = self.eio
        await self._pace(sid, session)
        try:
            packets = await session.handle_get_request({})
            response = eio._ok(packets)
        except EngineIOError:
            if sid in eio.sockets:
                await eio.disconnect(sid)
            response = eio._bad_request()
        self._answered[session] = asyncio.get_running_loop().time()
        self.metrics.inc("hub_long_polls_total")
        if sid in eio.sockets and eio.sockets[sid].closed:
            del eio.sockets[sid]
        body: bytes = response["response"]
        headers = _encoded(response["headers"])
        if eio.http_compression and len(body) >= eio.compression_threshold:
            for encoding in encodings.decode("latin-1").split(","):
                encoding = encoding.split(";")[0].strip()
                if encoding in eio.compression_methods:
                    body = getattr(eio, "_" + encoding)(body)
                    headers.append((b"content-encoding", encoding.encode()))
                    break
        # With a length, uvicorn sends the body as it is instead of chunked.
        headers.append((b"content-length", str(len(body)).encode()))
        status = int(response["status"].split(" ")[0])
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": headers + cors,
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _pace(self, sid: str, session: AsyncSocket) -> None:
        """Wait for the session's next slot if it was answered less than an
        interval ago."""
        now = asyncio.get_running_loop().time()
        interval = self.interval(now)
        answered = self._answered.get(session)
        if not interval or answered is None or now - answered >= interval:
            return
        phase = hash(sid) % 1024 / 1024 * interval
        slot = phase + math.ceil((now - phase) / interval) * interval
        await asyncio.sleep(slot - now)

    @property
    def current_interval(self) -> float:
        """The interval as last counted (for the metrics gauge)."""
        return self._interval

    def interval(self, now: float) -> float:
        """Seconds between two answers to one session: the sessions that
        polled lately (counted again every RECOUNT s) divided by `rate`."""
        if not self.rate:
            return 0.0
        if now - self._counted >= RECOUNT:
            self._counted = now
            polling = sum(1 for t in self._answered.values() if now - t < ACTIVE)
            self._interval = min(MAX_INTERVAL, polling / self.rate)
        return self._interval


def _encoded(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """python-engineio's (name, value) headers, as ASGI sends them."""
    return [(name.encode(), value.encode()) for name, value in headers]


def _polling_sid(query: bytes) -> str | None:
    """The sid of a plain long-poll GET (`transport=polling`, no JSONP index)."""
    sid = None
    polling = False
    for part in query.split(b"&"):
        name, _, value = part.partition(b"=")
        if name == b"sid":
            sid = value
        elif name == b"transport":
            polling = value == b"polling"
        elif name == b"j":
            return None
    if not polling or sid is None or b"%" in sid:
        return None
    return sid.decode("latin-1")


def _poll_headers(headers: list[tuple[bytes, bytes]]) -> tuple[bytes, bool] | None:
    """The request's Accept-Encoding (empty without one) and whether it has an
    Origin header; None when it has an Upgrade header: python-engineio must
    see those."""
    encodings = b""
    origin = False
    for name, value in headers:
        if name == b"accept-encoding":
            encodings = value
        elif name == b"origin":
            origin = True
        elif name == b"upgrade":
            return None
    return encodings, origin


def _cors_environ(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """What python-engineio's CORS check reads of a GET's environ, built from
    the headers as its ASGI driver builds it."""
    environ = {"REQUEST_METHOD": "GET"}
    for name, value in headers:
        try:
            key = "HTTP_" + name.upper().decode("utf-8").replace("-", "_")
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            continue
        environ[key] = f"{environ[key]},{text}" if key in environ else text
    environ["wsgi.url_scheme"] = environ.get("HTTP_X_FORWARDED_PROTO", "http")
    return environ


def _ready(session: AsyncSocket) -> bool:
    return bool(
        session.connected and not session.closed and not session.upgrading and not session.upgraded
    )
