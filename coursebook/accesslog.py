"""Request ids, and the access log: one JSON line per request.

The line names the request's method, route template (never the raw path, which
carries whatever a client typed), status, duration, request id, and the token and
provider it was authorised for: database ids, never a secret. It belongs to the
``coursebook.access`` logger, so an operator can route or silence it as any other.

A plain retrieve is about 50 microseconds of work, and a line through the logging
module (a record, a formatter, a write and a flush per line) cost 19 of them. So when
nothing else is configured on the logger, the line skips the logging module: it is
serialised by orjson into ``BUFFER``, which the worker writes to standard error
``FLUSH_SECONDS`` after the first line waiting, at once when ``FLUSH_LINES`` wait,
and at exit: a few microseconds a request, one ``write`` for many lines. A handler an
operator put on ``coursebook.access`` before the app started gets each line as a
``LogRecord`` instead, as the request is answered.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import re
import secrets
import sys
import threading
import time
from typing import TextIO

import orjson

ACCESS = logging.getLogger("coursebook.access")
#: A request id a client sent is used when it looks like one (and is safe to log).
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
#: Longest a buffered line waits before it is written.
FLUSH_SECONDS = 0.25
#: Lines that are written at once, without waiting for the timer.
FLUSH_LINES = 256

#: Request ids this process makes: a random prefix (unique per process, across
#: workers and restarts) and a counter, cheaper than a UUID each time.
_PREFIX = secrets.token_hex(6)
_serial = itertools.count(1)


def request_id(given: bytes | None) -> str:
    """The request's id: the client's ``X-Request-ID`` when well-formed, else a new one."""
    if given is not None:
        text = given.decode("latin-1")
        if REQUEST_ID.fullmatch(text):
            return text
    return f"{_PREFIX}-{next(_serial):x}"


class Clock:
    """The access line's ``time``: the UTC second formatted once per second, its
    milliseconds taken from a table (``strftime`` and formatting per line would be a
    microsecond of a request's few)."""

    __slots__ = ("_second", "_stamp")

    #: ``.000Z`` to ``.999Z``.
    MILLISECONDS = tuple(f".{ms:03d}Z" for ms in range(1000))

    def __init__(self) -> None:
        self._second = -1
        self._stamp = ""

    def stamp(self, now: float) -> str:
        """``now`` as ``2026-11-30T14:11:28.024Z``."""
        milliseconds = int(now * 1000)
        second = milliseconds // 1000
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return self._stamp + self.MILLISECONDS[milliseconds % 1000]


class Buffer:
    """Access lines waiting to be written to a stream, in arrival order."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lines: list[str] = []
        #: Serialises writers: the event loop's flush, and the one at exit.
        self._lock = threading.Lock()

    def add(self, line: str) -> bool:
        """Keep ``line``; whether enough wait that they should be written now."""
        lines = self.lines
        lines.append(line)
        return len(lines) >= FLUSH_LINES

    def flush(self) -> None:
        """Write every waiting line in one call; a stream that fails loses them, as a
        failing handler's records are lost, and the request path never sees it."""
        with self._lock:
            if not self.lines:
                return
            lines, self.lines = self.lines, []
            try:
                self.stream.write("".join(lines))
                self.stream.flush()
            except (OSError, ValueError):
                pass  # standard error closed or gone: nothing left to tell


#: The default destination: set by ``configure`` when no handler was configured.
BUFFER: Buffer | None = None
CLOCK = Clock()


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for a handler an operator configured: the record's
    time, then its fields (orjson, which escapes anything a client could put in one)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = record.msg if isinstance(record.msg, dict) else {"message": record.getMessage()}
        return orjson.dumps({"time": CLOCK.stamp(record.created), **fields}).decode()


def configure() -> None:
    """Write the access log as JSON to standard error through ``BUFFER``, unless logging
    already sends it somewhere (an operator's configuration)."""
    global BUFFER
    ACCESS.setLevel(logging.INFO)
    if ACCESS.handlers or BUFFER is not None:
        return
    ACCESS.propagate = False
    BUFFER = Buffer(sys.stderr)
    atexit.register(BUFFER.flush)


def flush() -> None:
    """Write the lines waiting (the worker calls it on a timer and when it stops)."""
    if BUFFER is not None:
        BUFFER.flush()


def log_request(
    method: str,
    route: str,
    status: int,
    seconds: float,
    request: str,
    token_id: int | None,
    provider_id: int | None,
) -> bool:
    """Log one answered request; whether the buffer is full and should be flushed."""
    if not ACCESS.isEnabledFor(logging.INFO):
        return False
    # Milliseconds to the microsecond, as ``round(x, 3)`` gives, for a third of its cost.
    duration = int(seconds * 1_000_000) / 1000
    if BUFFER is not None and not ACCESS.handlers:
        line = orjson.dumps(
            {
                "time": CLOCK.stamp(time.time()),
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": duration,
                "request_id": request,
                "token_id": token_id,
                "provider_id": provider_id,
            },
            option=orjson.OPT_APPEND_NEWLINE,
        )
        lines = BUFFER.lines  # ``Buffer.add``, without a call of its own
        lines.append(line.decode())
        return len(lines) >= FLUSH_LINES
    entry = {
        "method": method,
        "route": route,
        "status": status,
        "duration_ms": duration,
        "request_id": request,
        "token_id": token_id,
        "provider_id": provider_id,
    }
    ACCESS.info(entry)
    return False
