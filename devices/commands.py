"""Commands from the hub: a registry of named handlers, and their replies.

The hub sends `{"id": "...", "name": "...", "args": {...}}`; the device
answers `{"id": "...", "ok": true, "result": ...}` or `{"id": "...", "ok":
false, "error": "..."}`. Links only carry these (MQTT topics, a Socket.IO
event and its acknowledgement); parsing, dispatch and every way a command can
go wrong live here, so a device answers alike over every transport.

Nothing a command does can take the device down: an unknown name, a handler
that raises, hangs or returns something that is not JSON all become an
`ok: false` reply, and a message too broken to carry an `id` is counted and
dropped, because a reply without the command's id could not be matched.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from devices.errors import SetupError
from devices.link import describe

Handler = Callable[[dict[str, Any]], Awaitable[object]]
"""A command's code: gets the command's `args`, returns its JSON-able result."""

H = TypeVar("H", bound=Handler)

CommandId = str | int
Reply = dict[str, Any]
"""`{"id", "ok": True, "result"}` or `{"id", "ok": False, "error"}`."""

# The hub reads replies up to 64 KiB; a bigger one would be dropped unmatched
# there, so the device says so in a small reply instead.
MAX_REPLY_BYTES = 65_536


@dataclass(frozen=True, slots=True)
class Command:
    """A well-formed command; `args` is `{}` when the hub sent none."""

    id: CommandId
    name: str
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Malformed:
    """A message that is not a command; `id` is None when it carries none."""

    id: CommandId | None
    problem: str


@dataclass(frozen=True, slots=True)
class CommandStats:
    """`answered`: replies made (ok or not); `failed`: those with `ok: false`;
    `ignored`: messages dropped unanswered because they carried no id."""

    answered: int = 0
    failed: int = 0
    ignored: int = 0


def parse_command(message: object) -> Command | Malformed:
    """A command from a message as a link received it: JSON text or bytes
    (MQTT), or an already decoded object (Socket.IO)."""
    if isinstance(message, bytes | bytearray | memoryview | str):
        try:
            message = orjson.loads(message)
        except orjson.JSONDecodeError:
            return Malformed(None, "not JSON")
    if not isinstance(message, dict):
        return Malformed(None, "not a JSON object")
    command_id = message.get("id")
    # JSON-RPC's choice: a string or an integer identifies a request. The
    # contract's hub sends strings; echoing an integer costs nothing.
    if not isinstance(command_id, str | int) or isinstance(command_id, bool):
        return Malformed(None, "no id" if command_id is None else "id is not a string")
    name = message.get("name")
    if not isinstance(name, str) or not name:
        return Malformed(command_id, "name must be a non-empty string")
    # A command without arguments (`ping`) may leave them out or send null.
    args = message.get("args")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return Malformed(command_id, "args must be a JSON object")
    return Command(command_id, name, args)


class Commands:
    """The commands a device answers: a name -> async handler registry.

    Every registry answers `ping` with `{"pong": true, "ts": <epoch ms>}`.

    - `timeout`: seconds a handler may run before the reply says it timed
      out (None: no limit). The default is the longest the hub waits for a
      reply (`commands.max_timeout`); past it nobody would read the answer.
    - `max_running`: handlers that may run at once; a command beyond that is
      answered `busy` at once rather than queued, so a flood of commands
      cannot pile up work (or memory) on the device.

    The same command id sent twice is run twice: ids are only promised to be
    unique among the hub's pending commands, so remembering old ones could
    answer a new command with a stale result. Make handlers idempotent where
    a repeat would hurt (MQTT delivers at least once).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        timeout: float | None = 300.0,
        max_running: int = 16,
    ) -> None:
        if timeout is not None and not (timeout > 0 and math.isfinite(timeout)):
            raise SetupError("timeout", timeout, "must be a number of seconds > 0, or None")
        if max_running < 1:
            raise SetupError("max_running", max_running, "must be at least 1")
        self.timeout = timeout
        self.max_running = max_running
        self._clock = clock
        self._handlers: dict[str, Handler] = {}
        self._running = 0
        self._answered = self._failed = self._ignored = 0
        self.register("ping", self._ping)

    @property
    def names(self) -> list[str]:
        """The registered command names, sorted."""
        return sorted(self._handlers)

    def __contains__(self, name: object) -> bool:
        return name in self._handlers

    @property
    def stats(self) -> CommandStats:
        return CommandStats(self._answered, self._failed, self._ignored)

    def register(self, name: str, handler: Handler, *, replace: bool = False) -> None:
        """Answer command `name` with `handler(args)`.

        Registering a name twice is refused (SetupError) unless `replace`,
        so that two parts of a program cannot silently take over each
        other's command; `ping` may be replaced like any other.
        """
        if not isinstance(name, str) or not name:
            raise SetupError("name", name, "must be a non-empty string")
        if name in self._handlers and not replace:
            raise SetupError("name", name, "is registered already; pass replace=True")
        self._handlers[name] = handler

    def handler(self, name: str) -> Callable[[H], H]:
        """`register` as a decorator: `@device.commands.handler("reboot")`."""

        def decorate(function: H) -> H:
            self.register(name, function)
            return function

        return decorate

    async def answer(self, message: object) -> Reply | None:
        """The reply to one received message, or None for one without an id.

        Links call this with what they received; it never raises (except
        `CancelledError`, when the link is closing).
        """
        parsed = parse_command(message)
        if isinstance(parsed, Malformed):
            if parsed.id is None:
                self._ignored += 1
                return None
            return self._failure(parsed.id, f"malformed command: {parsed.problem}")
        return await self.run(parsed)

    async def run(self, command: Command) -> Reply:
        """Run a parsed command and make its reply."""
        handler = self._handlers.get(command.name)
        if handler is None:
            return self._failure(command.id, f"unknown command: {command.name}")
        if self._running >= self.max_running:
            return self._failure(command.id, f"busy: {self._running} commands running")
        self._running += 1
        deadline = asyncio.timeout(self.timeout)
        try:
            async with deadline:
                result = await handler(command.args)
        except Exception as exc:
            # Whatever a handler does wrong is the reply, never the device's end.
            expired = isinstance(exc, TimeoutError) and deadline.expired()
            error = f"timed out after {self.timeout:g} s" if expired else describe(exc)
            return self._failure(command.id, error)
        finally:
            self._running -= 1
        try:
            body = orjson.dumps(result)
        except orjson.JSONEncodeError as exc:
            return self._failure(command.id, f"result is not JSON: {exc}")
        if len(body) > MAX_REPLY_BYTES:
            return self._failure(command.id, f"result too large: {len(body)} bytes")
        self._answered += 1
        # Decoded again so that every link sends plain JSON values: orjson
        # encodes dataclasses and datetimes, python-socketio's json does not.
        return {"id": command.id, "ok": True, "result": orjson.loads(body)}

    def _failure(self, command_id: CommandId, error: str) -> Reply:
        self._answered += 1
        self._failed += 1
        return {"id": command_id, "ok": False, "error": error}

    async def _ping(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"pong": True, "ts": int(self._clock() * 1000)}
