"""The ASGI application: routing and wiring of the request path.

request -> parse query (Projection) -> authenticate (Principal) -> resolve access
(Access) -> load -> render -> bytes. The handler only wires those stages together;
it is a plain ASGI callable because the hot path should not pay for a framework's
routing and dependency machinery (see docs/architecture.md).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import orjson
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from coursebook.access import resolve
from coursebook.auth import authenticate
from coursebook.db import create_db_engine
from coursebook.errors import ApiError, invalid
from coursebook.graph import RenderContext
from coursebook.projection import compile_projection, require_absent
from coursebook.service import retrieve_course_session
from coursebook.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

logger = logging.getLogger("coursebook")

COURSE_SESSION_PATH = re.compile(r"^/api/v2/+course_sessions/([^/]*)/?$")
HEALTH_PATH = re.compile(r"^/healthz/?$")
READY_PATH = re.compile(r"^/readyz/?$")
ALLOWED_METHODS = ("GET", "HEAD")
VALID_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
FORMATS = ("json",)
JSON_TYPE = b"application/json"


@dataclass(frozen=True, slots=True)
class Request:
    """The parts of an HTTP request the handlers use."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    base_url: str

    def param(self, name: str) -> str:
        """A list parameter: repeated occurrences joined with commas."""
        return ",".join(self.query.get(name, ()))


def _parse_request(scope: Scope, public_url: str | None) -> Request:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    query = parse_qs(
        scope.get("query_string", b"").decode("latin-1"),
        keep_blank_values=True,
        encoding="utf-8",
        errors="replace",
    )
    if public_url:
        base_url = public_url.rstrip("/")
    else:
        host = headers.get("host", "")
        if not VALID_HOST.match(host):
            server = scope.get("server") or ("localhost", None)
            host = server[0] if server[1] in (None, 80, 443) else f"{server[0]}:{server[1]}"
        base_url = f"{scope.get('scheme', 'http')}://{host}"
    return Request(scope["method"], scope["path"], query, headers, base_url)


class CoursebookApp:
    """The ASGI callable, holding the settings and the database engine."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request: Request | None = None
        try:
            request = _parse_request(scope, self.settings.public_url)
            status, body, headers = self.handle(request)
        except ApiError as error:
            status, body, headers = error.status, orjson.dumps(error.body()), error.headers
        except Exception:
            request_id = uuid.uuid4().hex
            logger.exception("Unhandled error, request id %s", request_id)
            status, body = 500, orjson.dumps(ApiError(500, "server_error").body())
            headers = {"X-Request-ID": request_id}
        raw_headers = [
            (b"content-type", JSON_TYPE),
            (b"content-length", str(len(body)).encode()),
            *[(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
        ]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        head = request is not None and request.method == "HEAD"
        await send({"type": "http.response.body", "body": b"" if head else body})

    def handle(self, request: Request) -> tuple[int, bytes, dict[str, str]]:
        """Route ``request``; raises ``ApiError`` for every error answer."""
        match = COURSE_SESSION_PATH.match(request.path)
        route: Callable[..., bytes] | None = None
        if match:
            route = self.course_session
        elif HEALTH_PATH.match(request.path):
            route = self.healthz
        elif READY_PATH.match(request.path):
            route = self.readyz
        if route is None:
            raise ApiError(404, "not_found")
        if request.method not in ALLOWED_METHODS:
            raise ApiError(
                405,
                "method_not_allowed",
                f'Method "{request.method}" not allowed.',
                headers={"Allow": ", ".join(ALLOWED_METHODS)},
            )
        args = match.groups() if match else ()
        return 200, route(request, *args), {}

    def healthz(self, _request: Request) -> bytes:
        return orjson.dumps({"status": "ok"})

    def readyz(self, _request: Request) -> bytes:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except (OperationalError, DBAPIError, PoolTimeout) as error:
            logger.warning("Readiness check failed: %s", type(error).__name__)
            raise ApiError(503, "service_unavailable", "The database does not answer.") from None
        return orjson.dumps({"status": "ok"})

    def course_session(self, request: Request, raw_id: str) -> bytes:
        if not raw_id.isascii() or not raw_id.isdigit() or len(raw_id) > 19:
            raise ApiError(404, "not_found")
        output = request.param("format") or "json"
        if output not in FORMATS:
            raise invalid("format", f"'{output}' is not a valid format. Valid: json.")
        projection = compile_projection(
            "course_session", request.param("expand"), request.param("fields")
        )
        try:
            with self.engine.connect() as conn:
                principal = authenticate(
                    conn, request.headers.get("authorization"), datetime.now(UTC)
                )
                access = resolve(
                    principal,
                    request.headers.get("teamup-provider-id"),
                    request.headers.get("teamup-request-mode"),
                )
                require_absent(projection, access.hidden_fields)
                ctx = RenderContext(request.base_url, access.redact_permissions)
                body = retrieve_course_session(
                    conn,
                    access,
                    int(raw_id),
                    projection,
                    budget=self.settings.max_expanded_objects,
                    ctx=ctx,
                )
        except (OperationalError, PoolTimeout) as error:
            logger.warning("Database unavailable: %s", type(error).__name__)
            raise ApiError(503, "service_unavailable") from None
        return orjson.dumps(body)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.engine.dispose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(settings: Settings | None = None) -> CoursebookApp:
    """The application for ``settings`` (default: from the environment)."""
    settings = settings or Settings()
    logging.basicConfig(level=settings.log_level.upper())
    engine = create_db_engine(settings.database_url, pool_size=settings.database_pool_size)
    return CoursebookApp(settings, engine)
