"""A PostgreSQL database of a test's own, created on the server that
`HUB_TEST_POSTGRES` names (by default the one on loopback, user postgres)
and dropped after, so that tests never see or disturb anything else."""

from __future__ import annotations

import os
import secrets
from urllib.parse import urlsplit, urlunsplit

import asyncpg

SERVER = os.environ.get("HUB_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def database_url(name: str) -> str:
    return urlunsplit(urlsplit(SERVER)._replace(path=f"/{name}"))


def new_name() -> str:
    return f"hub_test_{secrets.token_hex(6)}"


async def drop(name: str) -> None:
    server = await asyncpg.connect(SERVER)
    try:
        await server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await server.close()
