"""protocol.Coalescing: a response's head and body leave in one call to the transport,
on a real event loop and a real socket pair."""

from __future__ import annotations

import asyncio
import socket

import uvloop

from coursebook.protocol import Coalescing


class Recorder(asyncio.Protocol):
    """The reading end: what arrived."""

    def __init__(self) -> None:
        self.received = bytearray()

    def data_received(self, data: bytes) -> None:
        self.received += data


async def _pair() -> tuple[asyncio.Transport, Recorder, list[str]]:
    """A writing transport over a socket pair, whose calls are noted, and the reader."""
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    transport, _ = await loop.create_connection(asyncio.Protocol, sock=ours)
    _, reader = await loop.create_connection(Recorder, sock=theirs)
    calls: list[str] = []
    write, writelines = transport.write, transport.writelines

    class Noting:
        def write(self, data: bytes) -> None:
            calls.append("write")
            write(data)

        def writelines(self, data: list[bytes]) -> None:
            calls.append("writelines")
            writelines(data)

        def __getattr__(self, name: str) -> object:
            return getattr(transport, name)

    return Noting(), reader, calls  # type: ignore[return-value]


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)


def test_a_head_and_body_written_in_one_turn_leave_in_one_call() -> None:
    async def scenario() -> tuple[bytes, list[str]]:
        transport, reader, calls = await _pair()
        coalescing = Coalescing(transport, asyncio.get_running_loop())
        coalescing.write(b"HTTP/1.1 200 OK\r\n\r\n")
        assert calls == []  # held until the body, or the end of the turn
        coalescing.write(b"body")
        await _settle()
        transport.close()
        return bytes(reader.received), calls

    received, calls = uvloop.run(scenario())
    assert received == b"HTTP/1.1 200 OK\r\n\r\nbody"
    assert calls == ["writelines"]


def test_a_lone_write_leaves_at_the_end_of_the_turn_and_order_is_kept() -> None:
    async def scenario() -> tuple[bytes, list[str]]:
        transport, reader, calls = await _pair()
        coalescing = Coalescing(transport, asyncio.get_running_loop())
        coalescing.write(b"HTTP/1.1 304 Not Modified\r\n\r\n")  # no body follows
        await asyncio.sleep(0)
        assert calls == ["write"]
        coalescing.write(b"one")
        coalescing.write(b"two")
        coalescing.write(b"three")
        coalescing.close()  # sends what it holds before closing
        await _settle()
        return bytes(reader.received), calls

    received, calls = uvloop.run(scenario())
    assert received == b"HTTP/1.1 304 Not Modified\r\n\r\nonetwothree"
    assert calls == ["write", "writelines", "write"]
