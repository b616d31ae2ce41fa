"""Device client library and the `telemetry-sim` simulator of the telemetry hub.

A `Device` numbers and timestamps messages and sends them through a `Link`:
`MqttLink`, `SocketIOLink` or `HttpLink`. `make_signal` gives believable
sensor values to send. `Buffering` makes a device keep messages while its
link is down and deliver them later (store-and-forward). `Commands` is what
a device answers when the hub sends it a command.
"""

from devices.buffer import Buffering, BufferStats, DropPolicy
from devices.commands import (
    Command,
    CommandId,
    Commands,
    CommandStats,
    Malformed,
    Reply,
    parse_command,
)
from devices.device import Device, Envelope, Reading
from devices.errors import DeviceError, LinkError, SetupError
from devices.forwarder import BUFFERED
from devices.http_link import HttpLink
from devices.link import CommandHandler, CommandLink, Link, Payload, SendResult, check_device_id
from devices.mqtt_link import MqttLink, parse_broker_url
from devices.signals import METRICS, MetricSpec, Signal, make_signal, make_signals
from devices.socketio_link import SocketIOLink

__all__ = [
    "BUFFERED",
    "METRICS",
    "BufferStats",
    "Buffering",
    "Command",
    "CommandHandler",
    "CommandId",
    "CommandLink",
    "CommandStats",
    "Commands",
    "Device",
    "DeviceError",
    "DropPolicy",
    "Envelope",
    "HttpLink",
    "Link",
    "LinkError",
    "Malformed",
    "MetricSpec",
    "MqttLink",
    "Payload",
    "Reading",
    "Reply",
    "SendResult",
    "SetupError",
    "Signal",
    "SocketIOLink",
    "check_device_id",
    "make_signal",
    "make_signals",
    "parse_broker_url",
    "parse_command",
]
