"""Use cases: authorise a caller, retrieve an object, list a page, check readiness.

Each use case takes what the transport parsed (credentials, ids, raw parameters)
and returns the finished body (a page envelope included) or raises ``ApiError``.
Authentication and access come first, so a caller without valid credentials learns
nothing about its parameters; a database that does not answer is a 503, whatever
stage it fails in.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, NamedTuple, ParamSpec, TypeVar

from sqlalchemy import ColumnElement, Connection, bindparam, func, select
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from coursebook import migrate
from coursebook.access import Access, Scope, resolve
from coursebook.auth import Principal, authenticate
from coursebook.db import Connections, snapshot
from coursebook.errors import ApiError, invalid, not_found
from coursebook.fields import PROVIDER_ID, Listing, RenderContext, Resource, select_columns
from coursebook.listing import Query, envelope, page_number, parse_list_query
from coursebook.loader import Loaded, load, reads_count_per_level
from coursebook.memo import VERSION, WRITE_COUNT, Memo, Shared, Stale
from coursebook.metrics import TALLY
from coursebook.models import Id
from coursebook.projection import Projection, compile_projection
from coursebook.query import Query as Statement
from coursebook.query import QueryCache
from coursebook.render import render, render_one

logger = logging.getLogger("coursebook")

PERMITTED = "_permitted"
T = TypeVar("T")
P = ParamSpec("P")
OBJECT_ID = bindparam("object_id", type_=Id)


class Credentials(NamedTuple):
    """The request headers that say who is calling and for which provider and mode."""

    authorization: str | None
    provider: str | None = None
    mode: str | None = None


class Trace:
    """What the access log wants of a request that only its use case learns: the token
    it was authorised by and the provider it read for (None until then)."""

    __slots__ = ("provider_id", "token_id")

    def __init__(self) -> None:
        self.token_id: int | None = None
        self.provider_id: int | None = None


class Caller(NamedTuple):
    """An authorised request: who calls, what they may read, and how to render for them."""

    principal: Principal
    access: Access
    #: (resource, field) pairs this caller may not ask for.
    hidden_fields: frozenset[tuple[str, str]]
    ctx: RenderContext
    memo: Memo


def authorize(
    conn: Connection, credentials: Credentials, base_url: str, remembered: Memo
) -> Caller:
    """The caller behind ``credentials``; 401, 403 or 400 when there is none. What is
    remembered of the token and its access comes from ``remembered``."""
    principal = authenticate(conn, credentials.authorization, datetime.now(UTC), remembered)
    provider, mode = credentials.provider, credentials.mode
    access = remembered.get(
        ("access", principal.token_id, provider, mode), resolve, principal, provider, mode
    )
    scope = access.scope
    ctx = RenderContext(base_url, scope.redact_permissions)
    return Caller(principal, access, scope.hidden_fields, ctx, remembered)


def project(caller: Caller, resource: Resource, query: Query) -> Projection:
    """The query's ``expand``/``fields`` compiled for ``resource``, as ``caller`` may ask
    them (a parameter given several times is one comma-separated list)."""
    fields = ",".join(query.get("fields", ()))
    projection = compile_projection(resource.name, ",".join(query.get("expand", ())), fields)
    hidden = caller.hidden_fields
    if not hidden:
        return projection
    named = [item.strip() for item in fields.split(",")]
    for path, node in projection.walk():
        for field in node.fields:
            if (node.resource.name, field.name) in hidden:
                full = f"{path}.{field.name}" if path else field.name
                asked = any(item == full or item.startswith(full + ".") for item in named)
                raise invalid(
                    "fields" if asked else "expand",
                    f"'{full}' is not available in customer mode.",
                )
    return projection


def _own_provider(resource: Resource) -> tuple[ColumnElement[bool], ...]:
    """The condition keeping ``resource``'s rows to the request's provider."""
    column = resource.provider_column
    return () if column is None else (column == PROVIDER_ID,)


_retrieve_queries = QueryCache(limit=1024)


def retrieve_query(resource: Resource, scope: Scope, columns: frozenset[str]) -> Statement:
    """The statement reading one object of ``resource`` under ``scope``, with the write
    count beside it (``Memo.observe``), built once."""
    return _retrieve_queries.get(
        (resource.name, scope.name, columns),
        lambda: (
            select_columns(resource, columns)
            .add_columns(
                scope.permitted_condition(resource.name).label(PERMITTED),
                WRITE_COUNT.label(VERSION),
            )
            .where(
                resource.table.c.id == OBJECT_ID,
                *_own_provider(resource),
                *scope.visible.get(resource.name, ()),
            )
        ),
    )


#: Set while a use case is read again because what the worker remembered was stale: the
#: attempt reads everything, the token included, in one snapshot on a fresh memo.
_AGAIN: ContextVar[bool] = ContextVar("coursebook.read_again", default=False)


def _reading(use_case: Callable[P, T]) -> Callable[P, T]:
    """``use_case``, read once more on a fresh connection when the first was found lost
    (a restarted or killed server: reading again is safe), and once more from the start
    in one snapshot when the memo proved stale (``Stale``: a write committed since the
    memo was read, on PostgreSQL); a 503 when the database does not answer within the
    bounds of the settings."""

    @functools.wraps(use_case)
    def read(*args: P.args, **kwargs: P.kwargs) -> T:
        for attempt in (1, 2):
            try:
                return use_case(*args, **kwargs)
            except Stale:
                if _AGAIN.get():
                    raise AssertionError("one snapshot read a write count twice") from None
                again = _AGAIN.set(True)
                try:
                    return read(*args, **kwargs)
                finally:
                    _AGAIN.reset(again)
            except DBAPIError as error:
                if error.connection_invalidated and attempt == 1:
                    logger.warning("Database connection lost; reading again on another")
                    continue
                if error.connection_invalidated or _unavailable(error):
                    raise unavailable(error) from None
                raise
            except UNREACHABLE as error:
                raise unavailable(error) from None
        raise AssertionError("unreachable: the second attempt returns or raises")

    return read


class Service:
    """The use cases over one database, for the transport to call."""

    def __init__(self, connections: Connections, *, budget: int) -> None:
        self.connections = connections
        self.budget = budget
        #: PostgreSQL: the worker's memo (SQLite keeps one per connection: ``_remembered``).
        self.shared = None if connections.keep else Shared()
        self._local = threading.local()

    def _remembered(self, conn: Connection) -> Memo:
        """What is remembered for a request on ``conn``: the worker's memo on PostgreSQL;
        on SQLite the memo of the thread's kept connection, begun again with each new
        connection (``data_version`` counts what that connection has seen). A request
        read again (``_AGAIN``) begins it afresh, in a snapshot."""
        shared = self.shared
        if shared is None:
            local = self._local
            if getattr(local, "conn", None) is not conn:
                local.conn, local.shared = conn, Shared()
            shared = local.shared
        if _AGAIN.get():
            snapshot(conn)
            return shared.renew()
        return shared.get()

    @staticmethod
    def _authorized(
        conn: Connection,
        credentials: Credentials,
        base_url: str,
        remembered: Memo,
        trace: Trace | None,
    ) -> Caller:
        """The authorised caller (``authorize``), noted in ``trace``."""
        caller = authorize(conn, credentials, base_url, remembered)
        if trace is not None:
            trace.token_id = caller.principal.token_id
            trace.provider_id = caller.access.provider_id
        return caller

    def _load(
        self,
        conn: Connection,
        caller: Caller,
        projection: Projection,
        rows: list[dict[str, Any]],
        base_url: str,
    ) -> tuple[Loaded, ...]:
        """What ``projection`` expands below ``rows``, within the expansion budget."""
        return load(
            conn,
            caller.access,
            projection,
            rows,
            budget=self.budget,
            base_url=base_url,
            memo=caller.memo,
        )

    @_reading
    def retrieve(
        self,
        credentials: Credentials,
        base_url: str,
        resource: Resource,
        object_id: int | None,
        query: Query,
        trace: Trace | None = None,
    ) -> dict[str, Any]:
        """One object of ``resource``; 404 when the caller cannot see it (or ``object_id``
        is None: the path named no id), 403 when it exists for them but is not theirs to
        read (an instructor's other sessions)."""
        with self.connections.connect() as conn:
            remembered = self._remembered(conn)
            try:
                caller = self._authorized(conn, credentials, base_url, remembered, trace)
                projection = project(caller, resource, query)
                if object_id is None:
                    raise not_found()
                if projection.children and not reads_count_per_level(conn):
                    # The relations are read as the object was: in one snapshot (SQLite);
                    # PostgreSQL's level statements each read the write count instead,
                    # and a request that saw it move is read again.
                    snapshot(conn)
                access = caller.access
                rows = retrieve_query(resource, access.scope, projection.columns).rows(
                    conn, {**access.params, OBJECT_ID.key: object_id}
                )
                if not rows:
                    raise not_found()
                remembered.observe(rows[0][VERSION])
                if not rows[0][PERMITTED]:
                    raise ApiError(
                        403,
                        "permission_denied",
                        "You may only read the course sessions you instruct.",
                    )
                level = (
                    self._load(conn, caller, projection, rows, base_url)
                    if projection.children
                    else ()
                )
                return render_one(projection, rows[0], level, caller.ctx)
            except ApiError as error:
                _confirm_refusal(conn, remembered, error)
                raise

    @_reading
    def list(
        self,
        credentials: Credentials,
        base_url: str,
        listing: Listing,
        query: Query,
        trace: Trace | None = None,
    ) -> dict[str, Any]:
        """A page of ``listing`` under the caller's access, in its envelope.

        The count is kept in the memo by listing, access and filters (it does not depend
        on the page), so walking the pages of a large collection counts it once until the
        database changes. The page is chosen on the base table alone (an index walk,
        however deep the page), and only its rows are then read whole.
        """
        resource = listing.resource
        with self.connections.connect() as conn:
            remembered = self._remembered(conn)
            try:
                caller = self._authorized(conn, credentials, base_url, remembered, trace)
                access = caller.access
                projection = project(caller, resource, query)
                parsed = parse_list_query(listing, query, access)
                snapshot(conn)  # the count, the page and its relations agree
                conditions = (
                    *access.filters(resource.name),
                    *parsed.conditions,
                    *_own_provider(resource),
                )
                counted = False

                def count_rows() -> int:
                    nonlocal counted
                    TALLY.statements += 1
                    total, version = conn.execute(
                        select(func.count(), WRITE_COUNT.label(VERSION))
                        .select_from(resource.scope_from)
                        .where(*conditions),
                        access.params,
                    ).one()
                    remembered.observe(version)
                    counted = True
                    return int(total)

                key = (
                    "count",
                    listing.path,
                    access.scope.name,
                    tuple(sorted(access.params.items())),
                    parsed.filter_key,
                )
                count: int = remembered.get(key, count_rows)
                page = page_number(parsed.page, count, parsed.page_size)
                offset = (page - 1) * parsed.page_size
                results: list[dict[str, Any]] = []
                if offset >= count:
                    if not counted:  # a remembered count, read again by nothing
                        remembered.confirm(conn)
                else:
                    page_ids = (
                        select(resource.table.c.id)
                        .select_from(resource.scope_from)
                        .where(*conditions)
                        .order_by(*parsed.order_by)
                        .limit(parsed.page_size)
                        .offset(offset)
                    )
                    TALLY.statements += 1
                    result = conn.execute(
                        select_columns(resource, projection.columns)
                        .add_columns(WRITE_COUNT.label(VERSION))
                        .where(resource.table.c.id.in_(page_ids))
                        .order_by(*parsed.order_by),
                        access.params,
                    )
                    keys = tuple(result.keys())
                    rows = [dict(zip(keys, row, strict=True)) for row in result.fetchall()]
                    if rows:
                        remembered.observe(rows[0][VERSION])
                    elif not counted:
                        remembered.confirm(conn)
                    level = self._load(conn, caller, projection, rows, base_url)
                    results = render(projection, rows, level, caller.ctx)
            except ApiError as error:
                _confirm_refusal(conn, remembered, error)
                raise
        return envelope(base_url, listing.path, query, page, parsed.page_size, count, results)

    def ready(self) -> None:
        """Nothing when the database answers and its schema is at the migration this code
        reads; 503 otherwise (a file replaced by an empty one answers, unmigrated)."""
        try:
            with self.connections.connect() as conn:
                revision = migrate.current(conn)
        except (DBAPIError, *UNREACHABLE) as error:
            logger.warning("Readiness check failed: %s", type(error).__name__)
            raise ApiError(503, "service_unavailable", "The database does not answer.") from None
        if revision != migrate.head():
            logger.warning(
                "Readiness check failed: the schema is at %s, this server reads %s",
                revision,
                migrate.head(),
            )
            raise ApiError(
                503,
                "service_unavailable",
                "The database schema is not at this server's migration.",
            )


#: Driver errors that say the database is not there (as opposed to a statement's fault).
UNAVAILABLE = (OperationalError, InterfaceError)
#: What connecting or waiting raises past its bound, before any driver error exists.
UNREACHABLE = (PoolTimeout, TimeoutError, OSError)
#: PostgreSQL's error classes that say so too: a statement cancelled at its timeout
#: (57014), the server shutting down or starting (57P), connection trouble (08), too
#: many connections (53300).
UNAVAILABLE_STATES = ("57014", "57P", "08", "53300")


def _confirm_refusal(conn: Connection, remembered: Memo, error: ApiError) -> None:
    """Before ``error`` is answered: an answer drawn from remembered access (a 403, a 404
    hidden from this caller) must not come from before a write, so the memo is checked
    against the database (``authenticate`` confirms its own 401)."""
    if error.status != 401:
        remembered.confirm(conn)


def _unavailable(error: DBAPIError) -> bool:
    if isinstance(error, UNAVAILABLE):
        return True
    state = getattr(error.orig, "pgcode", None) or getattr(error.orig, "sqlstate", None)
    return isinstance(state, str) and state.startswith(UNAVAILABLE_STATES)


def unavailable(error: BaseException) -> ApiError:
    """The 503 for a database that does not answer; the log names the failure's kind."""
    logger.warning("Database unavailable: %s", type(error).__name__)
    return ApiError(503, "service_unavailable")
