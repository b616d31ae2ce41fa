"""The three ways device data comes in: MQTT, Socket.IO (`/devices`) and HTTP."""
