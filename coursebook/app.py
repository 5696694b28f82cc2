"""The ASGI application: routing and wiring of the request path.

request -> authenticate (Principal) -> resolve access (Access) -> parse query
(Projection) -> load -> render -> bytes. The handler only wires those stages together;
it is a plain ASGI callable because the hot path should not pay for a framework's
routing and dependency machinery (see docs/architecture.md).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlencode

import swagger_ui
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles

from coursebook.access import Access, resolve
from coursebook.auth import authenticate
from coursebook.db import Connections, create_db_engine
from coursebook.errors import ApiError, not_found
from coursebook.formats import JSON, Format, negotiate
from coursebook.graph import RenderContext
from coursebook.listing import LISTINGS, parse_list_query
from coursebook.memo import Memo, memo
from coursebook.openapi import document_bytes
from coursebook.projection import Projection, compile_projection, require_absent
from coursebook.service import list_resources, retrieve_course_session
from coursebook.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

logger = logging.getLogger("coursebook")

#: Swagger UI's assets ship in the swagger-ui-py package: /docs works offline.
SWAGGER_UI_ASSETS = Path(swagger_ui.__file__).with_name("static")
DOCS_ASSETS_PREFIX = "/docs/assets/"

COURSE_SESSION_PATH = re.compile(r"^/api/v2/+course_sessions/([^/]*)/?$")
LIST_PATH = re.compile(r"^/api/v2/+(course_sessions|instructors|venue_rooms)/?$")
ALLOWED_METHODS = ("GET", "HEAD")
VALID_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
HTML = b"text/html; charset=utf-8"
DOCS_PAGE = (Path(__file__).with_name("docs.html")).read_bytes()


class Request(NamedTuple):
    """The parts of an HTTP request the handlers use.

    Request and Response are named tuples, immutable like frozen dataclasses but
    built several times faster, and one of each is built per request.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    base_url: str

    def param(self, name: str) -> str:
        """A list parameter: repeated occurrences joined with commas."""
        return ",".join(self.query.get(name, ()))

    def last(self, name: str) -> str | None:
        """A single-valued parameter: its last occurrence."""
        values = self.query.get(name)
        return values[-1] if values else None


class Response(NamedTuple):
    """What a route answers: a body already encoded, its type, extra headers."""

    body: bytes
    content_type: bytes
    status: int = 200
    headers: tuple[tuple[bytes, bytes], ...] = ()


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


def _page_url(request: Request, path: str, page: int) -> str:
    """The absolute URL of ``page``, keeping every other query parameter."""
    query = {name: values for name, values in request.query.items() if name != "page"}
    query["page"] = [str(page)]
    return f"{request.base_url}{path}?{urlencode(query, doseq=True)}"


def _error_response(error: ApiError, fmt: Format) -> Response:
    headers = tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items())
    return Response(fmt.encode(error.body()), fmt.content_type, error.status, headers)


class CoursebookApp:
    """The ASGI callable, holding the settings and the database engine."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.connections = Connections(engine)
        self.static = StaticFiles(directory=SWAGGER_UI_ASSETS)
        self.routes: list[tuple[re.Pattern[str], Callable[..., Response]]] = [
            (COURSE_SESSION_PATH, self.course_session),
            (LIST_PATH, self.listing),
            (re.compile(r"^/healthz/?$"), self.healthz),
            (re.compile(r"^/readyz/?$"), self.readyz),
            (re.compile(r"^/openapi\.json$"), self.openapi),
            (re.compile(r"^/docs/?$"), self.docs),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"].startswith(DOCS_ASSETS_PREFIX) and scope["method"] in ALLOWED_METHODS:
            asset = {**scope, "path": scope["path"][len(DOCS_ASSETS_PREFIX) - 1 :]}
            try:
                await self.static(asset, receive, send)
                return
            except HTTPException:
                pass  # no such asset: answered below as an unknown route, in the error body
        head = scope["method"] == "HEAD"
        fmt = JSON
        try:
            request = _parse_request(scope, self.settings.public_url)
            fmt = negotiate(request.last("format"), request.headers.get("accept"))
            response = self.handle(request, fmt)
        except ApiError as error:
            response = _error_response(error, fmt)
        except Exception:
            request_id = uuid.uuid4().hex
            logger.exception("Unhandled error, request id %s", request_id)
            response = _error_response(
                ApiError(500, "server_error", headers={"X-Request-ID": request_id}), fmt
            )
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [
                    (b"content-type", response.content_type),
                    (b"content-length", str(len(response.body)).encode()),
                    *response.headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"" if head else response.body})

    def handle(self, request: Request, fmt: Format) -> Response:
        """Route ``request``; raises ``ApiError`` for every error answer."""
        for pattern, route in self.routes:
            match = pattern.match(request.path)
            if match is None:
                continue
            if request.method not in ALLOWED_METHODS:
                raise ApiError(
                    405,
                    "method_not_allowed",
                    f'Method "{request.method}" not allowed.',
                    headers={"Allow": ", ".join(ALLOWED_METHODS)},
                )
            return route(request, fmt, *match.groups())
        raise not_found()

    def healthz(self, _request: Request, fmt: Format) -> Response:
        return Response(fmt.encode({"status": "ok"}), fmt.content_type)

    def readyz(self, _request: Request, fmt: Format) -> Response:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except (OperationalError, DBAPIError, PoolTimeout) as error:
            logger.warning("Readiness check failed: %s", type(error).__name__)
            raise ApiError(503, "service_unavailable", "The database does not answer.") from None
        return Response(fmt.encode({"status": "ok"}), fmt.content_type)

    def openapi(self, _request: Request, _fmt: Format) -> Response:
        return Response(document_bytes(), JSON.content_type)

    def docs(self, _request: Request, _fmt: Format) -> Response:
        return Response(DOCS_PAGE, HTML)

    @contextmanager
    def _authorized(self, request: Request) -> Iterator[tuple[Connection, Access, Memo | None]]:
        """A connection, the request's access decision and the connection's memo.

        Authentication and access come first: a caller without valid credentials
        learns nothing about its parameters. A database that does not answer is a
        503, whatever stage it fails in.
        """
        try:
            with self.connections.connect() as conn:
                remembered = memo(conn)
                principal = authenticate(
                    conn, request.headers.get("authorization"), datetime.now(UTC), remembered
                )
                provider_header = request.headers.get("teamup-provider-id")
                mode_header = request.headers.get("teamup-request-mode")
                key = ("access", principal.token_id, provider_header, mode_header)
                access = None if remembered is None else remembered.get(key)
                if access is None:
                    access = resolve(principal, provider_header, mode_header)
                    if remembered is not None:
                        remembered[key] = access
                yield conn, access, remembered
        except (OperationalError, PoolTimeout) as error:
            logger.warning("Database unavailable: %s", type(error).__name__)
            raise ApiError(503, "service_unavailable") from None

    def _projection(self, request: Request, resource: str, access: Access) -> Projection:
        """The request's ``expand``/``fields`` for ``resource``, as ``access`` allows."""
        projection = compile_projection(resource, request.param("expand"), request.param("fields"))
        require_absent(projection, access.hidden_fields, request.param("fields"))
        return projection

    def course_session(self, request: Request, fmt: Format, raw_id: str) -> Response:
        if not raw_id.isascii() or not raw_id.isdigit() or len(raw_id) > 19:
            raise not_found()
        with self._authorized(request) as (conn, access, _memo):
            body = retrieve_course_session(
                conn,
                access,
                int(raw_id),
                self._projection(request, "course_session", access),
                budget=self.settings.max_expanded_objects,
                ctx=RenderContext(request.base_url, access.redact_permissions),
            )
        return Response(fmt.encode(body), fmt.content_type)

    def listing(self, request: Request, fmt: Format, collection: str) -> Response:
        listing = LISTINGS[f"/api/v2/{collection}"]
        with self._authorized(request) as (conn, access, remembered):
            projection = self._projection(request, listing.resource.name, access)
            query = parse_list_query(listing, request.query, access)
            page = list_resources(
                conn,
                access,
                listing,
                query,
                projection,
                budget=self.settings.max_expanded_objects,
                ctx=RenderContext(request.base_url, access.redact_permissions),
                memo=remembered,
            )
        last_page = max(1, -(-page.count // query.page_size))
        body = {
            "count": page.count,
            "next": _page_url(request, listing.path, query.page + 1)
            if query.page < last_page
            else None,
            "previous": _page_url(request, listing.path, min(query.page - 1, last_page))
            if query.page > 1
            else None,
            "results": page.results,
        }
        return Response(fmt.encode(body), fmt.content_type)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.connections.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(settings: Settings | None = None) -> CoursebookApp:
    """The application for ``settings`` (default: from the environment)."""
    settings = settings or Settings()
    logging.basicConfig(level=settings.log_level.upper())
    engine = create_db_engine(settings.database_url, pool_size=settings.database_pool_size)
    return CoursebookApp(settings, engine)
