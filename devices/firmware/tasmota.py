"""Tasmota (https://tasmota.github.io/docs/MQTT/): a device with a BME280."""

from __future__ import annotations

import time
from typing import Any

from devices.errors import SetupError
from devices.firmware.base import Message, Sample, count_values, fake_mac, to_json

# Tasmota sends STATE with every TelePeriod's SENSOR; one report in this many
# is enough to show it without drowning the sensor readings.
STATE_EVERY = 10


class Tasmota:
    """A Tasmota device with a BME280, default FullTopic `%prefix%/%topic%/`:
    `tele/<topic>/SENSOR` on each report, `tele/<topic>/STATE` with the first
    and every STATE_EVERY-th, `tele/<topic>/LWT` `Online` / `Offline`
    (retained, `Offline` the Last Will)."""

    def __init__(self, topic: str) -> None:
        if not topic or any(c in topic for c in "/+#"):
            raise SetupError("topic", topic, "a Tasmota topic is one level, without + or #")
        self.topic = topic
        self.mac = fake_mac(topic)
        self._reports = 0

    @property
    def client_id(self) -> str:
        return f"DVES_{self.mac[-6:].upper()}"  # Tasmota's default MqttClient

    @property
    def devices(self) -> tuple[str, ...]:
        return (self.topic,)

    def will(self) -> Message:
        return Message(f"tele/{self.topic}/LWT", b"Offline", retain=True)

    def hello(self) -> list[Message]:
        return [Message(f"tele/{self.topic}/LWT", b"Online", retain=True)]

    def report(self, device: str, sample: Sample) -> list[Message]:
        messages = []
        if self._reports % STATE_EVERY == 0:
            state = tasmota_state(sample, self.mac)
            messages.append(
                Message(f"tele/{self.topic}/STATE", to_json(state), values=count_values(state))
            )
        self._reports += 1
        sensor = tasmota_sensor(sample)
        messages.append(
            Message(f"tele/{self.topic}/SENSOR", to_json(sensor), values=count_values(sensor))
        )
        return messages

    def goodbye(self) -> list[Message]:
        return [self.will()]


def tasmota_time(epoch_s: float) -> str:
    """Tasmota's `Time`: the device's local time, without an offset."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(epoch_s))


def tasmota_uptime(seconds: int) -> str:
    """`0T18:36:12`: days, then hours, minutes, seconds."""
    days, rest = divmod(seconds, 86_400)
    return f"{days}T{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"


def tasmota_sensor(sample: Sample) -> dict[str, Any]:
    """`tele/<topic>/SENSOR` of a BME280, as docs/BME280.md shows it."""
    return {
        "Time": tasmota_time(sample.time),
        "BME280": {
            "Temperature": round(sample.temperature, 1),
            "Humidity": round(sample.humidity, 1),
            "Pressure": round(sample.pressure, 1),
        },
        "PressureUnit": "hPa",
        "TempUnit": "C",
    }


def tasmota_state(sample: Sample, mac: str) -> dict[str, Any]:
    """`tele/<topic>/STATE`, as docs/DeepSleep.md shows it."""
    # Tasmota's RSSI is a quality in percent; Signal is the dBm.
    quality = max(0, min(100, 2 * (sample.rssi + 100)))
    return {
        "Time": tasmota_time(sample.time),
        "Uptime": tasmota_uptime(sample.uptime),
        "UptimeSec": sample.uptime,
        "Heap": 28,
        "SleepMode": "Dynamic",
        "Sleep": 50,
        "LoadAvg": 19,
        "MqttCount": 1,
        "Wifi": {
            "AP": 1,
            "SSId": "sim",
            "BSSId": ":".join(mac[i : i + 2] for i in range(0, 12, 2)).upper(),
            "Channel": 1,
            "Mode": "11n",
            "RSSI": quality,
            "Signal": sample.rssi,
            "LinkCount": 1,
            "Downtime": "0T00:00:03",
        },
    }
