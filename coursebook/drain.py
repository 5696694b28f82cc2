"""Draining before a worker stops, so that a rolling deploy fails no request.

uvicorn, on SIGTERM, stops accepting at once and lets the requests in flight complete.
But a load balancer learns that a backend is going only from its readiness probe, so
until the probe fails it keeps sending requests that would be refused. So the first
SIGTERM starts a drain instead: for ``drain_seconds`` the worker keeps serving,
``/readyz`` answers 503 and every answer carries ``Connection: close`` (clients move
their keep-alive connections elsewhere); then uvicorn's own handler runs, and its
graceful shutdown follows. A second SIGTERM skips what is left of the drain. SIGINT (a
developer's Ctrl-C) stops at once, as before.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import threading
from types import FrameType
from typing import Any

logger = logging.getLogger("coursebook")


class Drain:
    """A worker's drain: whether it has begun, and the wrapping of the signal handler
    that begins it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.draining = False

    def install(self) -> None:
        """Make the next SIGTERM begin the drain, then call the handler installed now
        (uvicorn's) once the drain is over. Only a server's main thread receives signals;
        elsewhere (an app in a test's thread), or with no drain, nothing changes."""
        if self.seconds <= 0 or threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)
        if not callable(previous):
            return
        loop = asyncio.get_running_loop()
        signal.signal(signal.SIGTERM, functools.partial(self._begin, loop, previous))

    def _begin(
        self,
        loop: asyncio.AbstractEventLoop,
        then: Any,
        signum: int,
        frame: FrameType | None,
    ) -> None:
        if self.draining:
            then(signum, frame)
            return
        self.draining = True
        logger.info("Draining for %g s before shutting down", self.seconds)
        # A signal handler runs between two bytecodes of the loop's thread: the loop is
        # told through its thread-safe entry, and the timer set from inside it.
        loop.call_soon_threadsafe(loop.call_later, self.seconds, then, signum, None)
