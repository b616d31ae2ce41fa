"""Durable storage behind a small interface (`Store`)."""

from __future__ import annotations

from hub.config import StorageSettings
from hub.store.base import Store
from hub.store.sqlite import SqliteStore

__all__ = ["SqliteStore", "Store", "open_store"]


def open_store(settings: StorageSettings) -> Store:
    """The configured backend, not yet opened: PostgreSQL when `url` names
    one, else the SQLite file at `path`."""
    if settings.url:
        from hub.store.postgres import PostgresStore  # asyncpg only where it is used

        return PostgresStore(settings.url)
    return SqliteStore(
        settings.path, synchronous=settings.synchronous, wal_target=settings.wal_target
    )
