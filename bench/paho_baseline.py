"""A bare paho-mqtt subscriber: the ceiling any Python MQTT consumer starts from.

Subscribes at QoS 1 to `devices/+/telemetry` (paho acknowledges on arrival)
and counts messages, nothing else; prints the rate once `count` arrived.

    python -m bench.paho_baseline PORT COUNT
"""

from __future__ import annotations

import sys
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


def main() -> None:
    port, count = int(sys.argv[1]), int(sys.argv[2])
    received = 0
    started = 0.0
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id="paho-baseline"
    )

    def on_connect(client: paho.Client, *args: Any) -> None:
        client.subscribe("devices/+/telemetry", qos=1)

    def on_subscribe(*args: Any) -> None:
        print("ready", flush=True)

    def on_message(client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        nonlocal received, started
        if received == 0:
            started = time.monotonic()
        received += 1
        if received >= count:
            client.disconnect()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_forever()
    print(f"{received / (time.monotonic() - started):.1f}", flush=True)


if __name__ == "__main__":
    main()
