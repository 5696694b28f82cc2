"""The HTTP protocol ``coursebook serve`` runs: uvicorn's httptools protocol, with limits
on the request head enforced as its bytes arrive.

httptools has no limit of its own on a header's size or number, and the application
sees headers only once all of them are parsed: a 100 MB header would be held in
memory whole before any ASGI code could refuse it. Here the bytes of a request's head
are counted before the parser is given them, so a worker never holds more than the
limit (plus one read of the socket) of any request's head; the request line and the
number of header fields are checked when the head is complete. A refused request
is answered in TeamUp's error body, as every other error is, and its connection closed.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable
from typing import Any, NamedTuple, cast

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from coursebook.errors import ApiError
from coursebook.settings import Settings

#: Seconds a refused connection is still read (and what arrives discarded) after the
#: answer, so that a client still sending its head reads the answer rather than a reset.
LINGER_SECONDS = 2.0


class HeadLimits(NamedTuple):
    """How large a request's head may be."""

    request_line: int
    header_count: int
    head_bytes: int

    @classmethod
    def of(cls, settings: Settings) -> HeadLimits:
        return cls(settings.max_request_line, settings.max_header_count, settings.max_header_bytes)


@functools.cache
def configured_limits() -> HeadLimits:
    """The limits of this process's settings, read once (uvicorn builds the protocol per
    connection, by class, in each worker)."""
    return HeadLimits.of(Settings())


class _Refused(Exception):
    """Raised from a parser callback to stop the parser: the request broke a limit."""


# uvicorn's own callbacks, called directly on the request path (``super()`` makes an
# object per call on Python 3.11).
_feed = HttpToolsProtocol.data_received
_headers_complete = HttpToolsProtocol.on_headers_complete
_message_complete = HttpToolsProtocol.on_message_complete


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing a request whose head breaks ``limits``:
    414 for its request line, 431 for its header fields, and a malformed request is a
    400, each in the error body."""

    limits: HeadLimits | None = None
    """The limits; None reads them from the settings (``configured_limits``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_limits = self.limits or configured_limits()
        self.head_bytes = 0
        self.in_head = True
        self.refusal: ApiError | None = None
        self.refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(cast(asyncio.Transport, Coalescing(transport, self.loop)))

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return  # lingering after a refusal: read and drop
        if not self.in_head:
            _feed(self, data)
            return
        room = self.head_limits.head_bytes - self.head_bytes
        if len(data) <= room:
            self.head_bytes += len(data)
            _feed(self, data)
            return
        # Give the parser only what the limit leaves room for: if that does not end the
        # head, the rest is never buffered.
        self.head_bytes += room
        super().data_received(data[:room])
        if self.refused or self.transport.is_closing():
            return
        if self.in_head:
            self.refuse(too_large("The request's headers", self.head_limits.head_bytes, "bytes"))
        else:
            self.data_received(data[room:])

    def on_headers_complete(self) -> None:
        # The request line and the header fields are checked once the head is parsed,
        # not in a callback of ours per field (a Python call each, on every request):
        # the head's bytes, and so what the parser kept of them, are bounded already.
        limits = self.head_limits
        if len(self.url) > limits.request_line:
            self.refusal = ApiError(
                414,
                "uri_too_long",
                f"The request target is longer than {limits.request_line} bytes.",
            )
            raise _Refused
        if len(self.headers) > limits.header_count:
            self.refusal = too_large("The request", limits.header_count, "header fields")
            raise _Refused
        self.in_head = False
        _headers_complete(self)

    def on_message_complete(self) -> None:
        _message_complete(self)
        self.in_head, self.head_bytes = True, 0

    def send_400_response(self, msg: str) -> None:
        """What uvicorn answers when the parser fails: a limit a callback found broken (it
        raised ``_Refused``, which httptools reports as a parser error), or a malformed
        request."""
        self.refuse(self.refusal or ApiError(400, "parse_error", "Malformed request."))

    def refuse(self, error: ApiError) -> None:
        """Answer ``error`` in the error body, then stop reading the connection."""
        self.refused = True
        body = orjson.dumps(error.body())
        head = [STATUS_LINE[error.status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


class Coalescing:
    """A transport that sends a response's head and body in one system call.

    uvicorn writes the head when the application starts its response and the body when
    it sends it: two ``write`` calls, two system calls and two TCP segments for every
    response, each waking the client. This holds what is written until the next write,
    which then goes out with it in one ``writelines`` (one ``writev``), or until the end
    of the event loop's turn, whichever comes first, so the head and body of a response
    sent in one turn (every answer of this application) leave together, and nothing
    waits longer than the turn. Closing, or ending the stream, sends what is held
    first; everything else is the transport's own.
    """

    __slots__ = ("_held", "_loop", "_transport", "get_extra_info", "is_closing")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        # The transport's own methods, not a call through one of ours per request.
        self.is_closing = transport.is_closing
        self.get_extra_info = transport.get_extra_info

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._held = data
            self._loop.call_soon(self.flush)
        else:
            self._held = None
            self._transport.writelines((held, data))

    def flush(self) -> None:
        """Send what is held, if anything."""
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def writelines(self, data: Iterable[bytes]) -> None:
        self.flush()
        self._transport.writelines(data)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def too_large(what: str, limit: int, unit: str) -> ApiError:
    """The 431 for a request head past one of its limits."""
    return ApiError(
        431, "request_header_fields_too_large", f"{what} exceed the limit of {limit} {unit}."
    )
