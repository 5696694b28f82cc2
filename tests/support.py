"""What the tests share: databases, the demo, a server, and a client checking the contract.

Tests run against SQLite always and against PostgreSQL when
``COURSEBOOK_TEST_DATABASE_URL`` names a server (a scratch database is created on it
and dropped afterwards). Fixtures using these helpers are declared in ``conftest.py``;
test modules import from here, never from each other.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, MutableMapping
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn
from anyio.from_thread import BlockingPortal, start_blocking_portal
from sqlalchemy import (
    CursorResult,
    Engine,
    and_,
    create_engine,
    event,
    exists,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from coursebook import models as m
from coursebook.app import CoursebookApp, create_app
from coursebook.db import StatementCounter, create_db_engine
from coursebook.demo import Manifest, generate
from coursebook.migrate import upgrade
from coursebook.routes import ROUTES, Document, Retrieve
from coursebook.settings import Settings
from coursebook.tokens import hash_token
from tests.contract import validate
from tests.served import as_xml_values, parse_xml, validate_served

POSTGRES_URL = os.environ.get("COURSEBOOK_TEST_DATABASE_URL")
BACKENDS = ["sqlite", "postgresql"]


@contextmanager
def scratch_postgres(server_url: str, template: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database on ``server_url``'s server, dropped on exit: empty, or a
    copy of the database named ``template`` (which nothing may be connected to)."""
    name = f"coursebook_test_{uuid.uuid4().hex[:12]}"
    # No pool: a test may restart the server, and the drop must not use a dead connection.
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    copy = f' TEMPLATE "{template}"' if template else ""
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"{copy}'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def empty_database(backend: str, directory: Any) -> Iterator[str]:
    """The URL of a new, empty database of ``backend``."""
    if backend == "sqlite":
        yield f"sqlite:///{directory}/coursebook-{uuid.uuid4().hex[:8]}.sqlite3"
        return
    if not POSTGRES_URL:
        pytest.skip("COURSEBOOK_TEST_DATABASE_URL is not set: PostgreSQL tests skipped")
    with scratch_postgres(POSTGRES_URL) as url:
        yield url


@contextmanager
def database_copy(url: str, directory: Any) -> Iterator[str]:
    """The URL of a new database holding what the one at ``url`` holds.

    Nothing may be connected to ``url``: a SQLite file is copied whole (its write-ahead
    log checkpointed away when its last connection closed), a PostgreSQL database is
    its copy's template.
    """
    source = make_url(url)
    if source.get_backend_name() == "sqlite":
        assert source.database is not None
        assert not Path(f"{source.database}-wal").exists(), "the template is still open"
        target = Path(directory) / f"coursebook-{uuid.uuid4().hex[:8]}.sqlite3"
        shutil.copyfile(source.database, target)
        yield f"sqlite:///{target}"
        return
    assert POSTGRES_URL is not None
    with scratch_postgres(POSTGRES_URL, template=source.database) as copy:
        yield copy


@dataclass(frozen=True)
class Demo:
    """A migrated database holding the small demo dataset (seed 42)."""

    url: str
    manifest: Manifest
    engine: Engine


@dataclass(frozen=True)
class DemoTemplate:
    """A database holding the demo that nothing is connected to: demos are its copies."""

    url: str
    manifest: Manifest


@contextmanager
def build_demo_template(backend: str, directory: Any) -> Iterator[DemoTemplate]:
    """Migrate a new database of ``backend``, generate the demo in it and close it."""
    with empty_database(backend, directory) as url:
        upgrade(url)
        engine = create_db_engine(url)
        manifest = generate(engine, seed=42, scale="small", progress=False)
        engine.dispose()
        yield DemoTemplate(url, manifest)


@contextmanager
def demo_copy(template: DemoTemplate, directory: Any, *, read_only: bool = False) -> Iterator[Demo]:
    """A new demo database copied from ``template``; ``read_only``: its engine refuses
    to write (the app serving it has its own engine)."""
    with database_copy(template.url, directory) as copy:
        engine = create_db_engine(copy)
        if read_only:
            event.listen(engine, "connect", _refuse_writes)
        try:
            yield Demo(copy, template.manifest, engine)
        finally:
            engine.dispose()


def _refuse_writes(dbapi_connection: Any, _record: Any) -> None:
    """Make a new connection read-only: a write through it fails with a driver error."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute("PRAGMA query_only = ON")
        return
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET default_transaction_read_only = on")
    dbapi_connection.autocommit = autocommit


class Api:
    """A client of one coursebook app that checks every answer against the contract.

    ``in_process`` makes one over the ASGI app itself; ``live_server`` one over a
    loopback socket, for what only the wire shows. Either way the contract check, and
    the JSON twin it asks for, go through the same client.
    """

    def __init__(self, client: httpx.Client, app: CoursebookApp) -> None:
        self.client = client
        self.app = app
        #: Counts the SQL statements of every request this app serves.
        self.counter = StatementCounter(app.engine)
        #: The scheme and host requests are sent to, as absolute URLs in answers show it.
        self.base_url = str(client.base_url).rstrip("/")
        self._served: bytes | None = None
        client.event_hooks = {"response": [self.check_contract]}

    def get(
        self,
        path: str,
        token: str | None = None,
        *,
        scheme: str = "Bearer",
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"{scheme} {token}"
        return self.client.get(path, params=params, headers=sent)

    @property
    def backend(self) -> str:
        """The served database's dialect: ``sqlite`` or ``postgresql``."""
        return str(self.app.engine.dialect.name)

    #: The statements of a plain retrieve with a warm memo: the session alone, beside
    #: the write count that says the memo is current (``coursebook.memo``).
    plain_statements = 1

    def statements(self, path: str, token: str, params: dict[str, str]) -> tuple[int, Any]:
        """The number of SQL statements one request ran, and its JSON body.

        The same request is made once before, so that the connection's memo (SQLite)
        holds the token and any count, as it does in steady use; ``tests/test_memo.py``
        counts the statements of a cold memo.
        """
        assert self.get(path, token, params=params).status_code == 200
        before = self.counter.count
        response = self.get(path, token, params=params)
        assert response.status_code == 200, response.text
        return self.counter.count - before, response.json()

    def served_document(self) -> bytes:
        """The app's own /openapi.json, fetched once."""
        if self._served is None:
            response = self.client.get("/openapi.json")
            assert response.status_code == 200, response.text
            self._served = response.content
        return self._served

    def check_contract(self, response: httpx.Response) -> None:
        """Validate every response against the served /openapi.json and the contract.

        JSON bodies are validated directly (relaxed for ``fields``); an XML body must
        parse back, by DRF's rules, to the JSON of the same request, which is validated
        (by this same hook, as the twin is answered).
        """
        response.read()
        request = response.request
        found = ROUTES.match(request.url.path)
        route = None if found is None else found[0]
        if request.method == "HEAD" or (route is not None and isinstance(route.endpoint, Document)):
            return
        content_type = response.headers.get("content-type", "")
        if content_type.startswith("application/xml"):
            twin = self._json_twin(response)
            assert twin.status_code == response.status_code
            # Page links carry the request's own ``format``; otherwise the two must agree.
            xml_values = as_xml_values(twin.json(), links=("format=json", "format=xml"))
            assert parse_xml(response.content) == xml_values
            return
        if not content_type.startswith("application/json"):
            return
        body = response.json()
        sparse = "fields" in request.url.params
        validate_served(
            self.served_document(), request.url.path, response.status_code, body, sparse=sparse
        )
        if response.status_code >= 400:
            validate("Error", body)
        elif route is not None and isinstance(route.endpoint, Retrieve):
            validate(route.endpoint.resource.title, body, sparse=sparse)

    def _json_twin(self, response: httpx.Response) -> httpx.Response:
        """The same request as ``response``'s, asking for JSON instead of XML."""
        request = response.request
        params = dict(request.url.params)
        if "format" in params:
            params["format"] = "json"
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("host", "accept", "if-none-match")
        }
        headers["Accept"] = "application/json"
        url = request.url.copy_with(query=None)
        return self.client.request(request.method, url, params=params, headers=headers)


class _InProcessTransport(httpx.BaseTransport):
    """httpx's ASGI transport for a synchronous client: each request runs on ``portal``'s
    event loop, one thread for all of them, as uvicorn runs an app on one loop.

    Headers reach the app as the bytes the test gave, with no socket, parser or server
    between.
    """

    def __init__(self, app: CoursebookApp, portal: BlockingPortal) -> None:
        self._asgi = httpx.ASGITransport(app=app)
        self._portal = portal

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._portal.call(self._handle, request)

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        response = await self._asgi.handle_async_request(request)
        content = await response.aread()
        return httpx.Response(response.status_code, headers=response.headers, content=content)


@asynccontextmanager
async def _lifespan(app: CoursebookApp) -> AsyncIterator[None]:
    """The ASGI lifespan protocol around the block: startup, then shutdown."""
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(scope, to_app.get, from_app.put))
    await to_app.put({"type": "lifespan.startup"})
    assert (await from_app.get())["type"] == "lifespan.startup.complete"
    try:
        yield
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        assert (await from_app.get())["type"] == "lifespan.shutdown.complete"
        await task


@contextmanager
def in_process(settings: Settings) -> Iterator[Api]:
    """A client calling ``create_app(settings)`` in this process, no socket between.

    The app's lifespan runs around the block (startup, then shutdown, which closes
    its connections); its requests all run on one event-loop thread.
    """
    app = create_app(settings)
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(_lifespan(app)):
        transport = _InProcessTransport(app, portal)
        with httpx.Client(transport=transport, base_url="http://localhost") as client:
            yield Api(client, app)


def inserted_id(result: CursorResult[Any]) -> int:
    """The primary key of the one row an INSERT's ``result`` inserted."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def live_server(settings: Settings) -> Iterator[Api]:
    """Serve ``create_app(settings)`` with uvicorn in a thread; a client of it for the block."""
    app = create_app(settings)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", loop="asyncio"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield Api(client, app)
    finally:
        server.should_exit = True
        thread.join(10)


class Served(NamedTuple):
    """A ``coursebook serve`` process, the base URL it answers on and the file its
    standard error goes to."""

    process: subprocess.Popen[bytes]
    base_url: str
    log: Path


@contextmanager
def serve_process(
    database_url: str,
    settings: dict[str, str] | None = None,
    *,
    workers: int = 1,
    directory: Path | None = None,
) -> Iterator[Served]:
    """Run ``coursebook serve`` as a deployment runs it (its protocol, its workers, its
    signal handling) on a free port, with ``settings`` as ``COURSEBOOK_*`` variables, in
    ``directory`` (default: a temporary one, where its standard error is logged);
    stopped (SIGTERM, then SIGKILL) after the block unless the block stopped it."""
    port = free_port()
    env = {
        **os.environ,
        "COURSEBOOK_DATABASE_URL": database_url,
        "COURSEBOOK_PORT": str(port),
        "COURSEBOOK_WORKERS": str(workers),
        "COURSEBOOK_LOG_LEVEL": "warning",
        **{f"COURSEBOOK_{name.upper()}": value for name, value in (settings or {}).items()},
    }
    command = [str(Path(sys.executable).with_name("coursebook")), "serve"]
    with ExitStack() as stack:
        if directory is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        log = directory / f"server-{port}.log"
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                command, env=env, cwd=directory, stdout=subprocess.DEVNULL, stderr=stderr
            )
        base_url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"coursebook serve exited with {process.returncode}: {log.read_text()}"
                    )
                try:
                    if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.05)
            yield Served(process, base_url, log)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def rich_session(demo: Demo, *, big_course: bool) -> int:
    """A main session whose relations are all populated, in the biggest or a small course."""
    cs, ot = m.course_sessions, m.offering_types
    has = [
        select(m.offering_type_memberships.c.offering_type_id).where(
            m.offering_type_memberships.c.offering_type_id == ot.c.id
        ),
        select(m.registration_timelines.c.id).where(
            m.registration_timelines.c.offering_type_id == ot.c.id
        ),
        select(m.availability_schedule_offering_types.c.id).where(
            m.availability_schedule_offering_types.c.offering_type_id == ot.c.id
        ),
        select(m.offering_type_instructors.c.instructor_id).where(
            m.offering_type_instructors.c.offering_type_id == ot.c.id
        ),
        select(m.venue_rooms.c.id).where(m.venue_rooms.c.venue_id == cs.c.venue_id),
    ]
    sizes = select(cs.c.course_id, func.count().label("n")).group_by(cs.c.course_id).subquery()
    statement = (
        select(cs.c.id, sizes.c.n)
        .join(m.courses, m.courses.c.id == cs.c.course_id)
        .join(ot, ot.c.id == m.courses.c.offering_type_id)
        .join(sizes, sizes.c.course_id == cs.c.course_id)
        .where(
            cs.c.provider_id == demo.manifest["providers"]["main"],
            ot.c.category_id.is_not(None),
            *[query.exists() for query in has],
        )
        .order_by(sizes.c.n.desc() if big_course else sizes.c.n, cs.c.id)
    )
    with demo.engine.connect() as conn:
        row = conn.execute(statement).first()
    assert row is not None, "the demo data should have a fully populated session"
    if big_course:
        assert row.n >= 200, "the demo data should have a course with 200 sessions"
    return int(row.id)


def written_datetime(stored: datetime, zone: str) -> str:
    """How a date-time stored as ``stored`` (naive: UTC) is written in the IANA ``zone``:
    whole seconds, the zone's offset then, ``Z`` for zero (SEMANTICS.md section 7).
    Worked out with ``strftime``, independently of the server's own conversion."""
    utc = stored.replace(tzinfo=UTC) if stored.tzinfo is None else stored
    local = utc.astimezone(ZoneInfo(zone))
    offset = local.strftime("%z")
    return local.strftime("%Y-%m-%dT%H:%M:%S") + (
        "Z" if offset == "+0000" else f"{offset[:3]}:{offset[3:]}"
    )


def session_times(demo: Demo, session_id: int) -> dict[str, str]:
    """A session's ``starts_at`` and ``ends_at`` as they must be written: in its venue's
    zone, or its provider's when the venue is online."""
    cs, venues = m.course_sessions, m.venues
    with demo.engine.connect() as conn:
        row = conn.execute(
            select(
                cs.c.starts_at,
                cs.c.ends_at,
                venues.c.venue_type,
                venues.c.timezone,
                m.providers.c.timezone.label("provider_timezone"),
            )
            .join(venues, venues.c.id == cs.c.venue_id)
            .join(m.providers, m.providers.c.id == cs.c.provider_id)
            .where(cs.c.id == session_id)
        ).one()
    zone = row.provider_timezone if row.venue_type == "online" else row.timezone
    return {key: written_datetime(getattr(row, key), zone) for key in ("starts_at", "ends_at")}


def get(api: Api, demo: Demo, session_id: int, **params: str) -> Any:
    """The admin's 200 answer for a session with query ``params``, as JSON."""
    response = api.get(
        f"/api/v2/course_sessions/{session_id}", demo.manifest["tokens"]["admin"], params=params
    )
    assert response.status_code == 200, response.text
    return response.json()


def error(api: Api, demo: Demo, **params: str) -> dict[str, Any]:
    """The admin's 400 ``parameter_invalid`` answer for query ``params``, as JSON."""
    session_id = demo.manifest["course_sessions"]["main"][0]
    response = api.get(
        f"/api/v2/course_sessions/{session_id}", demo.manifest["tokens"]["admin"], params=params
    )
    assert response.status_code == 400, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == "parameter_invalid"
    assert body["type"] == "invalid_request_error"
    return body


def walk(
    api: Api, token: str | None, url: str, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Every result of a collection, following ``next`` from ``url`` to the end."""
    results: list[dict[str, Any]] = []
    seen_urls = set()
    next_url: str | None = url
    while next_url:
        assert next_url not in seen_urls, "pagination loops"
        seen_urls.add(next_url)
        response = api.get(next_url, token, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["results"]) <= 100
        results += page["results"]
        next_url = page["next"]
        if next_url is not None:
            assert next_url.startswith(api.base_url + "/api/v2/")
    return results


def main_session_ids(demo: Demo, *conditions: Any) -> list[int]:
    """The main provider's sessions meeting ``conditions``, in start order."""
    cs = m.course_sessions
    with demo.engine.connect() as conn:
        return list(
            conn.execute(
                select(cs.c.id)
                .where(cs.c.provider_id == demo.manifest["providers"]["main"], *conditions)
                .order_by(cs.c.starts_at, cs.c.id)
            ).scalars()
        )


def customer_profile_of(demo: Demo, role: str) -> int:
    """The main provider's customer profile of ``role``'s user."""
    digest = hash_token(demo.manifest["tokens"][role])
    with demo.engine.connect() as conn:
        profile_id = conn.scalar(
            select(m.customer_profiles.c.id)
            .join(m.api_tokens, m.api_tokens.c.user_id == m.customer_profiles.c.user_id)
            .where(
                m.api_tokens.c.token_hash == digest,
                m.customer_profiles.c.provider_id == demo.manifest["providers"]["main"],
            )
        )
    assert profile_id is not None, role
    return int(profile_id)


def sessions_a_customer_may_see(demo: Demo, customer_profile_id: int) -> frozenset[int]:
    """Section 4 as SQL: published course, non-draft offering type, public or held."""
    ot, cs = m.offering_types, m.course_sessions
    holds = exists().where(
        m.offering_type_memberships.c.offering_type_id == ot.c.id,
        m.customer_memberships.c.membership_id == m.offering_type_memberships.c.membership_id,
        m.customer_memberships.c.customer_profile_id == customer_profile_id,
        m.customer_memberships.c.active.is_(True),
    )
    query = (
        select(cs.c.id)
        .join(m.courses, m.courses.c.id == cs.c.course_id)
        .join(ot, ot.c.id == m.courses.c.offering_type_id)
        .where(
            cs.c.provider_id == demo.manifest["providers"]["main"],
            m.courses.c.published.is_(True),
            ot.c.is_draft.is_(False),
            or_(
                ot.c.customer_visibility == "public",
                and_(ot.c.customer_visibility == "membership_holders", holds),
            ),
        )
    )
    with demo.engine.connect() as conn:
        return frozenset(conn.scalars(query))
