"""`telemetry-hub serve`, `telemetry-hub check-config` and `telemetry-hub mosquitto-acl`."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from hub.acl import DEFAULT_HUB_USER, write_broker_files
from hub.config import Settings, config_path, dump_toml, load_settings
from hub.errors import ConfigError, HubError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="telemetry-hub", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("serve", "run the hub in the foreground until SIGINT/SIGTERM"),
        ("check-config", "print the effective configuration, or the first error (exit 2)"),
    ):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument(
            "--config", metavar="PATH", help="config file (default: $HUB_CONFIG or ./config.toml)"
        )
    _add_mosquitto_acl(commands)
    args = parser.parse_args(argv)
    try:
        settings = _settings(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    if args.command == "mosquitto-acl":
        return _mosquitto_acl(settings, args)
    if args.command == "check-config":
        print(dump_toml(settings), end="")
        return 0
    logging.basicConfig(
        level=settings.log.level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    try:
        from hub.server import serve

        run(serve(settings))
    except HubError as exc:
        print(f"telemetry-hub: {exc}", file=sys.stderr)
        return 1
    return 0


def _add_mosquitto_acl(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "write Mosquitto's passwd, acl and mosquitto.conf for [[devices]] and the hub"
    command = commands.add_parser("mosquitto-acl", help=text, description=text)
    command.add_argument(
        "--config", metavar="PATH", help="config file (default: $HUB_CONFIG or ./config.toml)"
    )
    command.add_argument("--out", metavar="DIR", required=True, help="folder to write into")
    command.add_argument(
        "--hub-user", metavar="NAME", default=DEFAULT_HUB_USER, help="the hub's broker user"
    )
    command.add_argument(
        "--hub-password-file",
        metavar="FILE",
        help="the hub user's password (default: DIR/hub-password, generated if missing)",
    )


def _mosquitto_acl(settings: Settings, args: argparse.Namespace) -> int:
    password_file = Path(args.hub_password_file) if args.hub_password_file else None
    try:
        result = write_broker_files(
            settings, Path(args.out), hub_user=args.hub_user, hub_password_file=password_file
        )
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"telemetry-hub: cannot write {args.out}: {exc}", file=sys.stderr)
        return 1
    for skip in result.skipped:
        # The broker will refuse this device; say so where an operator looks.
        print(
            f"warning: device {skip.device_id!r} gets no broker user: {skip.reason}",
            file=sys.stderr,
        )
    for path in result.removed:
        print(f"removed {path} (stale: the hub password now comes from --hub-password-file)")
    for path in result.written:
        print(f"wrote {path}")
    print(f"broker users: {', '.join(result.users)}")
    how = "generated, in" if result.hub_password_generated else "in"
    print(f"hub user {result.hub_user!r}: password {how} {result.hub_password_file}")
    return 0


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop where it is installed (uvicorn[standard] brings it): its
    event loop is faster at the socket work the hub does most."""
    tune_garbage_collection()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def tune_garbage_collection() -> None:
    """The hub allocates tens of thousands of short-lived objects a second
    (messages, readings, frames), nearly all freed by reference counting. At
    CPython's default threshold of 700 the cycle collector still ran 2,387
    young and 19 full collections, 1.2 s in all, during a 13 s ingest run
    here; at 20,000 it ran once. What startup built (modules, settings) is
    frozen out of the full collections: it is never garbage."""
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


def _settings(explicit: str | None) -> Settings:
    path = config_path(explicit, os.environ)
    if explicit is None and "HUB_CONFIG" not in os.environ and not path.exists():
        return load_settings(None)  # no file at all: defaults and environment
    return load_settings(path)


if __name__ == "__main__":
    raise SystemExit(main())
