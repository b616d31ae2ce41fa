"""asyncpg against psycopg 3 on the PostgreSQL store's write path: batches of
readings inserted with `unnest` and `ON CONFLICT DO NOTHING RETURNING seq`,
after taking their seqs from the one-row allocator and before a NOTIFY, one
transaction per batch (`hub/store/postgres.py`). Rows per second, best of 3,
each driver on a database of its own on the server `HUB_BENCH_POSTGRES` names.
psycopg 3 is not a dependency of the hub: `pip install "psycopg[binary]"`.

    python -m bench.pg_drivers [--rows 100000] [--batch 500]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from bench.cluster import database

SCHEMA = """
    CREATE TABLE log_head (id BOOLEAN PRIMARY KEY DEFAULT true, head BIGINT NOT NULL);
    INSERT INTO log_head(head) VALUES (0);
    CREATE TABLE samples (
        seq BIGINT PRIMARY KEY, device INTEGER NOT NULL, series INTEGER NOT NULL,
        ts BIGINT NOT NULL, value DOUBLE PRECISION NOT NULL, device_seq BIGINT
    );
    CREATE INDEX samples_by_series_ts ON samples(series, ts);
    CREATE INDEX samples_by_device_seq ON samples(device, seq);
    CREATE UNIQUE INDEX samples_dedup ON samples(device, device_seq, series)
        WHERE device_seq IS NOT NULL;
"""
TAKE = "UPDATE log_head SET head = head + {n} RETURNING head"
INSERT = (
    "INSERT INTO samples(seq, device, series, ts, value, device_seq) "
    "SELECT * FROM unnest({}::bigint[], {}::int[], {}::int[], {}::bigint[], "
    "{}::float8[], {}::bigint[]) ON CONFLICT DO NOTHING RETURNING seq"
)
ASYNCPG_INSERT = INSERT.format(*(f"${n}" for n in range(1, 7)))
PSYCOPG_INSERT = INSERT.format(*["%s"] * 6)


def columns(first: int, count: int, start: int) -> list[list[Any]]:
    seqs = list(range(first, first + count))
    return [
        seqs,
        [n % 100 for n in range(start, start + count)],
        [n % 300 for n in range(start, start + count)],
        [1_700_000_000_000 + n for n in range(start, start + count)],
        [20.0 + n % 10 for n in range(start, start + count)],
        list(range(start, start + count)),
    ]


async def with_asyncpg(url: str, rows: int, batch: int) -> float:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(SCHEMA)
        started = time.perf_counter()
        for start in range(0, rows, batch):
            async with connection.transaction():
                head = await connection.fetchval(TAKE.format(n=batch))
                rows_of = columns(head - batch + 1, batch, start)
                await connection.fetch(ASYNCPG_INSERT, *rows_of)
                await connection.execute("SELECT pg_notify('hub_log', $1)", str(head))
        return rows / (time.perf_counter() - started)
    finally:
        await connection.close()


async def with_psycopg(url: str, rows: int, batch: int) -> float:
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
        await connection.execute(SCHEMA)  # type: ignore[arg-type]
        started = time.perf_counter()
        for start in range(0, rows, batch):
            async with connection.transaction():
                cursor = await connection.execute(TAKE.format(n=batch))  # type: ignore[arg-type]
                row = await cursor.fetchone()
                assert row is not None
                head = int(row[0])
                cursor = await connection.execute(
                    PSYCOPG_INSERT,  # type: ignore[arg-type]
                    columns(head - batch + 1, batch, start),
                )
                await cursor.fetchall()
                await connection.execute("SELECT pg_notify('hub_log', %s)", (str(head),))
        return rows / (time.perf_counter() - started)


def best_of(
    runs: int, measure: Callable[[str, int, int], Awaitable[float]], rows: int, batch: int
) -> float:
    best = 0.0
    for _ in range(runs):
        with database() as url:
            asyncio.run(_create(url))
            best = max(best, asyncio.run(measure(url, rows, batch)))
    return best


async def _create(url: str) -> None:
    from hub.store.postgres import create_database

    await create_database(url)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    a = best_of(3, with_asyncpg, args.rows, args.batch)
    p = best_of(3, with_psycopg, args.rows, args.batch)
    print(
        f"{args.rows:,} rows in batches of {args.batch}: asyncpg {a:,.0f} rows/s, "
        f"psycopg 3 {p:,.0f} rows/s (asyncpg / psycopg {a / p:.2f})"
    )


if __name__ == "__main__":
    main()
