"""`telemetry-hub serve` and `telemetry-hub check-config`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

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
    args = parser.parse_args(argv)
    try:
        settings = _settings(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(dump_toml(settings), end="")
        return 0
    logging.basicConfig(
        level=settings.log.level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    try:
        from hub.server import serve

        asyncio.run(serve(settings))
    except HubError as exc:
        print(f"telemetry-hub: {exc}", file=sys.stderr)
        return 1
    return 0


def _settings(explicit: str | None) -> Settings:
    path = config_path(explicit, os.environ)
    if explicit is None and "HUB_CONFIG" not in os.environ and not path.exists():
        return load_settings(None)  # no file at all: defaults and environment
    return load_settings(path)


if __name__ == "__main__":
    raise SystemExit(main())
