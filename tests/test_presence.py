"""Presence: which devices are online, and that memory follows only those."""

from __future__ import annotations

import tracemalloc

import pytest

from hub.models import DeviceRecord, PresenceChange
from hub.presence import MQTT_LINK, Presence

T0 = 1_795_000_000_000
OFFLINE_AFTER = 120_000


def record(device_id: str, online: bool, last_seen: int = T0) -> DeviceRecord:
    return DeviceRecord(device_id, T0, last_seen, online, (), ())


@pytest.mark.unit
def test_data_makes_a_device_online_until_it_falls_silent() -> None:
    presence = Presence(OFFLINE_AFTER)
    assert presence.seen("d1", T0) == PresenceChange("d1", True, T0)
    assert presence.seen("d1", T0 + 10) is None
    assert presence.expire(T0 + OFFLINE_AFTER) == []
    assert presence.expire(T0 + OFFLINE_AFTER + 11) == [PresenceChange("d1", False, T0 + 10)]
    assert not presence.is_online("d1")
    assert presence.seen("d1", T0 + OFFLINE_AFTER + 20) == PresenceChange(
        "d1", True, T0 + OFFLINE_AFTER + 20
    )


@pytest.mark.unit
def test_a_link_keeps_a_device_online_until_its_last_link_goes() -> None:
    presence = Presence(OFFLINE_AFTER)
    assert presence.link_up("d1", "socketio:a", T0) == PresenceChange("d1", True, T0)
    assert presence.link_up("d1", MQTT_LINK, T0 + 1) is None
    assert presence.expire(T0 + 10 * OFFLINE_AFTER) == []  # links do not time out
    assert presence.link_down("d1", "socketio:a", T0 + 2) is None
    assert presence.has_link("d1", MQTT_LINK)
    assert presence.drop_links(MQTT_LINK, T0 + 3) == [PresenceChange("d1", False, T0 + 3)]
    assert not presence.has_link("d1", MQTT_LINK)
    assert presence.link_down("d1", MQTT_LINK, T0 + 4) is None  # offline already


@pytest.mark.unit
def test_a_restart_starts_from_the_devices_the_store_had_online() -> None:
    presence = Presence(OFFLINE_AFTER)
    presence.load([record("on", True), record("off", False)])
    assert presence.is_online("on")
    assert not presence.is_online("off")
    assert len(presence) == 1
    assert presence.expire(T0 + OFFLINE_AFTER + 1) == [PresenceChange("on", False, T0)]


@pytest.mark.slow
def test_a_million_devices_that_come_and_go_leave_nothing_behind() -> None:
    presence = Presence(OFFLINE_AFTER)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for n in range(1_000_000):
            presence.seen(f"churn-{n}", T0 + n // 1000)
            if n % 100_000 == 99_999:  # the writer expires once a second
                presence.expire(T0 + n // 1000)
        online = len(presence)
        _, peak = tracemalloc.get_traced_memory()
        went_offline = len(presence.expire(T0 + 1000 + OFFLINE_AFTER))
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert online == 1_000_000  # all heard within offline_after: all online
    assert peak - before > 100_000_000  # a million online devices take room
    assert went_offline == 1_000_000
    assert len(presence) == 0
    assert after - before < 100_000  # and once offline, none
    assert not presence.is_online("churn-5")
