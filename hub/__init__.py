"""telemetry-hub: devices in over MQTT, Socket.IO and HTTP; SQLite; live dashboards."""

__version__ = "0.1.0"
