"""The device list in pages, on both stores (a real SQLite file, a real
PostgreSQL database): every device once across pages, with devices added
during the walk; each filter and their totals; devices listed in config but
never heard from."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hub.models import Attribute, PendingReading, PresenceChange, WriteBatch
from hub.store.base import Store
from hub.store.device_pages import DevicePage, DeviceQuery, Totals
from hub.store.postgres import PostgresStore
from hub.store.sqlite import SqliteStore
from tests import postgres

pytestmark = pytest.mark.timeout(120)

NOW = 1_764_138_000_000
HOUR = 3_600_000
COUNT = 240


def device(i: int) -> str:
    return f"dev-{i:03d}"


def fleet(count: int = COUNT, first: int = 0) -> WriteBatch:
    """Devices `first`..: a temperature each, co2 every 10th, a firmware
    attribute every 7th, group north (i % 3 == 0) or south (1); online when
    even, heard from now (i % 4 == 0) or an hour ago (i % 4 == 2)."""
    readings, attributes, presence = [], [], []
    seen: dict[str, int] = {}
    for i in range(first, first + count):
        d = device(i)
        last = NOW if i % 4 == 0 else NOW - HOUR
        readings.append(PendingReading(d, "temperature", last, 20.0 + i, "Cel"))
        if i % 10 == 0:
            readings.append(PendingReading(d, "co2", last, 400.0, "ppm"))
        if i % 7 == 0:
            attributes.append(Attribute(d, "fw", f"v1.{i}", last))
        if i % 3 < 2:
            attributes.append(Attribute(d, "group", "north" if i % 3 == 0 else "south", last))
        seen[d] = last
        presence.append(PresenceChange(d, i % 2 == 0, last))
    return WriteBatch(
        readings=tuple(readings), attributes=tuple(attributes), presence=tuple(presence), seen=seen
    )


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    opened: Store
    database = postgres.new_name()
    if request.param == "sqlite":
        opened = SqliteStore(str(tmp_path / "hub.db"))
    else:
        opened = PostgresStore(postgres.database_url(database))
    try:
        await opened.open()
        await opened.write(fleet())
        yield opened
    finally:
        await opened.close()
        if request.param == "postgres":
            await postgres.drop(database)


async def walk(store: Store, query: DeviceQuery, between: Any = None) -> tuple[list[str], int]:
    """Every page of `query` in turn: the ids in order, and the first total."""
    ids: list[str] = []
    after, total, pages = "", None, 0
    while True:
        page = await store.device_page(DeviceQuery(**{**_fields(query), "after": after}))
        total = page.total if total is None else total
        ids += [r.device_id for r in page.records]
        assert len(page.records) <= query.limit
        pages += 1
        if between is not None:
            await between(pages)
        if page.next is None:
            return ids, total
        assert page.next == page.records[-1].device_id
        after = page.next


def _fields(query: DeviceQuery) -> dict[str, Any]:
    return {name: getattr(query, name) for name in query.__dataclass_fields__}


def stale_before() -> int:
    return NOW - 60_000


async def test_pages_hold_every_device_once_even_when_devices_arrive(store: Store) -> None:
    added = iter(range(1000, 1050, 10))  # during the first 5 of 10 pages

    async def arrive(page: int) -> None:  # new devices on both sides of the cursor
        i = next(added, None)
        if i is not None:
            arrivals = (f"aaa-{i}", f"zzz-{i}")
            await store.write(
                WriteBatch(
                    readings=tuple(PendingReading(d, "t", NOW, 1.0, None) for d in arrivals),
                    seen=dict.fromkeys(arrivals, NOW),
                )
            )

    ids, total = await walk(store, DeviceQuery(limit=25), arrive)
    assert total == COUNT
    originals = [device(i) for i in range(COUNT)]
    assert [d for d in ids if d in originals] == originals
    assert len(ids) == len(set(ids))
    assert ids == sorted(ids)
    assert not any(d.startswith("aaa-") for d in ids)  # arrived behind the cursor
    assert [d for d in ids if d.startswith("zzz-")] == [f"zzz-{i}" for i in range(1000, 1050, 10)]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"status": "online"}, [i for i in range(COUNT) if i % 4 == 0]),
        ({"status": "stale"}, [i for i in range(COUNT) if i % 4 == 2]),
        ({"status": "offline"}, [i for i in range(COUNT) if i % 2 == 1]),
        ({"group": "north"}, [i for i in range(COUNT) if i % 3 == 0]),
        ({"group": "north", "status": "online"}, [i for i in range(COUNT) if i % 12 == 0]),
        ({"q": "dev-12"}, [i for i in range(COUNT) if f"{i:03d}".startswith("12")]),
        ({"q": "DEV-12"}, [i for i in range(COUNT) if f"{i:03d}".startswith("12")]),
        ({"q": "co2"}, [i for i in range(COUNT) if i % 10 == 0]),
        ({"q": "v1.14"}, [i for i in range(COUNT) if i % 7 == 0 and str(i).startswith("14")]),
        ({"q": "sout"}, [i for i in range(COUNT) if i % 3 == 1]),
        ({"q": "99"}, [99, 199]),  # shorter than a trigram: matched by a scan
        ({"q": "co2", "group": "south"}, [i for i in range(COUNT) if i % 10 == 0 and i % 3 == 1]),
        ({"q": "nothing-like-this"}, []),
        ({"q": "50%"}, []),
    ],
)
async def test_each_filter_pages_and_counts_its_matches(
    store: Store, filters: dict[str, Any], expected: list[int]
) -> None:
    query = DeviceQuery(limit=7, stale_before=stale_before(), **filters)
    ids, total = await walk(store, query)
    assert ids == [device(i) for i in expected]
    assert total == len(expected)


async def test_listed_devices_are_found_before_they_are_heard_from(store: Store) -> None:
    await store.enroll([("dev-001", "east"), ("listed-a", "east"), ("listed-b", ""), ("zzz-l", "")])
    ids, total = await walk(store, DeviceQuery(limit=100, group="east"))
    assert (ids, total) == (["dev-001", "listed-a"], 2)

    ids, total = await walk(store, DeviceQuery(limit=50))
    assert total == COUNT + 3
    assert ids == sorted([device(i) for i in range(COUNT)] + ["listed-a", "listed-b", "zzz-l"])

    unseen = await store.device_page(DeviceQuery(limit=10, q="listed-"))
    assert [(r.device_id, r.first_seen, r.online) for r in unseen.records] == [
        ("listed-a", 0, False),
        ("listed-b", 0, False),
    ]
    offline = await store.device_page(
        DeviceQuery(limit=500, status="offline", stale_before=stale_before())
    )
    assert offline.total == COUNT // 2 + 3

    # heard from at last: its first_seen is when
    await store.write(WriteBatch(seen={"listed-a": NOW + 9}))
    (heard,) = (await store.device_page(DeviceQuery(limit=1, after="listed-"))).records
    assert (heard.device_id, heard.first_seen, heard.last_seen) == ("listed-a", NOW + 9, NOW + 9)
    await store.enroll([("listed-a", "east")])  # again, at the next start: nothing changes
    (again,) = (await store.device_page(DeviceQuery(limit=1, after="listed-"))).records
    assert again.first_seen == NOW + 9


async def test_a_page_carries_each_device_s_latest_values_and_attributes(store: Store) -> None:
    page = await store.device_page(DeviceQuery(limit=1, after="dev-069"))
    (record,) = page.records
    assert record.device_id == "dev-070"
    assert {m.metric: m.value for m in record.metrics} == {"temperature": 90.0, "co2": 400.0}
    assert {a.name: a.value for a in record.attributes} == {"fw": "v1.70", "group": "south"}
    assert page.next == "dev-070"


async def test_search_follows_a_changed_attribute(store: Store) -> None:
    await store.write(WriteBatch(attributes=(Attribute("dev-005", "fw", "v9.99-beta", NOW + 1),)))
    found = await store.device_page(DeviceQuery(limit=10, q="9.99-b"))
    assert [r.device_id for r in found.records] == ["dev-005"]
    await store.write(WriteBatch(attributes=(Attribute("dev-005", "fw", "v10", NOW + 2),)))
    gone = await store.device_page(DeviceQuery(limit=10, q="9.99-b"))
    assert gone.records == []


async def test_counts_by_status_and_group(store: Store) -> None:
    await store.enroll([("dev-001", "north"), ("listed-a", "east"), ("dev-002", "")])
    counts = await store.device_counts(stale_before())
    assert counts.status == {"online": COUNT // 4, "stale": COUNT // 4, "offline": COUNT // 2 + 1}
    assert counts.total == COUNT + 1
    assert counts.groups == {
        "east": 1,
        "north": COUNT // 3 + 1,  # dev-001 is in north by the config, not by its attribute
        "south": COUNT // 3 - 1,  # ... and so no longer in south
    }


async def test_known_devices_give_presence_and_holders(store: Store) -> None:
    await store.write(
        WriteBatch(
            attributes=(
                Attribute("dev-003", "source", "zigbee2mqtt", NOW),
                Attribute("dev-003", "name", "kitchen/weather", NOW),
            )
        )
    )
    known = {k.device_id: k for k in await store.known_devices()}
    assert len(known) == COUNT
    assert (known["dev-000"].online, known["dev-000"].last_seen) == (True, NOW)
    assert (known["dev-001"].online, known["dev-001"].source) == (False, None)
    assert (known["dev-003"].source, known["dev-003"].name) == ("zigbee2mqtt", "kitchen/weather")


async def test_a_known_total_is_not_counted_again(store: Store) -> None:
    page = await store.device_page(DeviceQuery(limit=5, q="dev-1", total=12345))
    assert page.total == 12345
    assert [r.device_id for r in page.records] == [f"dev-{i}" for i in range(100, 105)]


@pytest.mark.unit
def test_totals_are_kept_by_filters_for_a_while() -> None:
    now = [0.0]
    totals = Totals(ttl=2.0, kept=2, clock=lambda: now[0])
    query = DeviceQuery(limit=10, q="Fleet", status="online")
    assert totals.of(query).total is None
    totals.keep(query, DevicePage([], None, 77))
    assert totals.of(DeviceQuery(limit=50, after="x", q="fleet", status="online")).total == 77
    assert totals.of(DeviceQuery(limit=10, q="fleet")).total is None  # other filters
    now[0] = 2.5
    assert totals.of(query).total is None  # too old
    for q in ("a", "b", "c"):
        totals.keep(DeviceQuery(limit=1, q=q), DevicePage([], None, 1))
    assert totals.of(DeviceQuery(limit=1, q="a")).total is None  # only the 2 newest kept
    assert totals.of(DeviceQuery(limit=1, q="c")).total == 1
