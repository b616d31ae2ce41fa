"""The dashboard: `/` and its built assets.

The page is built from `web/` by Vite (`npm run build --prefix web`, which
`make run`, `make test` and CI do) into `hub/static/`, so it ships inside the
wheel and needs nothing from the network at run time.
"""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint, Response, send_from_directory

STATIC = Path(__file__).resolve().parent / "static"

NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>telemetry-hub</title>
<p>The dashboard is not built. Run <code>make run</code>, or
<code>npm ci --prefix web && npm run build --prefix web</code>.</p>
<p>The hub itself is running: see <a href="/readyz">/readyz</a> and
<a href="/api/devices">/api/devices</a>.</p>"""


def pages(root: Path | None = None) -> Blueprint:
    static = (root or STATIC).resolve()
    blueprint = Blueprint("pages", __name__)

    @blueprint.get("/")
    async def index() -> Response:
        if not (static / "index.html").is_file():
            return Response(NOT_BUILT, status=503, content_type="text/html")
        response = await send_from_directory(static, "index.html")
        response.headers["Cache-Control"] = "no-cache"
        return response

    @blueprint.get("/assets/<path:name>")
    async def asset(name: str) -> Response:
        response = await send_from_directory(static / "assets", name)
        # Vite names assets by content hash: they never change under a name.
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response

    return blueprint
