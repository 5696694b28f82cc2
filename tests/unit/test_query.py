"""coursebook.query.Query on a real database: the statements it runs and the rows it
builds, without the app. On SQLite (positional arguments) and PostgreSQL (named)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    event,
    insert,
    literal,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError

from coursebook.db import StatementCounter, create_db_engine
from coursebook.query import Query, QueryCache
from tests.support import empty_database

metadata = MetaData()
things = Table(
    "things",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("kind", String(20), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("data", JSON, nullable=True),
)

START = datetime(2025, 3, 1, 9, 30, 15, 250_000, tzinfo=UTC)
ROWS = [
    {
        "id": n,
        "kind": "odd" if n % 2 else "even",
        "active": n % 3 != 0,
        "at": START + timedelta(hours=n),
        "data": {"n": n, "tags": ["a", "b"][: n % 3], "nested": {"x": None}} if n < 8 else None,
    }
    for n in range(1, 11)
]
t = things.c


@pytest.fixture(scope="module")
def engine(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A database of ``backend`` holding ``things``, through coursebook's engine setup."""
    with empty_database(backend, tmp_path_factory.mktemp(f"query-{backend}")) as url:
        engine = create_db_engine(url)
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(insert(things), ROWS)
        yield engine
        engine.dispose()


def rows(engine: Engine, query: Query, **params: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return query.rows(conn, params)


def as_utc(value: datetime) -> datetime:
    """SQLite keeps no time zone: its datetimes are naive UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def test_in_lists_of_every_length_select_their_rows(engine: Engine) -> None:
    query = Query(select(t.id).where(t.id.in_(bindparam("ids", expanding=True))).order_by(t.id))
    for ids in ([3], [1, 2, 5], [4], [10, 9, 8, 7, 6, 5, 4, 3], [3], [], [99]):
        found = [row["id"] for row in rows(engine, query, ids=ids)]
        assert found == sorted(i for i in ids if i <= 10), ids


def test_lists_parameters_and_constants_keep_their_places(engine: Engine) -> None:
    """Two IN lists around a plain parameter, and a constant of the statement itself."""
    query = Query(
        select(t.id, literal("fixed").label("constant"))
        .where(
            t.id.in_(bindparam("ids", expanding=True)),
            t.kind == bindparam("kind"),
            t.id.in_(bindparam("more", expanding=True)),
            t.id != 7,
        )
        .order_by(t.id)
    )
    odd = rows(engine, query, ids=[1, 2, 3, 5, 7], kind="odd", more=[3, 5, 7, 9])
    assert odd == [{"id": 3, "constant": "fixed"}, {"id": 5, "constant": "fixed"}]
    even = rows(engine, query, ids=[2, 4, 6], kind="even", more=[4, 6])
    assert [row["id"] for row in even] == [4, 6]
    one = rows(engine, query, ids=[9], kind="odd", more=[1, 9])
    assert [row["id"] for row in one] == [9]


def test_rows_are_dicts_keyed_by_label(engine: Engine) -> None:
    query = Query(select(t.id.label("key"), t.kind.label("sort")).where(t.id == bindparam("id")))
    assert rows(engine, query, id=4) == [{"key": 4, "sort": "even"}]
    assert rows(engine, query, id=404) == []


def test_result_types_are_processed(engine: Engine) -> None:
    query = Query(select(things).where(t.id.in_(bindparam("ids", expanding=True))).order_by(t.id))
    found = rows(engine, query, ids=[1, 3, 9])
    assert [list(row) for row in found] == [["id", "kind", "active", "at", "data"]] * 3
    for row, expected in zip(found, [ROWS[0], ROWS[2], ROWS[8]], strict=True):
        assert row["active"] is expected["active"]
        assert isinstance(row["at"], datetime)
        assert as_utc(row["at"]) == expected["at"]
        assert row["data"] == expected["data"]
    assert found[0]["data"] == {"n": 1, "tags": ["a"], "nested": {"x": None}}
    assert found[2]["data"] is None


def test_list_items_and_parameters_compare_as_the_column_stores_them(engine: Engine) -> None:
    """Datetimes in an IN list go through the column's bind processing (on SQLite, the
    text it stores); a boolean parameter matches the stored flag."""
    by_time = Query(select(t.id).where(t.at.in_(bindparam("times", expanding=True))).order_by(t.id))
    times = [START + timedelta(hours=2), START + timedelta(hours=5), START]
    assert [row["id"] for row in rows(engine, by_time, times=times)] == [2, 5]
    by_flag = Query(
        select(t.id)
        .where(t.active == bindparam("active"), t.id.in_(bindparam("ids", expanding=True)))
        .order_by(t.id)
    )
    assert [row["id"] for row in rows(engine, by_flag, active=True, ids=[1, 2, 3, 4])] == [1, 2, 4]
    assert [row["id"] for row in rows(engine, by_flag, active=False, ids=[3, 6, 7])] == [3, 6]
    by_flags = Query(
        select(t.id).where(t.active.in_(bindparam("flags", expanding=True))).order_by(t.id)
    )
    assert [row["id"] for row in rows(engine, by_flags, flags=[False])] == [3, 6, 9]


def test_a_plain_datetime_parameter_compares_as_the_column_stores_it(engine: Engine) -> None:
    """A parameter outside an IN list goes through its bind processor too (SQLite stores
    date-times as text in its own format)."""
    after = Query(select(t.id).where(t.at >= bindparam("after")).order_by(t.id))
    found = rows(engine, after, after=START + timedelta(hours=8))
    assert [row["id"] for row in found] == [8, 9, 10]


def test_statements_fire_the_engines_cursor_events(engine: Engine) -> None:
    query = Query(select(t.id).where(t.id.in_(bindparam("ids", expanding=True))))
    seen: list[tuple[str, str, Any]] = []

    def before(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        seen.append(("before", statement, parameters))

    def after(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        seen.append(("after", statement, parameters))

    counter = StatementCounter(engine)
    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        before_count = counter.count
        rows(engine, query, ids=[1, 2])
        rows(engine, query, ids=[3])
        assert counter.count - before_count == 2
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
    assert [kind for kind, _sql, _args in seen] == ["before", "after", "before", "after"]
    assert all("FROM things" in sql for _kind, sql, _args in seen)
    assert seen[0][1:] == seen[1][1:] and seen[2][1:] == seen[3][1:]
    first, second = seen[0][2], seen[2][2]
    values = (
        (list(first), list(second))
        if isinstance(first, tuple)
        else (sorted(first.values()), sorted(second.values()))
    )
    assert values == ([1, 2], [3])


def test_driver_errors_are_sqlalchemy_errors(engine: Engine) -> None:
    query = Query(select(t.id).where(t.id == bindparam("id")))
    assert rows(engine, query, id=1) == [{"id": 1}]
    with engine.begin() as other:
        other.execute(text("ALTER TABLE things RENAME TO renamed_things"))
    try:
        with engine.connect() as conn:
            with pytest.raises(DBAPIError) as raised:
                query.rows(conn, {"id": 1})
            invalidated = conn.invalidated
    finally:
        with engine.begin() as other:
            other.execute(text("ALTER TABLE renamed_things RENAME TO things"))
    error = raised.value
    assert isinstance(error.orig, engine.dialect.loaded_dbapi.Error)
    assert error.statement is not None and "FROM things" in error.statement
    assert not invalidated, "a missing table does not lose the connection"
    assert rows(engine, query, id=1) == [{"id": 1}]


def test_one_query_serves_every_database_it_meets(engine: Engine, tmp_path: Path) -> None:
    """SQL is compiled and planned once per dialect and shape, rows read from the database
    at hand; on PostgreSQL the query meets SQLite too, with its own SQL."""
    query = Query(select(t.id).where(t.id.in_(bindparam("ids", expanding=True))).order_by(t.id))
    assert [row["id"] for row in rows(engine, query, ids=[2, 4])] == [2, 4]
    other = create_db_engine(f"sqlite:///{tmp_path}/other.sqlite3")
    try:
        metadata.create_all(other)
        with other.begin() as conn:
            conn.execute(insert(things), [{**ROWS[0], "id": 4}])
        assert [row["id"] for row in rows(other, query, ids=[2, 4])] == [4]
        assert [row["id"] for row in rows(engine, query, ids=[4, 2])] == [2, 4]
    finally:
        other.dispose()


def test_the_query_cache_is_bounded() -> None:
    cache = QueryCache(limit=2)
    built: list[str] = []

    def build(name: str) -> Any:
        built.append(name)
        return select(t.id)

    first = cache.get("a", lambda: build("a"))
    assert cache.get("a", lambda: build("a")) is first
    cache.get("b", lambda: build("b"))
    cache.get("c", lambda: build("c"))  # past the limit: starts again
    assert cache.get("a", lambda: build("a")) is not first
    assert built == ["a", "b", "c", "a"]
