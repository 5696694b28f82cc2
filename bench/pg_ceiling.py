"""The PostgreSQL ceiling: a bare ASGI app that reads one course session by id with an
asyncpg pool and answers it as JSON, under the same uvicorn as coursebook.

What a request costs when it is nothing but one statement over the same driver: the
figure coursebook on PostgreSQL is compared with, beside the plain ceiling.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import asyncpg
import orjson

DSN = os.environ.get("CEILING_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
QUERY = "SELECT * FROM course_sessions WHERE id = $1"
HEADERS = [(b"content-type", b"application/json")]
_pools: list[asyncpg.Pool] = []


async def app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _pools.append(await asyncpg.create_pool(DSN, min_size=10, max_size=20))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await _pools[0].close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    last = scope["path"].rstrip("/").rsplit("/", 1)[-1]
    body = b"{}"
    if last.isdigit():
        row = await _pools[0].fetchrow(QUERY, int(last))
        body = orjson.dumps(dict(row) if row else {})
    headers = [*HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
