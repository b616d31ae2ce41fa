"""The command registry on its own: what a device answers to each message.

No transport here: `Commands.answer` gets a message as a link would hand it
over (JSON bytes from MQTT, a decoded object from Socket.IO) and the test
reads the reply. The links' own tests send the same over real connections.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from devices import (
    Command,
    CommandLink,
    Commands,
    CommandStats,
    Device,
    HttpLink,
    Malformed,
    MqttLink,
    SetupError,
    SocketIOLink,
    parse_command,
)
from devices.outage import Radio
from devices.timetable import Timetable

pytestmark = pytest.mark.unit


async def explode(args: dict[str, Any]) -> None:
    raise RuntimeError("sensor on fire")


async def echo(args: dict[str, Any]) -> dict[str, Any]:
    return args


@pytest.mark.parametrize(
    ("message", "parsed"),
    [
        (b'{"id": "a", "name": "ping", "args": {}}', Command("a", "ping", {})),
        ('{"id": "a", "name": "ping"}', Command("a", "ping", {})),
        ({"id": "a", "name": "ping", "args": None}, Command("a", "ping", {})),
        ({"id": 7, "name": "x", "args": {"k": 1}}, Command(7, "x", {"k": 1})),
        (b"{nope", Malformed(None, "not JSON")),
        (b"", Malformed(None, "not JSON")),
        (b"[1, 2]", Malformed(None, "not a JSON object")),
        (None, Malformed(None, "not a JSON object")),
        ({"name": "ping"}, Malformed(None, "no id")),
        ({"id": None, "name": "ping"}, Malformed(None, "no id")),
        ({"id": True, "name": "ping"}, Malformed(None, "id is not a string")),
        ({"id": ["a"], "name": "ping"}, Malformed(None, "id is not a string")),
        ({"id": "a"}, Malformed("a", "name must be a non-empty string")),
        ({"id": "a", "name": ""}, Malformed("a", "name must be a non-empty string")),
        ({"id": "a", "name": 5}, Malformed("a", "name must be a non-empty string")),
        ({"id": "a", "name": "x", "args": [1]}, Malformed("a", "args must be a JSON object")),
        ({"id": "a", "name": "x", "args": "k=1"}, Malformed("a", "args must be a JSON object")),
    ],
)
def test_parsing_command_messages(message: object, parsed: Command | Malformed) -> None:
    assert parse_command(message) == parsed


async def test_every_registry_answers_ping_with_the_time() -> None:
    commands = Commands(clock=lambda: 1764138000.1234)
    reply = await commands.answer(b'{"id": "p1", "name": "ping", "args": {}}')
    assert reply == {"id": "p1", "ok": True, "result": {"pong": True, "ts": 1764138000123}}
    assert commands.names == ["ping"]


async def test_a_handler_gets_the_args_and_its_result_is_the_reply() -> None:
    commands = Commands()
    commands.register("echo", echo)
    reply = await commands.answer({"id": "e1", "name": "echo", "args": {"x": [1, "two"]}})
    assert reply == {"id": "e1", "ok": True, "result": {"x": [1, "two"]}}


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"id": "u1", "name": "reboot", "args": {}}, "unknown command: reboot"),
        ({"id": "u2", "name": "explode", "args": {}}, "sensor on fire"),
        (
            {"id": "u3", "name": "echo", "args": [1]},
            "malformed command: args must be a JSON object",
        ),
        ({"id": "u4", "args": {}}, "malformed command: name must be a non-empty string"),
    ],
)
async def test_failures_are_replies_with_the_commands_id(
    message: dict[str, Any], error: str
) -> None:
    commands = Commands()
    commands.register("explode", explode)
    commands.register("echo", echo)
    assert await commands.answer(message) == {"id": message["id"], "ok": False, "error": error}
    # ... and the device goes on answering.
    assert (await commands.answer({"id": "next", "name": "ping"}) or {})["ok"] is True
    assert commands.stats == CommandStats(answered=2, failed=1, ignored=0)


async def test_messages_without_an_id_are_counted_and_not_answered() -> None:
    commands = Commands()
    for message in (b"{nope", b'{"name": "ping"}', b'"ping"', {"id": {}, "name": "ping"}):
        assert await commands.answer(message) is None
    assert commands.stats == CommandStats(answered=0, failed=0, ignored=4)


async def test_a_result_that_is_not_json_is_an_error_and_dataclasses_become_objects() -> None:
    @dataclasses.dataclass
    class Point:
        x: float

    async def point(args: dict[str, Any]) -> Point:
        return Point(1.5)

    async def opaque(args: dict[str, Any]) -> object:
        return object()

    async def huge(args: dict[str, Any]) -> str:
        return "x" * 70_000

    commands = Commands()
    commands.register("point", point)
    commands.register("opaque", opaque)
    commands.register("huge", huge)
    assert await commands.answer({"id": "1", "name": "point"}) == {
        "id": "1",
        "ok": True,
        "result": {"x": 1.5},
    }
    opaque_reply = await commands.answer({"id": "2", "name": "opaque"}) or {}
    assert opaque_reply["ok"] is False
    assert opaque_reply["error"].startswith("result is not JSON")
    huge_reply = await commands.answer({"id": "3", "name": "huge"}) or {}
    assert huge_reply["error"] == "result too large: 70002 bytes"


async def test_a_handler_that_hangs_times_out_and_its_own_timeout_error_is_its_message() -> None:
    async def hang(args: dict[str, Any]) -> None:
        await asyncio.Event().wait()

    async def gives_up(args: dict[str, Any]) -> None:
        raise TimeoutError("the valve did not move")

    commands = Commands(timeout=0.05)
    commands.register("hang", hang)
    commands.register("gives_up", gives_up)
    assert await commands.answer({"id": "h", "name": "hang"}) == {
        "id": "h",
        "ok": False,
        "error": "timed out after 0.05 s",
    }
    assert await commands.answer({"id": "g", "name": "gives_up"}) == {
        "id": "g",
        "ok": False,
        "error": "the valve did not move",
    }


async def test_beyond_max_running_a_command_is_answered_busy_at_once() -> None:
    release = asyncio.Event()

    async def wait(args: dict[str, Any]) -> str:
        await release.wait()
        return "done"

    commands = Commands(max_running=2)
    commands.register("wait", wait)
    running = [asyncio.create_task(commands.answer({"id": i, "name": "wait"})) for i in (1, 2)]
    await asyncio.sleep(0)
    assert await commands.answer({"id": 3, "name": "wait"}) == {
        "id": 3,
        "ok": False,
        "error": "busy: 2 commands running",
    }
    release.set()
    assert [(await task or {})["result"] for task in running] == ["done", "done"]
    assert (await commands.answer({"id": 4, "name": "wait"}) or {})["ok"] is True


def test_registering_a_name_twice_needs_replace() -> None:
    commands = Commands()

    @commands.handler("echo")
    async def first(args: dict[str, Any]) -> object:
        return 1

    with pytest.raises(SetupError, match="registered already"):
        commands.register("echo", echo)
    commands.register("echo", echo, replace=True)
    commands.register("ping", echo, replace=True)  # even the built-in one
    assert "echo" in commands
    assert commands.names == ["echo", "ping"]
    with pytest.raises(SetupError, match="name"):
        commands.register("", echo)


@pytest.mark.parametrize(
    ("options", "name"), [({"timeout": 0}, "timeout"), ({"max_running": 0}, "max_running")]
)
def test_bad_limits_are_refused(options: dict[str, Any], name: str) -> None:
    with pytest.raises(SetupError, match=name):
        Commands(**options)


def test_a_device_wires_its_registry_to_links_that_can_hear_the_hub() -> None:
    mqtt = MqttLink("wire-1", "mqtt://127.0.0.1")
    sio = SocketIOLink("wire-1", "http://127.0.0.1:1")
    http = HttpLink("wire-1", "http://127.0.0.1:1")
    assert isinstance(mqtt, CommandLink)
    assert isinstance(sio, CommandLink)
    assert isinstance(Radio(mqtt), CommandLink)
    assert not isinstance(http, CommandLink)  # HTTP cannot receive commands
    shared = Commands()
    device = Device("wire-1", Radio(mqtt), commands=shared)
    assert device.commands is shared
    assert "ping" in Device("wire-1", http).commands  # registered, if unreachable


async def test_set_rate_wakes_a_device_waiting_at_the_old_rate() -> None:
    loop = asyncio.get_running_loop()
    timetable = Timetable(0.1)  # a message every 10 s
    commands = Commands()
    timetable.register(commands)
    timetable.start(loop.time())
    timetable.advance()  # the first went out now; the next is due in 10 s
    waiting = asyncio.create_task(timetable.sleep(timetable.due - loop.time()))
    await asyncio.sleep(0)
    reply = await commands.answer({"id": "r", "name": "set_rate", "args": {"rate": 100}})
    assert reply == {"id": "r", "ok": True, "result": {"rate": 100.0}}
    async with asyncio.timeout(1):
        assert await waiting is True  # woken, not left to sleep out the 10 s
    # The next is due one new period after the last message, not 10 s after it.
    assert timetable.due - loop.time() <= 0.01
    assert (await commands.answer({"id": "g", "name": "get_rate"}) or {})["result"] == {
        "rate": 100.0
    }
