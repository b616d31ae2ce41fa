"""A TCP relay between a device and the broker that a test can break the way
networks break."""

from __future__ import annotations

import asyncio


class TcpProxy:
    """A TCP relay to the broker that a test can cut, stall or freeze.

    - `cut()`: every connection dies for real. No DISCONNECT is sent; the
      broker just sees the socket go, as when a device loses power.
    - `downstream.clear()` / `.set()`: broker -> device stops / flows again,
      on every connection, present and future.
    - `freeze()`: every connection open now goes silent in both directions
      while its sockets stay open, as a path does that a NAT or a radio lost
      without a word; connections made afterwards relay normally.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.downstream = asyncio.Event()  # broker -> device flows while set
        self.downstream.set()
        self.relayed_up = 0  # bytes relayed device -> broker, on every connection
        self._gates: list[asyncio.Event] = []  # one per connection, cleared by freeze()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.cut()
        for gate in self._gates:
            gate.set()  # frozen pumps wake, find their writers closed, and end
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def cut(self) -> None:
        self.downstream.set()
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    def freeze(self) -> None:
        for gate in self._gates:
            gate.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]
        gate = asyncio.Event()
        gate.set()
        self._gates.append(gate)
        await asyncio.gather(
            self._pump(reader, up_writer, gate, up=True),
            self._pump(up_reader, writer, gate, self.downstream),
        )

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *gates: asyncio.Event,
        up: bool = False,
    ) -> None:
        try:
            while data := await reader.read(65536):
                for gate in gates:
                    await gate.wait()
                if writer.is_closing():
                    break
                writer.write(data)
                await writer.drain()
                if up:
                    self.relayed_up += len(data)
        except ConnectionError:
            pass
        finally:
            writer.transport.abort()
