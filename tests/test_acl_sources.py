"""`telemetry-hub mosquitto-acl` with `[[mqtt.sources]]`: a real Mosquitto on
the generated files lets each foreign device publish only under its own name,
each Zigbee2MQTT bridge under its own base topic, and the hub read all of it."""

from __future__ import annotations

import os
from pathlib import Path

import aiomqtt
import pytest

from hub import cli
from hub.config import load_settings
from tests.brokers import Mosquitto, free_port
from tests.hubs import hub_settings, serve_hub, wait_until
from tests.sources import devices, rejections, with_sources

CONFIG = """
[mqtt]
url = "mqtt://127.0.0.1:{port}"

[[mqtt.sources]]
preset = "tasmota"

[[mqtt.sources]]
preset = "zigbee2mqtt"

[[mqtt.sources]]
preset = "zigbee2mqtt"
base = "garage/zigbee"  # a second bridge, its mqtt.base_topic set so

[[mqtt.sources]]
topic = "farm/{{device}}/{{metric}}"
format = "number"

[[devices]]
id = "plug1"
token = "secret-1"

[[devices]]
id = "plug2"
token = "secret-2"

[[devices]]
id = "sensor"  # behind the Zigbee2MQTT bridge: listed, no broker user of its own

[[devices]]
id = "sensor2"  # behind the garage's bridge
"""


@pytest.fixture
def _no_hub_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("HUB_"):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("_no_hub_environment")
async def test_each_foreign_device_publishes_only_as_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.format(port=port))
    out = tmp_path / "broker"
    assert cli.main(["mosquitto-acl", "--config", str(config), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out / 'zigbee2mqtt-password'}" in printed
    acl = (out / "acl").read_text()
    assert "pattern write tele/%u/#\n" in acl
    assert "pattern read cmnd/%u/#\n" in acl
    assert "pattern write farm/%u/+\n" in acl
    assert "user zigbee2mqtt\ntopic readwrite zigbee2mqtt/#\n" in acl
    assert "user garage-zigbee\ntopic readwrite garage/zigbee/#\n" in acl
    assert "topic read garage/zigbee/#\n" in acl  # the hub's
    assert "topic read tele/+/SENSOR\n" in acl  # the hub's

    lines = (out / "mosquitto.conf").read_text().splitlines()
    snippet = [line for line in lines if not line.startswith("listener ")]
    if os.geteuid() == 0:
        snippet.append("user root")  # see tests/test_acl.py
    (tmp_path / "mosquitto").mkdir()
    broker = Mosquitto(tmp_path / "mosquitto", port, extra_config="\n".join(snippet))
    broker.start()
    try:
        hub_password = (out / "hub-password").read_text().strip()
        bridge_password = (out / "zigbee2mqtt-password").read_text().strip()
        garage_password = (out / "garage-zigbee-password").read_text().strip()
        settings = load_settings(config, {})
        url = f"mqtt://telemetry-hub:{hub_password}@127.0.0.1:{port}"
        test_settings = with_sources(
            hub_settings(tmp_path, url, devices=settings.devices), *settings.mqtt.sources
        )
        async with (
            serve_hub(test_settings) as running,
            aiomqtt.Client("127.0.0.1", port, username="plug1", password="secret-1") as plug1,
            aiomqtt.Client("127.0.0.1", port, username="plug2", password="secret-2") as plug2,
            aiomqtt.Client(
                "127.0.0.1", port, username="zigbee2mqtt", password=bridge_password
            ) as bridge,
            aiomqtt.Client(
                "127.0.0.1", port, username="garage-zigbee", password=garage_password
            ) as garage,
        ):
            # plug1 as plug2, and as a Zigbee device: the broker drops both.
            await plug1.publish("tele/plug2/SENSOR", b'{"AM2301":{"Temperature":99}}', qos=1)
            await plug1.publish("zigbee2mqtt/fake", b'{"temperature": 99}', qos=1)
            await plug1.publish("farm/plug2/temperature", b"99", qos=1)
            await plug1.publish("tele/plug1/SENSOR", b'{"AM2301":{"Temperature":21}}', qos=1)
            await plug2.publish("farm/plug2/humidity", b"40", qos=1)
            # Each bridge under its own base topic only.
            await bridge.publish("garage/zigbee/fake", b'{"temperature": 99}', qos=1)
            await garage.publish("zigbee2mqtt/fake", b'{"temperature": 99}', qos=1)
            await bridge.publish("zigbee2mqtt/sensor", b'{"temperature": 22}', qos=1)
            await garage.publish("garage/zigbee/sensor2", b'{"temperature": 12}', qos=1)

            async def arrived() -> bool:
                shown = await devices(running)
                wanted = ("sensor", "sensor2", "plug1", "plug2")
                return all(d in shown and shown[d].metrics for d in wanted)

            # plug1's refused publishes came before its good ones on one link.
            await wait_until(arrived, what="the readings plug1, plug2 and the bridge may send")
            shown = await devices(running)
            refused = await rejections(running)
    finally:
        broker.stop()
    assert shown["plug1"].metrics == {"am2301_temperature": (21.0, "Cel")}
    assert shown["plug2"].metrics == {"humidity": (40.0, "%RH")}
    assert shown["sensor"].metrics == {"temperature": (22.0, "Cel")}
    assert shown["sensor2"].metrics == {"temperature": (12.0, "Cel")}
    assert "fake" not in shown
    # Not even refused by the hub (fake is not listed): the broker never passed it on.
    assert refused == []
