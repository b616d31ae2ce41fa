"""What the hub needs from python-engineio beyond its API: connection
endings, and how much a client has queued but not yet been sent.

When a polling client says goodbye (an Engine.IO CLOSE packet in a POST),
python-engineio closes the session but leaves the client's pending GET
waiting for up to ping_interval + ping_timeout. The official JavaScript client
does not care (it aborts its request), but python-engineio's client waits for
that GET in `disconnect()`, so it hangs for tens of seconds. The Node.js
server answers the pending GET at once; so does the hub, by handing the
closed session's queue a NOOP packet.
"""

from __future__ import annotations

from typing import Any

import socketio
from engineio import packet


def release_polls_on_close(sio: socketio.AsyncServer) -> None:
    eio = sio.eio
    handle_disconnect = eio.handlers["disconnect"]

    async def on_disconnect(eio_sid: str, reason: Any) -> None:
        await handle_disconnect(eio_sid, reason)
        if reason == eio.reason.CLIENT_DISCONNECT:
            session = eio.sockets.get(eio_sid)
            if session is not None and not session.upgraded:
                session.queue.put_nowait(packet.Packet(packet.NOOP))

    eio.on("disconnect", on_disconnect)


def release_all(sio: socketio.AsyncServer) -> None:
    """End every client's connection the way a crash would look to it: the
    websocket just closes, a pending long-poll returns empty and the next one
    finds no session. Both JavaScript and Python clients then reconnect on
    their own, which is what a hub restart needs. (A graceful Engine.IO CLOSE
    would stop python-socketio's client from ever reconnecting.)"""
    for session in list(sio.eio.sockets.values()):
        # python-engineio's close is a coroutine only for the disconnect
        # handlers it runs; marking the session closed here is enough, the
        # namespaces learn of it when the transports end.
        session.closed = True
        session.queue.put_nowait(None)


def queued_packets(sio: socketio.AsyncServer, sid: str, namespace: str) -> int:
    """Packets waiting in the client's Engine.IO queue (0 when it is gone).
    The queue is unbounded; the hub must not fill it faster than it drains."""
    eio_sid = sio.manager.eio_sid_from_sid(sid, namespace)
    session = sio.eio.sockets.get(eio_sid) if eio_sid else None
    return int(session.queue.qsize()) if session is not None else 0
