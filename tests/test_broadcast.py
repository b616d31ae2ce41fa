"""Holds: the live frames kept for a client while its history is replayed."""

from __future__ import annotations

import orjson
import pytest
import socketio

from hub.broadcast import Broadcaster, Subscription
from hub.metrics import Metrics
from hub.models import Reading

pytestmark = pytest.mark.unit


def reading(seq: int, device: str = "d1") -> Reading:
    return Reading(seq, device, "temperature", 1_795_000_000_000 + seq, 20.0, "Cel")


def seqs(bodies: list[tuple[bytes, int]]) -> list[int]:
    """The seqs in held bodies, decoded as a client would."""
    return [r["seq"] for body, _ in bodies for r in orjson.loads(b"[" + body + b"]")]


async def test_a_hold_keeps_what_its_subscription_would_receive() -> None:
    broadcaster = Broadcaster(socketio.AsyncServer(async_mode="asgi"), Metrics(), hold_max=4)
    broadcaster.start_at("e", 10)
    assert broadcaster.hold("everything", Subscription.of(["*"])) == 10
    assert broadcaster.hold("just-d2", Subscription.of(["d2"])) == 10

    broadcaster.publish((reading(11), reading(12, "d2")), ())
    await broadcaster.flush()
    broadcaster.publish((reading(13, "d2"),), ())
    await broadcaster.flush()

    d2 = broadcaster.release("just-d2")
    assert d2 is not None
    assert (d2.since, d2.readings, d2.overflowed) == (10, 2, False)
    assert seqs(d2.bodies) == [12, 13]

    broadcaster.publish((reading(14), reading(15)), ())  # more than hold_max in all
    await broadcaster.flush()
    everything = broadcaster.release("everything")
    assert everything is not None
    assert everything.overflowed
    assert everything.bodies == []
    assert broadcaster.release("everything") is None
    assert broadcaster.head == 15
