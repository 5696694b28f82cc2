"""The per-connection memo (coursebook/memo.py) and the kept SQLite connection
(coursebook/db.py): never stale, and what they save.

Every write here goes through another connection (the demo engine), as a token
revocation by the CLI or a booking by another service would.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import delete, event, insert, select, update

from coursebook import models as m
from coursebook.db import Connections, create_db_engine
from coursebook.memo import MAX_ENTRIES, Shared
from coursebook.tokens import create_token
from tests.support import Api, Demo, inserted_id


@pytest.fixture
def fresh_token(demo: Demo) -> Iterator[tuple[int, str]]:
    """A new M2M token of the main provider with full read, deleted afterwards."""
    with demo.engine.begin() as conn:
        created = create_token(
            conn,
            created_at=datetime.now(UTC),
            name="memo test",
            provider_id=demo.manifest["providers"]["main"],
            permissions=frozenset({"manage_events"}),
        )
    yield created.id, created.secret
    with demo.engine.begin() as conn:
        conn.execute(delete(m.api_tokens).where(m.api_tokens.c.id == created.id))


def session_path(demo: Demo) -> str:
    return f"/api/v2/course_sessions/{demo.manifest['course_sessions']['main'][0]}"


@pytest.mark.writes
def test_a_revoked_token_fails_on_the_next_request(
    api: Api, demo: Demo, fresh_token: tuple[int, str]
) -> None:
    token_id, secret = fresh_token
    for _ in range(3):  # remembered by now, where there is a memo
        assert api.get(session_path(demo), secret).status_code == 200
    with demo.engine.begin() as conn:
        conn.execute(
            update(m.api_tokens)
            .where(m.api_tokens.c.id == token_id)
            .values(revoked_at=datetime.now(UTC))
        )
    response = api.get(session_path(demo), secret)
    assert response.status_code == 401
    assert response.json()["message"] == "Invalid token."  # as for one never issued


@pytest.mark.writes
def test_a_changed_permission_applies_on_the_next_request(
    api: Api, demo: Demo, fresh_token: tuple[int, str]
) -> None:
    token_id, secret = fresh_token
    assert api.get(session_path(demo), secret).status_code == 200
    with demo.engine.begin() as conn:
        conn.execute(
            update(m.api_tokens).where(m.api_tokens.c.id == token_id).values(manage_events=False)
        )
    assert api.get(session_path(demo), secret).status_code == 403


@pytest.mark.writes
def test_list_counts_follow_writes(api: Api, demo: Demo) -> None:
    token = demo.manifest["tokens"]["admin"]

    def count() -> int:
        response = api.get("/api/v2/venue_rooms", token, params={"page_size": "1"})
        assert response.status_code == 200
        return int(response.json()["count"])

    before = count()
    assert count() == before  # the second answer may come from the memo
    with demo.engine.begin() as conn:
        venue_id = conn.scalar(
            select(m.venues.c.id)
            .where(m.venues.c.provider_id == demo.manifest["providers"]["main"])
            .limit(1)
        )
        room_id = inserted_id(
            conn.execute(
                insert(m.venue_rooms).values(venue_id=venue_id, status="active", name="Memo room")
            )
        )
    try:
        assert count() == before + 1
    finally:
        with demo.engine.begin() as conn:
            conn.execute(delete(m.venue_rooms).where(m.venue_rooms.c.id == room_id))
    assert count() == before


@pytest.mark.writes
def test_statements_with_a_cold_and_a_warm_memo(
    api: Api, demo: Demo, fresh_token: tuple[int, str]
) -> None:
    _, secret = fresh_token  # written just now: any memo is cold
    path = session_path(demo)
    before = api.counter.count
    assert api.get(path, secret).status_code == 200
    cold = api.counter.count - before
    before = api.counter.count
    assert api.get(path, secret).status_code == 200
    warm = api.counter.count - before
    # token, session; then the session alone, beside the write count that says the
    # token read before is still current (no BEGIN or ROLLBACK either: not counted, and
    # not sent)
    assert (cold, warm) == (2, 1)


def test_connections_are_kept_not_checked_out_per_request(api: Api, demo: Demo) -> None:
    """SQLite keeps a connection per thread, PostgreSQL a set lent to one request at a
    time: neither checks one out of SQLAlchemy's pool per request."""
    checkouts: list[object] = []

    def checked_out(*_args: object) -> None:
        checkouts.append(_args)

    token = demo.manifest["tokens"]["admin"]
    assert api.get(session_path(demo), token).status_code == 200  # the thread's connection
    event.listen(api.app.engine, "checkout", checked_out)
    try:
        for _ in range(5):
            assert api.get(session_path(demo), token).status_code == 200
            assert api.get("/api/v2/venue_rooms", token).status_code == 200
    finally:
        event.remove(api.app.engine, "checkout", checked_out)
    assert checkouts == []


def test_a_kept_connection_recovers_from_an_invalidated_driver_connection(
    tmp_path: Path,
) -> None:
    (tmp_path / "kept.sqlite3").touch()  # the server opens a database, never makes one
    connections = Connections(create_db_engine(f"sqlite:///{tmp_path}/kept.sqlite3"))
    with connections.connect() as conn:
        lost = conn.connection.dbapi_connection
        conn.invalidate()  # as after a driver error that lost the connection
    with connections.connect() as again:
        assert again.exec_driver_sql("SELECT 2").scalar() == 2
        assert again.connection.dbapi_connection is not lost
    connections.close()
    assert again.closed


def test_a_memo_past_its_bound_starts_again() -> None:
    shared = Shared()
    remembered = shared.get()
    remembered.entries.update({("count", n): n for n in range(MAX_ENTRIES)})
    assert shared.get() is remembered  # at the bound: kept
    assert remembered.get(("count", "one more"), lambda: 1) == 1
    fresh = shared.get()
    assert fresh is not remembered and fresh.entries == {}


@pytest.mark.writes
def test_a_request_reads_one_snapshot(api: Api, demo: Demo) -> None:
    """A write committed between two statements of one request is not half in it.

    The write changes the session's capacity and renames its venue together, while the
    request is already running (between the session's statement and its venue's): the
    response shows both as they were (SQLite: its request is one read transaction) or both as they
    became (PostgreSQL: the venue's statement read a moved write count, and the request
    was read again), never one of each; the next response shows the change.
    """
    token = demo.manifest["tokens"]["admin"]
    path = session_path(demo)
    params = {"fields": "id,max_occupancy,venue.id,venue.name"}
    before = api.get(path, token, params=params).json()
    session_id, venue_id = before["id"], before["venue"]["id"]
    old = (before["max_occupancy"], before["venue"]["name"])
    written: list[str] = []

    def rename(capacity: int, venue_name: str) -> None:
        with demo.engine.begin() as writer:
            writer.execute(
                update(m.course_sessions)
                .where(m.course_sessions.c.id == session_id)
                .values(max_occupancy=capacity)
            )
            writer.execute(
                update(m.venues).where(m.venues.c.id == venue_id).values(name=venue_name)
            )

    def write_midway(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "FROM venues" in statement and not written:
            rename(old[0] + 7, "Renamed venue")
            written.append(statement)

    event.listen(api.app.engine, "before_cursor_execute", write_midway)
    try:
        during = api.get(path, token, params=params).json()
    finally:
        event.remove(api.app.engine, "before_cursor_execute", write_midway)
    try:
        assert written  # the write happened inside the request
        new = (old[0] + 7, "Renamed venue")
        shown = (during["max_occupancy"], during["venue"]["name"])
        assert shown == (old if api.backend == "sqlite" else new)
        after = api.get(path, token, params=params).json()
        assert (after["max_occupancy"], after["venue"]["name"]) == new
    finally:
        rename(*old)


@pytest.mark.postgresql
@pytest.mark.writes
def test_every_write_to_every_table_moves_the_write_count(demo: Demo) -> None:
    """PostgreSQL's memo trusts what it holds while ``data_version`` has not moved: a
    table whose writes did not move it could serve a stale token or count."""
    tables = sorted(set(m.metadata.tables) - {"data_version"})

    def version() -> int:
        with demo.engine.connect() as conn:
            return int(conn.execute(select(m.data_version.c.version)).scalar_one())

    for name in tables:
        table = m.metadata.tables[name]
        before = version()
        with demo.engine.begin() as conn:
            # A write that changes nothing still counts: the trigger is per statement.
            conn.execute(
                update(table)
                .where(table.c[table.primary_key.columns[0].name] == -1)
                .values({table.primary_key.columns[0].name: -1})
            )
        assert version() == before + 1, f"a write to {name} did not move the write count"


@pytest.mark.writes
def test_a_write_between_the_token_and_the_session_reads_the_request_again(
    api: Api, demo: Demo, fresh_token: tuple[int, str]
) -> None:
    """A cold token is read outside any transaction: a permission withdrawn
    after the token's statement and before the session's shows in the write count the
    session's statement reads, and the request is read again from the start (in one
    snapshot), so it answers as of after the write instead of mixing the two."""
    token_id, secret = fresh_token
    written: list[str] = []

    def write_midway(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "FROM course_sessions" in statement and not written:
            with demo.engine.begin() as writer:
                writer.execute(
                    update(m.api_tokens)
                    .where(m.api_tokens.c.id == token_id)
                    .values(manage_events=False)
                )
            written.append(statement)

    event.listen(api.app.engine, "before_cursor_execute", write_midway)
    try:
        response = api.get(session_path(demo), secret)
    finally:
        event.remove(api.app.engine, "before_cursor_execute", write_midway)
    assert written
    assert response.status_code == 403
    assert api.get(session_path(demo), secret).status_code == 403
