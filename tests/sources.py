"""Helpers for tests of `[[mqtt.sources]]`: a hub configured with sources,
a publisher on the test's broker, and what a user then sees of the devices."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import aiomqtt
import orjson

from devices import parse_broker_url
from hub.config import MqttSettings, Settings, SourceSettings
from tests.hubs import RunningHub, wait_until


def with_sources(settings: Settings, *sources: SourceSettings) -> Settings:
    mqtt: MqttSettings = replace(settings.mqtt, sources=tuple(sources))
    return replace(settings, mqtt=mqtt)


@contextlib.asynccontextmanager
async def publisher(url: str) -> AsyncIterator[aiomqtt.Client]:
    address = parse_broker_url(url)
    async with aiomqtt.Client(address.host, address.port) as client:
        yield client


async def publish(
    client: aiomqtt.Client, topic: str, payload: Any, *, retain: bool = False
) -> None:
    """Publish text, bytes or (anything else) its JSON, at QoS 1."""
    if isinstance(payload, str):
        payload = payload.encode()
    elif not isinstance(payload, bytes):
        payload = orjson.dumps(payload)
    await client.publish(topic, payload, qos=1, retain=retain)


@dataclass
class Seen:
    """A device as `GET /api/devices` shows it."""

    online: bool
    metrics: dict[str, tuple[float, str | None]]
    attributes: dict[str, str]
    group: str | None


async def devices(running: RunningHub) -> dict[str, Seen]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{running.url}/api/devices") as response,
    ):
        body = await response.json()
    return {
        d["device_id"]: Seen(
            d["online"],
            {m: (v["value"], v["unit"]) for m, v in d["metrics"].items()},
            {a: v["value"] for a, v in d["attributes"].items()},
            d["group"],
        )
        for d in body["devices"]
    }


async def readings(running: RunningHub, device_id: str, metric: str) -> list[tuple[float, int]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{running.url}/api/devices/{device_id}/readings", params={"metric": metric}
        ) as response,
    ):
        body = await response.json()
    return [(r["value"], r["ts"]) for r in body["readings"]]


async def until_device(
    running: RunningHub, device_id: str, *, metrics: int = 1, online: bool | None = None
) -> Seen:
    """Wait until the device shows at least `metrics` metrics (and is online
    or offline, when asked), and return it as shown."""
    latest: dict[str, Seen] = {}

    async def check() -> bool:
        nonlocal latest
        latest = await devices(running)
        seen = latest.get(device_id)
        return (
            seen is not None
            and len(seen.metrics) >= metrics
            and (online is None or seen.online == online)
        )

    await wait_until(check, what=f"{device_id} with {metrics} metrics, online={online}")
    return latest[device_id]


async def rejections(running: RunningHub) -> list[tuple[str, str, str]]:
    """(device, reason, detail) of each dead letter, oldest first."""
    found = await running.hub.store.rejections(1000)
    return [(r.device_id, str(r.reason), r.detail) for r in found]
