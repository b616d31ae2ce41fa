"""SQLite schema, as numbered migrations. `PRAGMA user_version` records how
many have run; a new schema change is a new entry at the end, never an edit."""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

    CREATE TABLE readings (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        device_id TEXT NOT NULL,
        metric TEXT NOT NULL,
        ts INTEGER NOT NULL,
        value REAL NOT NULL,
        unit TEXT,
        device_seq INTEGER
    );
    -- history of one metric of one device over time
    CREATE INDEX readings_by_device_metric_ts ON readings(device_id, metric, ts);
    -- replay of some devices after a cursor
    CREATE INDEX readings_by_device_seq ON readings(device_id, seq);
    -- a device message repeated with the same device seq is stored once
    CREATE UNIQUE INDEX readings_dedup ON readings(device_id, device_seq, metric)
        WHERE device_seq IS NOT NULL;

    CREATE TABLE devices (
        device_id TEXT PRIMARY KEY,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        online INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;

    -- the latest reading of each metric of each device
    CREATE TABLE metrics (
        device_id TEXT NOT NULL,
        metric TEXT NOT NULL,
        unit TEXT,
        ts INTEGER NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (device_id, metric)
    ) WITHOUT ROWID;

    CREATE TABLE attributes (
        device_id TEXT NOT NULL,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        ts INTEGER NOT NULL,
        PRIMARY KEY (device_id, name)
    ) WITHOUT ROWID;

    -- dead letters: what could not be accepted, and why
    CREATE TABLE rejections (
        id INTEGER PRIMARY KEY,
        received_ms INTEGER NOT NULL,
        source TEXT NOT NULL,
        device_id TEXT NOT NULL,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        excerpt TEXT NOT NULL
    );
    """,
    # 2: admin commands to devices and how each ended
    """
    CREATE TABLE commands (
        id TEXT PRIMARY KEY,
        device_id TEXT NOT NULL,
        name TEXT NOT NULL,
        args TEXT NOT NULL,
        link TEXT,
        sent_ms INTEGER NOT NULL,
        done_ms INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        reply TEXT
    );
    CREATE INDEX commands_by_device ON commands(device_id, sent_ms);
    """,
)
