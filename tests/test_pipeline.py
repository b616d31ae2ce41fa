"""The ingest pipeline every transport shares: authenticate, rate limit,
normalize, submit, and the outcome the adapters turn into their answers;
against a store in memory."""

from __future__ import annotations

import pytest

from hub.auth import Authenticator
from hub.config import AuthSettings, DeviceSettings, NormalizeSettings
from hub.errors import AuthError, AuthFailure
from hub.ingest.pipeline import Pipeline
from hub.limits import RateLimiter
from hub.metrics import Metrics
from hub.models import Refusal, RejectReason, Source
from hub.normalize import Rules
from hub.presence import Presence
from hub.writer import Writer
from tests.fakes import FakeStore
from tests.hubs import wait_until

pytestmark = pytest.mark.unit

T0 = 1_795_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


def pipeline_on(
    store: FakeStore,
    *,
    devices: tuple[DeviceSettings, ...] = (),
    rate: float = 0.0,
    clock: Clock | None = None,
    ack_timeout: float = 10.0,
) -> Pipeline:
    metrics = Metrics()
    writer = Writer(store, Presence(60_000), metrics)
    limiter = RateLimiter(rate, 2, clock=clock or Clock())
    return Pipeline(
        writer,
        Rules.from_settings(NormalizeSettings()),
        Authenticator(AuthSettings(), devices),
        limiter,
        metrics,
        ack_timeout,
    )


async def test_a_good_message_is_stored_and_counted() -> None:
    store = FakeStore()
    pipeline = pipeline_on(store)
    async with pipeline.writer:
        outcome = await pipeline.submit(Source.HTTP, "d1", b'{"a": 1, "b": "on"}', T0)
    assert outcome.refusal is None
    assert outcome.stored is not None
    assert outcome.stored.accepted == 1  # "b" is an attribute, not a reading
    assert [(r.device_id, r.metric, r.value) for r in store.stored] == [("d1", "a", 1.0)]
    assert pipeline.metrics.value("hub_messages_received_total", source="http") == 1


async def test_a_message_nothing_of_which_is_acceptable_is_refused_with_its_reason() -> None:
    store = FakeStore()
    pipeline = pipeline_on(store)
    async with pipeline.writer:
        outcome = await pipeline.submit(Source.SOCKETIO, "d1", b"{oops", T0)
        good = await pipeline.submit(Source.SOCKETIO, "d1", b'{"a": 2}', T0)
    assert outcome.refusal is Refusal.INVALID
    assert outcome.reason == RejectReason.INVALID_JSON
    assert outcome.rejected == 1
    assert [r.reason for r in store.rejected] == [RejectReason.INVALID_JSON]
    assert good.stored is not None  # and the next good one is stored
    assert [r.value for r in store.stored] == [2.0]


async def test_a_device_over_its_rate_is_told_when_to_retry_and_its_message_kept() -> None:
    store, clock = FakeStore(), Clock()
    pipeline = pipeline_on(store, rate=1.0, clock=clock)
    async with pipeline.writer:
        for _ in range(2):  # the burst
            assert (await pipeline.submit(Source.HTTP, "d1", b'{"a": 1}', T0)).stored
        outcome = await pipeline.submit(Source.HTTP, "d1", b'{"a": 1}', T0)
        clock.now += 1.0
        again = await pipeline.submit(Source.HTTP, "d1", b'{"a": 1}', T0)
    assert outcome.refusal is Refusal.RATE_LIMITED
    assert outcome.retry_after == pytest.approx(1.0)
    assert again.stored is not None
    assert [r.reason for r in store.rejected] == [RejectReason.RATE_LIMITED]


async def test_a_store_that_cannot_write_makes_devices_retry() -> None:
    store = FakeStore(refuse="database or disk is full")
    pipeline = pipeline_on(store, ack_timeout=0.2)
    async with pipeline.writer:
        first = await pipeline.submit(Source.HTTP, "d1", b'{"seq": 1, "values": {"a": 1}}', T0)
        await wait_until(lambda: pipeline.writer.failing is not None)
        second = await pipeline.submit(Source.HTTP, "d1", b'{"seq": 2, "values": {"a": 2}}', T0)
        store.refuse = None
    assert first.refusal is Refusal.BUSY  # queued, not committed in time
    assert second.refusal is Refusal.BUSY
    assert "full" in second.detail
    assert second.retry_after == 1.0
    # the first stayed queued and was stored once the store took it
    assert [r.value for r in store.stored] == [1.0]


async def test_a_hub_shutting_down_says_so() -> None:
    pipeline = pipeline_on(FakeStore())
    async with pipeline.writer:
        pass
    outcome = await pipeline.submit(Source.HTTP, "d1", b'{"a": 1}', T0)
    assert outcome.refusal is Refusal.CLOSING
    assert outcome.retry_after == 5.0


def test_devices_are_authenticated_and_unlisted_ones_refused() -> None:
    pipeline = pipeline_on(FakeStore(), devices=(DeviceSettings(id="gh-3", token="s3cret"),))
    pipeline.authenticate("gh-3", "s3cret")
    with pytest.raises(AuthError) as caught:
        pipeline.authenticate("stranger", "")
    assert caught.value.kind is AuthFailure.NOT_LISTED
    # a device the broker let in but the hub does not list: a dead letter
    prepared = pipeline.prepare(Source.MQTT, "stranger", b'{"a": 1}', T0)
    assert not prepared.admitted
    assert [r.reason for r in prepared.normalized.rejections] == [RejectReason.UNKNOWN_DEVICE]
    assert prepared.normalized.readings == ()
