"""The dashboard's files: `/` and its assets, served from `web/`.

The Socket.IO client is the official `socket.io-client` installed by npm into
`web/node_modules` (no CDN at run time).
"""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint, Response, send_from_directory

DEFAULT_WEB_ROOT = Path(__file__).resolve().parent.parent / "web"
SOCKET_IO_CLIENT = Path("node_modules/socket.io-client/dist")


def pages(web_root: Path | None = None) -> Blueprint:
    root = (web_root or DEFAULT_WEB_ROOT).resolve()
    blueprint = Blueprint("pages", __name__)

    @blueprint.get("/")
    async def index() -> Response:
        return await send_from_directory(root, "index.html")

    @blueprint.get("/assets/<path:name>")
    async def asset(name: str) -> Response:
        return await send_from_directory(root / "src", name)

    @blueprint.get("/vendor/socket.io.min.js")
    async def socket_io_client() -> Response:
        return await send_from_directory(root / SOCKET_IO_CLIENT, "socket.io.min.js")

    return blueprint
