"""How the hub's Socket.IO packets are encoded: orjson instead of the
standard library's json, for this server only.

Encoding frames is the hub's hottest path (one `readings` frame per room per
tick, and every replay page); orjson does it several times faster and can
embed JSON that is already encoded (`orjson.Fragment`), which replay uses for
pages that SQLite renders itself. Decoding falls back to the standard library
for what orjson refuses but Socket.IO clients send, such as NaN from a Python
client, so that the normalizer can reject it with its own reason.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from socketio.packet import Packet

from hub.models import Reading


class OrjsonCodec:
    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(text: str | bytes) -> Any:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return json.loads(text)


class HubPacket(Packet):  # type: ignore[misc]
    """socketio's packet with the hub's codec; other servers and clients in
    the same process keep the default (python-socketio sets `json` per class)."""

    json = OrjsonCodec


def encode(reading: Reading) -> bytes:
    return orjson.dumps(reading.to_wire())


def json_array(body: bytes) -> orjson.Fragment:
    """Encoded readings joined by commas, as one JSON array. python-socketio
    passes a Fragment through untouched, instead of walking every reading
    looking for binary attachments and encoding it again."""
    return orjson.Fragment(b"[" + body + b"]")
