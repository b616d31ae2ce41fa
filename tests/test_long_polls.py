"""The hub's own answer to long-poll GETs (`hub.polling.LongPolls`): the same
response python-engineio gives, everything it does not expect handed on, and
paced answers. Mostly driven through ASGI in this process against a real
python-socketio server; the last test, and the end-to-end polling tests
(test_e2e, test_js_client, test_browser), run it behind uvicorn with real
clients."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import statistics
from dataclasses import dataclass, replace

import aiohttp
import engineio
import pytest
import socketio

from hub.config import Settings
from hub.metrics import Metrics
from hub.polling import RECOUNT, Engine, LongPolls, engineio_problem
from tests.hubs import dashboard, serve_hub

pytestmark = pytest.mark.asyncio


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


async def request(
    app: object, method: str, query: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> Answer:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": "/socket.io/",
        "raw_path": b"/socket.io/",
        "root_path": "",
        "query_string": query.encode(),
        "headers": [
            (k.lower().encode(), v.encode())
            for k, v in {"Host": "127.0.0.1:8080", **(headers or {})}.items()
        ],
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 50000),
    }
    received = False
    messages: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never hangs up
        raise AssertionError

    async def send(message: dict[str, object]) -> None:
        messages.append(message)

    assert callable(app)
    await app(scope, receive, send)
    start, *rest = messages
    names = {}
    for name, value in start["headers"]:  # type: ignore[attr-defined]
        names[name.decode().lower()] = value.decode()
    content = b"".join(m.get("body", b"") for m in rest)  # type: ignore[misc]
    return Answer(int(start["status"]), names, content)  # type: ignore[call-overload]


def servers(rate: float = 0.0, **options: object) -> tuple[socketio.AsyncServer, LongPolls]:
    sio = socketio.AsyncServer(async_mode="asgi", ping_interval=60, **options)
    return sio, LongPolls(sio, socketio.ASGIApp(sio), Metrics(), rate=rate)


async def session(app: LongPolls) -> str:
    answer = await request(app, "GET", "EIO=4&transport=polling")
    assert answer.status == 200, answer.body
    sid: str = json.loads(answer.body[1:])["sid"]
    return sid


def poll(sid: str) -> str:
    return f"EIO=4&transport=polling&t=x&sid={sid}"


async def pending_poll(app: LongPolls, sid: str) -> asyncio.Task[Answer]:
    """A GET of the session, once it waits on the session's queue for packets
    (python-engineio's poll awaits `queue.get()`; this test's own wrapper of
    that call says when it has begun)."""
    queue = app.eio.sockets[sid].queue
    get = queue.get
    waiting = asyncio.Event()

    async def get_and_tell() -> object:
        waiting.set()
        return await get()

    queue.get = get_and_tell
    try:
        task = asyncio.create_task(request(app, "GET", poll(sid)))
        await asyncio.wait_for(waiting.wait(), 5)
    finally:
        queue.get = get
    return task


COMPARED = ("content-type", "content-encoding", "access-control-allow-credentials")


@pytest.mark.parametrize("size", [10, 5000], ids=["small", "compressed"])
async def test_a_poll_gets_what_python_engineio_would_answer(size: int) -> None:
    sio, app = servers()
    sid = await session(app)
    headers = {"Accept-Encoding": "gzip, deflate"}
    answers = []
    for handler in (app, app.app):  # the hub's answer, then python-engineio's
        await sio.eio.send(sid, "x" * size)
        await sio.eio.send(sid, "second")
        answers.append(await request(handler, "GET", poll(sid), headers))
    ours, theirs = answers
    assert app.metrics.counters[("hub_long_polls_total", ())] == 1  # ours only
    assert ours.status == theirs.status == 200
    assert ours.body == theirs.body
    for name in COMPARED:
        assert ours.headers.get(name) == theirs.headers.get(name), name
    assert int(ours.headers["content-length"]) == len(ours.body)
    text = gzip.decompress(ours.body) if size > 1024 else ours.body
    assert text == f"4{'x' * size}\x1e4second".encode()
    assert ("content-encoding" in ours.headers) == (size > 1024)


async def test_what_it_does_not_expect_goes_to_python_engineio() -> None:
    sio, app = servers()
    sid = await session(app)
    await sio.eio.send(sid, "hello")
    # An unknown session: python-engineio's own error.
    unknown = await request(app, "GET", poll("nobody"))
    assert unknown.status == 400
    assert b"Invalid session" in unknown.body
    # JSONP: python-engineio wraps the payload in a script.
    jsonp = await request(app, "GET", poll(sid) + "&j=3")
    assert jsonp.status == 200
    assert jsonp.body.startswith(b"___eio[3]")
    # An origin python-engineio does not accept: it refuses it itself.
    foreign = await request(app, "GET", poll(sid), {"Origin": "http://evil.example"})
    assert foreign.status == 400
    assert b"not an accepted origin" in foreign.body
    assert ("hub_long_polls_total", ()) not in app.metrics.counters


@pytest.mark.parametrize(
    ("options", "headers"),
    [
        ({}, {"Origin": "http://127.0.0.1:8080"}),  # the same origin, said
        (  # behind a proxy: the origin the client saw
            {},
            {
                "Origin": "https://hub.example",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "hub.example",
            },
        ),
        (
            {"cors_allowed_origins": ["http://dash.example"], "cors_credentials": False},
            {"Origin": "http://dash.example"},
        ),
        ({"cors_allowed_origins": "*"}, {"Origin": "http://anyone.example"}),
    ],
    ids=["same-origin", "proxied", "listed", "any"],
)
async def test_a_poll_with_an_origin_gets_python_engineios_cors_headers(
    options: dict[str, object], headers: dict[str, str]
) -> None:
    """Cross-origin dashboards send an Origin header with every poll: they
    are answered (and paced) here too, with the same CORS headers."""
    sio, app = servers(**options)
    sid = await session(app)
    answers = []
    for handler in (app, app.app):
        await sio.eio.send(sid, "hello")
        answers.append(await request(handler, "GET", poll(sid), headers))
    ours, theirs = answers
    assert app.metrics.counters[("hub_long_polls_total", ())] == 1  # ours only
    assert ours.status == theirs.status == 200
    assert ours.body == theirs.body == b"4hello"
    cors = {k: v for k, v in theirs.headers.items() if k.startswith("access-control-")}
    assert cors["access-control-allow-origin"] == headers["Origin"]
    assert {k: v for k, v in ours.headers.items() if k.startswith("access-control-")} == cors


@pytest.mark.unit
@pytest.mark.parametrize("origins", [None, "*", ["https://ops.example"]])
async def test_the_internals_check_passes_on_the_installed_python_engineio(
    origins: str | list[str] | None,
) -> None:
    sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins=origins)
    assert engineio_problem(sio) is None
    assert Engine(sio).direct


def _not_a_response(self: object, message: object = None) -> dict[str, str]:
    return {"status": "200 OK"}


def _a_dict(self: object, environ: object) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": "*"}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("internal", "replacement", "named"),
    [
        ("_ok", None, "_ok"),  # renamed
        ("_bad_request", _not_a_response, "_bad_request"),  # answers otherwise
        ("_cors_headers", _a_dict, "_cors_headers"),  # another shape
    ],
)
async def test_a_changed_internal_turns_the_direct_path_off(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    internal: str,
    replacement: object,
    named: str,
) -> None:
    sio, _ = servers()
    if replacement is None:
        monkeypatch.delattr(engineio.base_server.BaseServer, internal)
    else:
        monkeypatch.setattr(engineio.base_server.BaseServer, internal, replacement)
    problem = engineio_problem(sio)
    assert problem is not None
    assert named in problem
    engine = Engine(sio)
    assert not engine.direct
    assert "using its public path" in caplog.text
    assert named in caplog.text
    assert engine.queued("any", "/dashboard") == 0


async def test_on_the_public_path_python_engineio_answers_every_poll() -> None:
    sio = socketio.AsyncServer(async_mode="asgi", ping_interval=60)
    app = LongPolls(sio, socketio.ASGIApp(sio), Metrics(), engine=Engine(sio, direct=False))
    sid = await session(app)
    await sio.eio.send(sid, "hello")
    answer = await request(app, "GET", poll(sid))
    assert answer.status == 200
    assert answer.body == b"4hello"
    assert ("hub_long_polls_total", ()) not in app.metrics.counters  # not answered by the hub


async def test_a_closed_session_ends_its_pending_poll_and_refuses_the_next() -> None:
    sio, app = servers()
    sid = await session(app)
    pending = await pending_poll(app, sid)
    await sio.eio.disconnect(sid)
    answer = await asyncio.wait_for(pending, 5)
    # python-engineio ends a pending poll of a session it closes with a CLOSE packet
    assert answer.status == 200
    assert answer.body == b"1"
    assert (await request(app, "GET", poll(sid))).status == 400


async def busy_gaps(sio: socketio.AsyncServer, app: LongPolls, sid: str, n: int) -> list[float]:
    """Seconds between answers to a session that always has something queued,
    once the hub has counted it as polling."""
    loop = asyncio.get_running_loop()
    warm = loop.time() + RECOUNT * 1.5
    times: list[float] = []
    while len(times) < n:
        await sio.eio.send(sid, "frame")
        await request(app, "GET", poll(sid))
        if loop.time() > warm:
            times.append(loop.time())
    # The first paced answer waits for the session's slot; from then on one
    # answer per slot.
    return [b - a for a, b in itertools.pairwise(times[1:])]


async def test_a_busy_session_is_answered_once_per_interval() -> None:
    sio, app = servers(rate=10)  # one session: one answer per 0.1 s
    sid = await session(app)
    gaps = await busy_gaps(sio, app, sid, 6)
    assert all(gap >= 0.09 for gap in gaps), gaps
    unpaced_sio, unpaced = servers(rate=0)
    sid = await session(unpaced)
    gaps = await busy_gaps(unpaced_sio, unpaced, sid, 6)
    assert statistics.median(gaps) < 0.01, gaps


async def test_the_interval_grows_with_the_polling_sessions() -> None:
    sio, app = servers(rate=40)
    sids = [await session(app) for _ in range(8)]
    done = asyncio.Event()

    async def keep_polling(sid: str) -> None:
        # Told to stop, not cancelled: python-engineio's poll turns a
        # cancellation into an empty queue (it closes the session, and the GET
        # returns a 400 instead of raising), so a task cancelled in a GET
        # would loop on against a closed session and never end.
        while not done.is_set():
            await sio.eio.send(sid, "frame")
            await request(app, "GET", poll(sid))
            await asyncio.sleep(0)  # unpaced, nothing here would wait

    alone = await busy_gaps(sio, app, sids[0], 6)
    assert statistics.median(alone) < 0.1, alone  # 1 / 40 s
    others = [asyncio.create_task(keep_polling(s)) for s in sids[1:]]
    try:
        crowded = await busy_gaps(sio, app, sids[0], 4)
    finally:
        done.set()
        await asyncio.gather(*others)
    assert min(crowded) >= 0.18, crowded  # 8 / 40 s


async def test_a_quiet_session_is_answered_as_soon_as_data_comes() -> None:
    sio, app = servers(rate=1)  # one session: one answer per second
    sid = await session(app)
    await busy_gaps(sio, app, sid, 2)
    await asyncio.sleep(1.1)  # nothing for longer than the interval
    pending = await pending_poll(app, sid)
    sent = asyncio.get_running_loop().time()
    await sio.eio.send(sid, "news")
    answer = await asyncio.wait_for(pending, 5)
    assert answer.body == b"4news"
    assert asyncio.get_running_loop().time() - sent < 0.25


async def test_sessions_are_answered_at_phases_spread_over_the_interval() -> None:
    sio, app = servers(rate=120)  # 24 sessions: one answer each per 0.2 s
    sids = [await session(app) for _ in range(24)]
    loop = asyncio.get_running_loop()

    async def answer(sid: str) -> float:
        await sio.eio.send(sid, "frame")
        await request(app, "GET", poll(sid))
        return loop.time()

    for _ in range(2):  # answered at once: not yet counted as polling
        await asyncio.gather(*(answer(s) for s in sids))
        await asyncio.sleep(RECOUNT * 1.2)
    await asyncio.gather(*(answer(s) for s in sids))
    phases = await asyncio.gather(*(answer(s) for s in sids))  # paced: at each one's slot
    # Each of 24 sessions lands at its own phase: they fill most of ten bins
    # of the interval instead of leaving together.
    bins = {int(p % 0.2 / 0.2 * 10) % 10 for p in phases}
    assert len(bins) >= 5, sorted(p % 0.2 for p in phases)


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "public"])
@pytest.mark.parametrize("origin", [None, "https://ops.example"], ids=["same", "cross-origin"])
async def test_a_polling_dashboard_is_answered_by_the_hub_behind_uvicorn(
    settings: Settings, origin: str | None, direct: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With python-socketio's client; the cross-origin one sends an Origin
    header with every request, to a hub that lists its origin. On the public
    path (python-engineio's internals not as expected), python-engineio
    answers the polls itself."""
    if not direct:
        monkeypatch.setattr("hub.polling.engineio_problem", lambda sio: "a changed internal")
    server = replace(settings.server, cors_allowed_origins=(origin,) if origin else ())
    headers = {"Origin": origin} if origin else None
    async with (
        serve_hub(replace(settings, server=server)) as running,
        dashboard(running.url, ["polling"], headers=headers) as board,
    ):
        await board.subscribe(["*"])
        async with aiohttp.ClientSession() as http:
            for n in range(3):
                url = f"{running.url}/api/devices/poller/telemetry"
                async with http.post(url, json={"temperature": 20 + n}) as response:
                    assert response.status == 202
            readings = await board.wait_readings(3)
            assert [r["value"] for r in readings] == [20.0, 21.0, 22.0]
            async with http.get(f"{running.url}/metrics") as response:
                metrics = await response.text()
    answered = [line for line in metrics.splitlines() if line.startswith("hub_long_polls_total")]
    assert "hub_long_poll_interval_seconds" in metrics
    if direct:
        assert answered, metrics
        assert float(answered[0].split()[-1]) >= 3
    else:
        assert not answered or float(answered[0].split()[-1]) == 0
