"""Durable storage behind a small interface (`Store`)."""

from __future__ import annotations

from hub.config import StorageSettings
from hub.store.base import Store
from hub.store.sqlite import SqliteStore

__all__ = ["SqliteStore", "Store", "open_store"]


def open_store(settings: StorageSettings) -> Store:
    """The configured backend, not yet opened. Only SQLite exists today."""
    return SqliteStore(
        settings.path, synchronous=settings.synchronous, wal_target=settings.wal_target
    )
