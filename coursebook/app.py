"""The ASGI application: the transport around the use cases.

It parses the request, finds its route in the route table, negotiates the format,
calls one use case (``service.py``) and encodes what it returns. It is a plain ASGI
callable because the hot path should not pay for a framework's routing and
dependency machinery (see docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any, NamedTuple, assert_never
from urllib.parse import parse_qs

import swagger_ui
from sqlalchemy.util import greenlet_spawn
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles
from xxhash import xxh3_128_hexdigest

from coursebook import accesslog, metrics
from coursebook.db import Connections, create_serving_engine
from coursebook.drain import Drain
from coursebook.errors import ApiError, invalid, not_found
from coursebook.formats import JSON, Format, negotiate
from coursebook.hosts import AllowedHosts, refused_host
from coursebook.openapi import document_bytes
from coursebook.ratelimit import Admission, RateLimiter, throttled
from coursebook.routes import (
    IGNORED_PARAMETERS,
    ROUTES,
    Document,
    ListOf,
    Probe,
    Retrieve,
    Route,
    ignored_parameters,
)
from coursebook.service import Credentials, Service, Trace
from coursebook.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

logger = logging.getLogger("coursebook")

#: Swagger UI's assets ship in the swagger-ui-py package: /docs works offline. They are
#: files under a prefix rather than routes of the table, as a starlette ``Mount`` is.
SWAGGER_UI_ASSETS = Path(swagger_ui.__file__).with_name("static")
DOCS_ASSETS_PREFIX = "/docs/assets/"

ALLOWED_METHODS = ("GET", "HEAD")
#: Headers a request may carry once (who calls, for which provider, in which mode), with
#: the names TeamUp's documentation gives them.
SINGLE_HEADERS = {
    b"authorization": "Authorization",
    b"teamup-provider-id": "TeamUp-Provider-ID",
    b"teamup-request-mode": "Teamup-Request-Mode",
}
HTML = b"text/html; charset=utf-8"
DOCS_PAGE = (Path(__file__).with_name("docs.html")).read_bytes()
#: Prometheus scrapes here; not a route of the API (nor of its OpenAPI document).
METRICS_PATH = "/metrics"
#: How often a worker publishes what it tallied (``metrics.Publisher``).
PUBLISH_SECONDS = 1.0


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


def _parse_request(scope: Scope, public_url: str | None, hosts: AllowedHosts) -> Request:
    raw_headers = scope["headers"]
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw_headers}
    if len(headers) < len(raw_headers):
        _refuse_repeated(raw_headers)
    query_string = scope.get("query_string")
    query = (
        parse_qs(
            query_string.decode("latin-1"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="replace",
        )
        if query_string
        else {}
    )
    host = headers.get("host") or _server_host(scope)
    if not hosts.allows(host) and not _is_probe(scope["path"]):
        raise refused_host(host)
    base_url = public_url.rstrip("/") if public_url else f"{scope.get('scheme', 'http')}://{host}"
    return Request(scope["method"], scope["path"], query, headers, base_url)


def _server_host(scope: Scope) -> str:
    """The address the request came in on, as a ``Host`` header would name it (HTTP/1.0
    requests may carry none)."""
    server = scope.get("server") or ("localhost", None)
    return server[0] if server[1] in (None, 80, 443) else f"{server[0]}:{server[1]}"


def _is_probe(path: str) -> bool:
    """Whether ``path`` is ``/healthz`` or ``/readyz``: load balancers probe them by
    address, and they build no link, so they answer whatever the ``Host``."""
    found = ROUTES.match(path)
    return found is not None and isinstance(found[0].endpoint, Probe)


def _refuse_repeated(raw_headers: list[tuple[bytes, bytes]]) -> None:
    """400 when a header saying who calls, or for what, is given more than once: proxies
    commonly read the first and servers the last, so neither is guessed."""
    names = [name.lower() for name, _ in raw_headers]
    for name, shown in SINGLE_HEADERS.items():
        if names.count(name) > 1:
            raise invalid(shown, f"The {shown} header was sent more than once; send it once.")


#: What an answer about the caller's data carries: it depends on these request headers,
#: and no shared cache may keep it (it answers one caller's credentials).
PRIVATE = (
    (b"vary", b"Accept, Authorization, TeamUp-Provider-ID, Teamup-Request-Mode"),
    (b"cache-control", b"private"),
)


def entity_tag(body: bytes) -> bytes:
    """A strong entity tag of ``body``: its 128-bit XXH3 digest, quoted.

    XXH3 hashes a full expansion's body in about a microsecond; a strong tag changes
    whenever one byte of the representation does.
    """
    return b'"' + xxh3_128_hexdigest(body).encode() + b'"'


def none_match(header: str | None, etag: bytes) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (or ``*``): the client holds it.

    RFC 9110 compares weakly here, so ``W/"..."`` names the same tag.
    """
    if not header:
        return False
    tag = etag.decode()
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == tag:
            return True
    return False


def _error_response(error: ApiError, fmt: Format) -> Response:
    headers = tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items())
    return Response(fmt.encode(error.body()), fmt.content_type, error.status, (*headers, *PRIVATE))


class CoursebookApp:
    """The ASGI callable, holding the settings and the use cases over the database."""

    def __init__(self, settings: Settings, connections: Connections) -> None:
        self.settings = settings
        self.hosts = AllowedHosts(settings.allowed_hosts, settings.public_url)
        self.drain = Drain(settings.drain_seconds)
        self.connections = connections
        self.engine = connections.engine
        self.service = Service(connections, budget=settings.max_expanded_objects)
        self.static = StaticFiles(directory=SWAGGER_UI_ASSETS)
        #: PostgreSQL's driver is asynchronous: a request's database work runs in a
        #: greenlet that suspends at each round trip while the loop serves others.
        self.suspends = self.engine.dialect.is_async
        self.limiter = RateLimiter.from_settings(settings)
        kept = None if connections.keep else (lambda: (connections.opened, connections.in_use))
        self.publisher = metrics.Publisher(self.engine, kept) if settings.metrics else None
        #: The tasks that publish the metrics and write the access log, on timers.
        self._timers: list[asyncio.Task[None]] = []
        if settings.access_log:
            accesslog.configure()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        request_id = accesslog.request_id(_raw_header(scope, b"x-request-id"))
        label = metrics.UNMATCHED
        if scope["path"].startswith(DOCS_ASSETS_PREFIX) and scope["method"] in ALLOWED_METHODS:
            asset = {**scope, "path": scope["path"][len(DOCS_ASSETS_PREFIX) - 1 :]}
            statuses: list[int] = []

            async def send_asset(message: Message) -> None:
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])
                    message["headers"] = [
                        *message["headers"],
                        (b"x-request-id", request_id.encode("latin-1")),
                    ]
                await send(message)

            try:
                await self.static(asset, receive, send_asset)
                self._observe(scope, DOCS_ASSETS_PREFIX, statuses[0], started, request_id, None)
                return
            except HTTPException:
                pass  # no such asset: answered below as an unknown route, in the error body
        head = scope["method"] == "HEAD"
        fmt = JSON
        request: Request | None = None
        admission: Admission | None = None
        trace = Trace()
        try:
            request = _parse_request(scope, self.settings.public_url, self.hosts)
            fmt = negotiate(request.last("format"), request.headers.get("accept"))
            found = ROUTES.match(request.path)
            if found is not None:
                label = found[0].path
                if self.limiter is not None and isinstance(found[0].endpoint, Retrieve | ListOf):
                    admission = await self.limiter.admit(
                        request.headers.get("authorization"), _client_address(scope)
                    )
                    if admission.verdict is not None and not admission.verdict.allowed:
                        raise throttled(admission.verdict)
            elif self.publisher is not None and request.path == METRICS_PATH:
                label = METRICS_PATH
            if label == METRICS_PATH and request.method in ALLOWED_METHODS:
                assert self.publisher is not None
                self.publisher.publish()
                response = Response(metrics.exposition(), metrics.CONTENT_TYPE)
            elif self.suspends:
                response = await greenlet_spawn(self.handle, request, fmt, found, trace)
            else:
                response = self.handle(request, fmt, found, trace)
        except ApiError as error:
            response = _error_response(error, fmt)
        except Exception:
            logger.exception("Unhandled error, request id %s", request_id)
            response = _error_response(ApiError(500, "server_error"), fmt)
        status, body = response.status, response.body
        observed = [(b"x-request-id", request_id.encode("latin-1"))]
        if admission is not None and admission.verdict is not None:
            observed += admission.verdict.headers()
        headers = [
            (b"content-type", response.content_type),
            (b"content-length", str(len(body)).encode()),
            *response.headers,
            *observed,
        ]
        if status == 200:
            etag = (b"etag", entity_tag(body))
            if request is not None and none_match(request.headers.get("if-none-match"), etag[1]):
                # Not modified: the tag and the answer's own headers, no body to describe.
                status, body, headers = 304, b"", [etag, *response.headers, *observed]
            else:
                headers.insert(2, etag)
        if self.drain.draining:  # this worker stops soon: clients reconnect elsewhere
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else body})
        self._observe(scope, label, status, started, request_id, trace)
        if admission is not None and admission.unproven is not None:
            assert self.limiter is not None
            await self.limiter.settle(admission, status)

    def _observe(
        self,
        scope: Scope,
        route: str,
        status: int,
        started: float,
        request_id: str,
        trace: Trace | None,
    ) -> None:
        """Count an answered request in the metrics and write its access-log line."""
        seconds = time.perf_counter() - started
        if self.publisher is not None:
            metrics.observe_request(route, status, seconds)
        if self.settings.access_log:
            token_id, provider_id = (
                (None, None) if trace is None else (trace.token_id, trace.provider_id)
            )
            if accesslog.log_request(
                scope["method"], route, status, seconds, request_id, token_id, provider_id
            ):
                accesslog.flush()

    def handle(
        self,
        request: Request,
        fmt: Format,
        found: tuple[Route, dict[str, str]] | None,
        trace: Trace | None = None,
    ) -> Response:
        """Run the endpoint of the route ``request`` matched (``found``), with its path
        parameters converted; raises ``ApiError`` for every error answer.

        Every answer of a route, errors included, names the query parameters it ignored.
        """
        if found is None:
            raise not_found()
        route, raw = found
        ignored = ignored_parameters(route.endpoint, request.query) if request.query else None
        try:
            if request.method not in ALLOWED_METHODS:
                raise ApiError(
                    405,
                    "method_not_allowed",
                    f'Method "{request.method}" not allowed.',
                    headers={"Allow": ", ".join(ALLOWED_METHODS)},
                )
            try:
                params = route.convert(raw)
            except ValueError:
                # A parameter that is no id names nothing; the use case says so (404)
                # after checking credentials, so that a caller without them learns nothing.
                params = dict.fromkeys(raw)
            response = self.endpoint(route, params, request, fmt, trace)
        except ApiError as error:
            if ignored is not None:
                error.headers[IGNORED_PARAMETERS] = ignored
            raise
        if ignored is None:
            return response
        header = (IGNORED_PARAMETERS.encode("latin-1"), ignored.encode("latin-1"))
        return response._replace(headers=(*response.headers, header))

    def endpoint(
        self,
        route: Route,
        params: dict[str, Any],
        request: Request,
        fmt: Format,
        trace: Trace | None = None,
    ) -> Response:
        """What ``route``'s endpoint answers to ``request``."""
        endpoint = route.endpoint
        match endpoint:
            case Retrieve(resource=resource):
                body = self.service.retrieve(
                    _credentials(request),
                    request.base_url,
                    resource,
                    params["id"],
                    request.query,
                    trace,
                )
            case ListOf(listing=listing):
                body = self.service.list(
                    _credentials(request), request.base_url, listing, request.query, trace
                )
            case Probe(database=database):
                if database and self.drain.draining:
                    raise ApiError(503, "service_unavailable", "The server is shutting down.")
                if database:
                    self.service.ready()
                body = {"status": "ok"}
            case Document(kind="openapi"):
                return Response(document_bytes(), JSON.content_type)
            case Document():
                return Response(DOCS_PAGE, HTML)
            case _:
                assert_never(endpoint)
        private = isinstance(endpoint, Retrieve | ListOf)
        return Response(fmt.encode(body), fmt.content_type, headers=PRIVATE if private else ())

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # What exists now (modules, the graph, compiled statements) lives as long as
                # the process: out of the collector's sight, a full collection scans only
                # what requests make, a millisecond instead of tens (a p99 pause under load).
                gc.collect()
                gc.freeze()
                self.drain.install()
                self.connections.serve_on(asyncio.get_running_loop())
                if self.publisher is not None:
                    self._timers.append(
                        asyncio.create_task(_every(PUBLISH_SECONDS, self.publisher.publish))
                    )
                if self.settings.access_log:
                    self._timers.append(
                        asyncio.create_task(_every(accesslog.FLUSH_SECONDS, accesslog.flush))
                    )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for timer in self._timers:
                    timer.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await timer
                if self.publisher is not None:
                    self.publisher.publish()
                    self.publisher.close()
                accesslog.flush()
                if self.limiter is not None:
                    await self.limiter.close()
                self.connections.serve_on(None)
                if self.suspends:
                    await greenlet_spawn(self.connections.close)
                else:
                    self.connections.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _every(seconds: float, work: Callable[[], None]) -> None:
    """Do ``work`` every ``seconds``, for the life of the worker (until cancelled)."""
    while True:
        await asyncio.sleep(seconds)
        work()


def _raw_header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower-case, as ASGI gives names)."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _client_address(scope: Scope) -> str:
    """The client's address: the peer's, or the one a trusted proxy named (uvicorn's
    proxy headers, ``COURSEBOOK_TRUSTED_PROXIES``)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _credentials(request: Request) -> Credentials:
    headers = request.headers
    return Credentials(
        headers.get("authorization"),
        headers.get("teamup-provider-id"),
        headers.get("teamup-request-mode"),
    )


def create_app(settings: Settings | None = None) -> CoursebookApp:
    """The application for ``settings`` (default: from the environment)."""
    settings = settings or Settings()
    logging.basicConfig(level=settings.log_level.upper())
    engine = create_serving_engine(settings)
    connections = Connections(
        engine, size=settings.database_pool_size, wait=settings.database_pool_timeout
    )
    return CoursebookApp(settings, connections)
