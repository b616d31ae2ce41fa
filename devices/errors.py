"""Every error the device library raises on purpose derives from `DeviceError`.

Each subclass keeps its data as attributes and builds its message once, so
callers can both show the message and act on the fields.
"""

from __future__ import annotations


class DeviceError(Exception):
    """Root of the device library's own errors."""


class SetupError(DeviceError, ValueError):
    """A device or link was given an argument it cannot work with.

    It is also a `ValueError`, so code that validates arguments generically
    (argparse type functions, for one) treats it as a bad value.
    """

    def __init__(self, name: str, value: object, problem: str):
        self.name = name
        self.value = value
        self.problem = problem
        super().__init__(f"{name} = {value!r}: {problem}")


class LinkError(DeviceError):
    """A transport failed; whether the hub got the message is unknown.

    This is the "try again later" outcome: the message may be kept and sent
    again, and the hub's deduplication on the device's `seq` makes that safe.
    A hub that answered and refused a message is not an error but a
    `SendResult` with `ok=False`. The library error is chained as `__cause__`.
    """

    def __init__(self, transport: str, device_id: str, operation: str, detail: str):
        self.transport = transport
        self.device_id = device_id
        self.operation = operation
        self.detail = detail
        super().__init__(f"{transport} {operation} for {device_id!r} failed: {detail}")
