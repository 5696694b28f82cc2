"""The ceiling: a minimal ASGI app answering a fixed course-session body.

Served by the same uvicorn with the same workers and connections as coursebook, it
measures what the server and the load generator cost on their own; the benchmark's
targets are ratios to it.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

BODY = Path(os.environ.get("CEILING_BODY_FILE", "/dev/null")).read_bytes() or b"{}"
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
