"""Device ids for names that firmware gives its devices, and who holds each id.

Zigbee2MQTT friendly names hold spaces, slashes and any Unicode; a Homie id
may be longer than 64 characters. The hub's ids are 1 to 64 of
`A-Z a-z 0-9 _ . -`, so such a name is mapped, deterministically:

- a name that already is a valid id is the id, unchanged;
- any other is folded to ASCII (NFKD, accents dropped), each run of other
  characters becomes `_`, it is cut to 55 characters, and `-` and the first
  8 hex digits of the SHA-256 of the original name (UTF-8) are appended:
  `Living Room/Sensor` -> `Living_Room_Sensor-6c8ee4b9`.

The suffix keeps two names that fold alike (`a b`, `a/b`) apart. The
original name is kept as the device's `name` attribute.

`DeviceNames` then makes sure one id is never fed by two devices: the first
source (or the native topics) to use an id holds it, and a message from any
other for the same id is refused with `device_id_conflict`, naming both. What
each stored device is held by is read back from the store at startup (the
`source` attribute), so the holder does not change with a restart.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from typing import NamedTuple

from hub.models import MAX_DEVICE_ID, KnownDevice, is_valid_device_id

NATIVE = "native"  # the hub's own topics, HTTP and Socket.IO
SLUG_LENGTH = MAX_DEVICE_ID - 9  # room for "-" and 8 hex digits
_OTHER = re.compile(r"[^A-Za-z0-9_.\-]+")


@lru_cache(maxsize=65536)
def device_id_for(name: str) -> str:
    """The device id of a name a firmware gives its device (see the module)."""
    if is_valid_device_id(name):
        return name
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = _OTHER.sub("_", folded).strip("_.-")[:SLUG_LENGTH].rstrip("_.-") or "device"
    return f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


class Holder(NamedTuple):
    """Whoever holds an id: a source's label, and the device's name there."""

    source: str
    name: str

    def __str__(self) -> str:
        return "a native device" if self.source == NATIVE else f"{self.source} {self.name!r}"


NATIVE_HOLDER = Holder(NATIVE, "")  # one for every native device: memory per id stays a dict slot


class DeviceNames:
    """Which source holds each device id: the first to use it."""

    def __init__(self) -> None:
        self._holders: dict[str, Holder] = {}

    def load(self, known: Iterable[KnownDevice]) -> None:
        """The holders of the devices the store knows: their `source` and
        `name` attributes (written together, in one commit), or the native
        topics for a device without that was ever heard from."""
        for device in known:
            if device.source:
                holder = Holder(device.source, device.name or device.device_id)
                self._holders[device.device_id] = holder
            elif device.last_seen:  # a device listed but never heard from is no one's yet
                self._holders[device.device_id] = NATIVE_HOLDER

    def claim(self, device_id: str, source: str, name: str) -> Holder | None:
        """Take `device_id` for `source`'s device `name`; the holder that
        keeps it from them, or None when it is theirs."""
        holder = self._holders.get(device_id)
        if holder is None:
            if source == NATIVE:
                self._holders[device_id] = NATIVE_HOLDER
                return None
            self._holders[device_id] = Holder(source, name)
            return None
        if holder.source != source:
            return holder
        if source == NATIVE or holder.name == name:
            return None
        return holder  # two names of one source that map to one id (a hash collision)

    def __len__(self) -> int:
        return len(self._holders)
