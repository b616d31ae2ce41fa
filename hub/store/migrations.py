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
    # 3: readings keyed by small integers (issue 13). A device and a series
    # (one metric of one device in one unit) are numbered once; a row of
    # `samples` holds the numbers, so rows and index entries are about half
    # the size and a commit touches fewer pages. The view `readings` shows
    # them by name, with the columns the table had. Seqs carry over, and so
    # does the allocator's position (sqlite_sequence).
    """
    CREATE TABLE devices_numbered (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL UNIQUE,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        online INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO devices_numbered(device_id, first_seen, last_seen, online)
        SELECT device_id, first_seen, last_seen, online FROM devices ORDER BY device_id;
    INSERT OR IGNORE INTO devices_numbered(device_id, first_seen, last_seen, online)
        SELECT device_id, min(ts), max(ts), 0 FROM readings GROUP BY device_id;
    DROP TABLE devices;
    ALTER TABLE devices_numbered RENAME TO devices;

    CREATE TABLE series (
        id INTEGER PRIMARY KEY,
        device INTEGER NOT NULL,  -- devices.id
        device_id TEXT NOT NULL,  -- its name too: a row is read with one lookup
        metric TEXT NOT NULL,
        unit TEXT NOT NULL,       -- '' for none
        UNIQUE (device_id, metric, unit)
    );
    INSERT INTO series(device, device_id, metric, unit)
        SELECT d.id, r.device_id, r.metric, r.unit
        FROM (SELECT DISTINCT device_id, metric, coalesce(unit, '') AS unit FROM readings) r
        JOIN devices d USING (device_id);

    CREATE TABLE samples (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        device INTEGER NOT NULL,  -- devices.id
        series INTEGER NOT NULL,  -- series.id
        ts INTEGER NOT NULL,
        value REAL NOT NULL,
        device_seq INTEGER
    );
    INSERT INTO samples(seq, device, series, ts, value, device_seq)
        SELECT r.seq, s.device, s.id, r.ts, r.value, r.device_seq
        FROM readings r JOIN series s ON s.device_id = r.device_id AND s.metric = r.metric
            AND s.unit = coalesce(r.unit, '')
        ORDER BY r.seq;
    DELETE FROM sqlite_sequence WHERE name = 'samples';
    INSERT INTO sqlite_sequence(name, seq)
        SELECT 'samples', seq FROM sqlite_sequence WHERE name = 'readings';
    DROP TABLE readings;

    -- history of one series over time
    CREATE INDEX samples_by_series_ts ON samples(series, ts);
    -- replay of some devices after a cursor
    CREATE INDEX samples_by_device_seq ON samples(device, seq);
    -- a device message repeated with the same device seq is stored once
    CREATE UNIQUE INDEX samples_dedup ON samples(device, device_seq, series)
        WHERE device_seq IS NOT NULL;

    CREATE VIEW readings(seq, device_id, metric, ts, value, unit, device_seq) AS
        SELECT r.seq, s.device_id, s.metric, r.ts, r.value, nullif(s.unit, ''), r.device_seq
        FROM samples r JOIN series s ON s.id = r.series;
    """,
    # 4: the device list in pages, for fleets of 100,000 devices (issue 18).
    # Status and group filters are served from indexes; `q` from a trigram
    # index (FTS5) over each device's id, metric names and attribute values,
    # kept by triggers: a row when a device or a metric first appears, and
    # when an attribute's value changes. `search_rows` names each indexed
    # term (the id '', 'm:<metric>', 'a:<attribute>') and gives its rowid.
    """
    CREATE INDEX devices_by_status ON devices(online, device_id, last_seen);
    CREATE INDEX attributes_by_value ON attributes(name, value, device_id);

    CREATE TABLE search_rows (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL,
        name TEXT NOT NULL,
        UNIQUE (device_id, name)
    );
    CREATE VIRTUAL TABLE device_search USING fts5(term, content='', tokenize='trigram');

    INSERT INTO search_rows(device_id, name) SELECT device_id, '' FROM devices;
    INSERT INTO search_rows(device_id, name) SELECT device_id, 'm:' || metric FROM metrics;
    INSERT INTO search_rows(device_id, name) SELECT device_id, 'a:' || name FROM attributes;
    INSERT INTO device_search(rowid, term)
        SELECT r.id, r.device_id FROM search_rows r WHERE r.name = '';
    INSERT INTO device_search(rowid, term)
        SELECT r.id, m.metric FROM search_rows r
        JOIN metrics m ON m.device_id = r.device_id AND r.name = 'm:' || m.metric;
    INSERT INTO device_search(rowid, term)
        SELECT r.id, a.value FROM search_rows r
        JOIN attributes a ON a.device_id = r.device_id AND r.name = 'a:' || a.name;

    CREATE TRIGGER search_new_device AFTER INSERT ON devices BEGIN
        INSERT INTO search_rows(device_id, name) VALUES (new.device_id, '');
        INSERT INTO device_search(rowid, term) VALUES (last_insert_rowid(), new.device_id);
    END;
    CREATE TRIGGER search_new_metric AFTER INSERT ON metrics BEGIN
        INSERT INTO search_rows(device_id, name) VALUES (new.device_id, 'm:' || new.metric);
        INSERT INTO device_search(rowid, term) VALUES (last_insert_rowid(), new.metric);
    END;
    CREATE TRIGGER search_new_attribute AFTER INSERT ON attributes BEGIN
        INSERT INTO search_rows(device_id, name) VALUES (new.device_id, 'a:' || new.name);
        INSERT INTO device_search(rowid, term) VALUES (last_insert_rowid(), new.value);
    END;
    CREATE TRIGGER search_changed_attribute AFTER UPDATE OF value ON attributes
    WHEN old.value IS NOT new.value BEGIN
        INSERT INTO device_search(device_search, rowid, term)
            SELECT 'delete', id, old.value FROM search_rows
            WHERE device_id = new.device_id AND name = 'a:' || new.name;
        INSERT INTO device_search(rowid, term)
            SELECT id, new.value FROM search_rows
            WHERE device_id = new.device_id AND name = 'a:' || new.name;
    END;
    """,
)
