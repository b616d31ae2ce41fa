"""Which devices are online. Pure state: the writer feeds it events in commit
order and persists and broadcasts the changes it returns.

A device is online while it holds a link that says so (a Socket.IO connection,
or an MQTT status of `online`, whose Last Will turns it `offline`), or, for
devices that only send data (HTTP, or MQTT without a status topic), until
`offline_after` passes without hearing from it.

Only devices that are online, or hold a link, take memory: a device that
goes offline is forgotten here (the store keeps its last_seen), so memory
follows the devices online now, not every id ever heard (a fleet that churns
through a million ids, say).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hub.models import DeviceRecord, KnownDevice, PresenceChange

MQTT_LINK = "mqtt"


NO_LINKS: frozenset[str] = frozenset()
# Link sets are shared: a 100,000 devices each with an MQTT link hold one set
# between them, not one each (an empty set alone is over 200 bytes).
_LINK_SETS: dict[frozenset[str], frozenset[str]] = {NO_LINKS: NO_LINKS}


def _shared(links: frozenset[str]) -> frozenset[str]:
    return _LINK_SETS.setdefault(links, links)


@dataclass(slots=True)
class _Device:
    online: bool
    last_seen: int
    links: frozenset[str] = NO_LINKS


class Presence:
    def __init__(self, offline_after_ms: int):
        self.offline_after_ms = offline_after_ms
        self._devices: dict[str, _Device] = {}

    def __len__(self) -> int:
        """Devices held: those online or holding a link."""
        return len(self._devices)

    def load(self, records: Iterable[DeviceRecord | KnownDevice]) -> None:
        """Start from the store. Links did not survive the restart: devices that
        were online stay so until they reconnect or time out."""
        for record in records:
            if record.online:
                self._devices[record.device_id] = _Device(True, record.last_seen)

    def is_online(self, device_id: str) -> bool:
        device = self._devices.get(device_id)
        return device is not None and device.online

    def has_link(self, device_id: str, link: str) -> bool:
        device = self._devices.get(device_id)
        return device is not None and link in device.links

    def seen(self, device_id: str, now: int) -> PresenceChange | None:
        """The device sent something."""
        device = self._devices.setdefault(device_id, _Device(False, now))
        device.last_seen = max(device.last_seen, now)
        return self._set(device_id, device, True)

    def link_up(self, device_id: str, link: str, now: int) -> PresenceChange | None:
        device = self._devices.setdefault(device_id, _Device(False, now))
        device.links = _shared(device.links | {link})
        device.last_seen = max(device.last_seen, now)
        return self._set(device_id, device, True)

    def link_down(self, device_id: str, link: str, now: int) -> PresenceChange | None:
        device = self._devices.get(device_id)
        if device is None:  # offline already
            return None
        device.links = _shared(device.links - {link})
        device.last_seen = max(device.last_seen, now)
        return None if device.links else self._set(device_id, device, False)

    def drop_links(self, link: str, now: int) -> list[PresenceChange]:
        """A whole ingest path went away (the broker connection dropped)."""
        holders = [d for d, device in self._devices.items() if link in device.links]
        changes = (self.link_down(device_id, link, now) for device_id in holders)
        return [change for change in changes if change is not None]

    def expire(self, now: int) -> list[PresenceChange]:
        deadline = now - self.offline_after_ms
        silent = [
            device_id
            for device_id, device in self._devices.items()
            if not device.links and device.last_seen < deadline
        ]
        changes = [self._set(d, self._devices[d], False) for d in silent]
        if len(silent) > len(self._devices):
            # a dict keeps the table it grew to: copied, it fits what is left
            self._devices = dict(self._devices)
        return [change for change in changes if change is not None]

    def _set(self, device_id: str, device: _Device, online: bool) -> PresenceChange | None:
        if not online and not device.links:
            del self._devices[device_id]  # offline and linkless: nothing to hold
        if device.online == online:
            return None
        device.online = online
        return PresenceChange(device_id, online, device.last_seen)
