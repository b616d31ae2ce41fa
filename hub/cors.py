"""Cross-origin access to the HTTP API, from `server.cors_allowed_origins`
(the same list python-socketio uses for Socket.IO). Empty: same origin only.
`["*"]`: any origin (no credentials)."""

from __future__ import annotations

from quart import Quart, Response, request

ALLOWED_METHODS = "GET, POST, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type"


def allow_origins(app: Quart, origins: tuple[str, ...]) -> None:
    if not origins:
        return
    anyone = "*" in origins

    @app.before_request
    async def preflight() -> Response | None:
        if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
            return Response("", status=204)
        return None

    @app.after_request
    async def headers(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if origin and (anyone or origin in origins):
            response.headers["Access-Control-Allow-Origin"] = "*" if anyone else origin
            response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
            if not anyone:
                response.headers["Vary"] = "Origin"
        return response
