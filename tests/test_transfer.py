"""Export and import (``coursebook.transfer``), on SQLite and PostgreSQL: the demo goes
out and back in to the same bytes and the same answers, and a bad file writes nothing."""

from __future__ import annotations

import io
import tracemalloc
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect

from coursebook import models as m
from coursebook.db import create_db_engine
from coursebook.migrate import upgrade
from coursebook.settings import Settings
from coursebook.tokens import create_token
from coursebook.transfer import (
    InvalidFile,
    export,
    faster,
    import_records,
    read_lines,
    stored_instant,
)
from tests.support import Api, Demo, empty_database, in_process

MAIN, OTHER = 1, 2
#: Every relation of a session a customer may expand too; the same 400 for what they may not.
EXPANSION = "venue.venue_rooms,instructors,course.offering_type.category"


def exported(engine: Engine, provider_id: int) -> bytes:
    out = io.BytesIO()
    export(engine, provider_id, out)
    return out.getvalue()


def imported(engine: Engine, data: bytes, **options: Any) -> Any:
    return import_records(engine, read_lines(io.BytesIO(data)), **options)


def records(data: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in data.splitlines()]


def ndjson(*items: dict[str, Any]) -> bytes:
    return b"".join(orjson.dumps(item) + b"\n" for item in items)


def counts(engine: Engine) -> dict[str, int]:
    """Rows of every table: what "nothing was written" compares."""
    with engine.connect() as conn:
        return {
            t.name: int(conn.scalar(select(func.count()).select_from(t)) or 0)
            for t in m.metadata.sorted_tables
        }


def problems_of(engine: Engine, data: bytes, **options: Any) -> list[str]:
    """The problems an import of ``data`` reports; it must have written nothing."""
    before = counts(engine)
    with pytest.raises(InvalidFile) as refused:
        imported(engine, data, **options)
    assert counts(engine) == before
    return [str(p) for p in refused.value.problems]


@pytest.fixture
def empty(backend: str, tmp_path: Path) -> Iterator[Engine]:
    """A migrated, empty database of the backend."""
    with empty_database(backend, tmp_path) as url:
        upgrade(url)
        engine = create_db_engine(url)
        yield engine
        engine.dispose()


ROLES = ("admin", "instructor", "customer")


def role_users(demo: Demo) -> dict[str, int]:
    """The user behind each role's demo token."""
    t = m.api_tokens
    with demo.engine.connect() as conn:
        rows = conn.execute(select(t.c.name, t.c.user_id).where(t.c.user_id.is_not(None))).all()
    users = {name.removeprefix("Demo "): user for name, user in rows}
    return {role: users[role] for role in ROLES}


def same_tokens(engine: Engine, users: dict[str, int]) -> dict[str, str]:
    """A token per role with the given secret, for the same user: the same rights."""
    with engine.begin() as conn:
        for role, user in users.items():
            create_token(
                conn, created_at=datetime.now(UTC), user_id=user, secret=f"cb_roundtrip_{role}"
            )
    return {role: f"cb_roundtrip_{role}" for role in users}


def answers(api: Api, tokens: dict[str, str], paths: list[str]) -> dict[tuple[str, str], Any]:
    """Status and body of every path for every token."""
    found: dict[tuple[str, str], Any] = {}
    for role, token in tokens.items():
        for path in paths:
            response = api.get(path, token)
            found[(role, path)] = (response.status_code, response.content)
    return found


def every_path(engine: Engine) -> list[str]:
    """Each session retrieved, its instructors listed, each venue's rooms listed, and
    every page of the three lists."""
    with engine.connect() as conn:
        sessions = conn.scalars(select(m.course_sessions.c.id).order_by(m.course_sessions.c.id))
        venues = conn.scalars(select(m.venues.c.id).order_by(m.venues.c.id)).all()
        total = conn.scalar(select(func.count()).select_from(m.course_sessions)) or 0
    paths: list[str] = []
    for i in sessions:
        paths.append(f"/api/v2/course_sessions/{i}?expand={EXPANSION}")
        paths.append(f"/api/v2/instructors?course_session={i}&expand=availability_schedules")
    paths += [f"/api/v2/venue_rooms?venue={i}" for i in venues]
    pages = -(-total // 100)
    paths += [f"/api/v2/course_sessions?page_size=100&page={n}" for n in range(1, pages + 1)]
    paths += ["/api/v2/instructors?page_size=100", "/api/v2/venue_rooms?page_size=100"]
    return paths


@pytest.mark.writes
@pytest.mark.slow
def test_round_trip_gives_the_same_bytes_and_the_same_answers(
    demo: Demo, empty: Engine, backend: str
) -> None:
    files = {p: exported(demo.engine, p) for p in (MAIN, OTHER)}
    for data in files.values():
        imported(empty, data)
    assert {p: exported(empty, p) for p in files} == files
    # Imported again, nothing changes.
    imported(empty, files[MAIN])
    assert exported(empty, MAIN) == files[MAIN]

    users = role_users(demo)
    tokens = same_tokens(demo.engine, users)
    assert same_tokens(empty, users) == tokens
    paths = every_path(demo.engine)
    with in_process(Settings(database_url=demo.url)) as source:
        before = answers(source, tokens, paths)
    with in_process(Settings(database_url=str(empty.url.render_as_string(False)))) as copy:
        after = answers(copy, tokens, paths)
    assert {k for k, v in before.items() if v[0] == 200}, "the tokens read nothing"
    differ = [key for key in before if before[key] != after[key]]
    assert not differ, f"{len(differ)} answers differ, first {differ[:3]}"


def test_export_never_holds_a_token(demo: Demo) -> None:
    data = exported(demo.engine, MAIN)
    with demo.engine.connect() as conn:
        hashes = conn.scalars(select(m.api_tokens.c.token_hash)).all()
    assert hashes and not any(h.encode() in data for h in hashes)
    assert {r["object"] for r in records(data)} == {
        "provider", "user", "image", "staff", "customer", "venue", "venue_room", "instructor",
        "availability_schedule", "offering_type_category", "membership", "offering_type",
        "availability_schedule_offering_type", "registration_timeline", "customer_membership",
        "course", "course_session", "attendance",
    }  # fmt: skip


@pytest.mark.writes
def test_replace_removes_what_the_file_lacks(demo: Demo) -> None:
    data = records(exported(demo.engine, MAIN))
    session = next(r for r in data if r["object"] == "course_session")
    kept = ndjson(
        *(r for r in data if r is not session and r.get("course_session") != session["id"])
    )
    imported(demo.engine, kept)
    assert exported(demo.engine, MAIN) == ndjson(*data), "without --replace nothing goes"
    imported(demo.engine, kept, replace=True)
    assert exported(demo.engine, MAIN) == kept
    with demo.engine.connect() as conn:
        gone = select(m.course_sessions.c.id).where(m.course_sessions.c.id == session["id"])
        assert conn.scalar(gone) is None
        assert conn.scalar(select(func.count()).select_from(m.providers)) == 2


@pytest.mark.writes
def test_dry_run_checks_and_writes_nothing(demo: Demo) -> None:
    data = records(exported(demo.engine, MAIN))
    venue = next(r for r in data if r["object"] == "venue")
    venue["name"] = "Renamed in a dry run"
    before = counts(demo.engine)
    done = imported(demo.engine, ndjson(*data), dry_run=True)
    assert not done.written and done.counts["venue"] == 4
    assert b"Renamed in a dry run" not in exported(demo.engine, MAIN)
    assert counts(demo.engine) == before


def test_a_count_given_alone_is_kept_and_attendances_decide_otherwise(empty: Engine) -> None:
    base = [
        {"object": "provider", "id": 5, "name": "P", "slug": "p", "timezone": "Europe/Paris",
         "currency_code": "EUR", "currency_symbol": "€", "currency_symbol_position": "after"},
        {"object": "venue", "id": 6, "provider": 5, "name": "V", "address": "Online",
         "timezone": "Europe/Paris", "venue_type": "online", "lat": 0.5, "lng": 1.5},
        {"object": "offering_type", "id": 7, "provider": 5, "name": "Yoga",
         "background_color": "#fff", "dropin_price": "12.5",
         "appointment_settings": {"duration": 60, "default_venue": 6, "default_venue_rooms": []},
         "room_rental_settings": {"duration": 60, "room_uniformity": False}},
        {"object": "course", "id": 8, "provider": 5, "offering_type": 7},
        {"object": "course_session", "id": 9, "provider": 5, "course": 8, "venue": 6,
         "starts_at": "2026-01-05T10:00:00+01:00", "ends_at": "2026-01-05T09:30:00Z",
         "attending_count": 7},
    ]  # fmt: skip
    imported(empty, ndjson(*base))
    session = records(exported(empty, 5))[-1]
    assert session["attending_count"] == 7 and session["starts_at"] == "2026-01-05T09:00:00Z"
    assert records(exported(empty, 5))[2]["dropin_price"] == "12.50"
    people = [
        {"object": "user", "id": 1, "email": "a@example.com", "name": "A"},
        {"object": "customer", "id": 2, "provider": 5, "user": 1, "name": "A"},
        {"object": "attendance", "id": 3, "course_session": 9, "customer": 2,
         "status": "registered", "created_at": "2026-01-01T00:00:00Z"},
    ]  # fmt: skip
    imported(empty, ndjson(*people), provider_id=5)
    assert records(exported(empty, 5))[-2]["attending_count"] == 1


# -- refused files: nothing written, the line and field named ----------------------------


@pytest.mark.writes
def test_ids_and_references_of_another_provider_are_refused(demo: Demo) -> None:
    other = records(exported(demo.engine, OTHER))
    mine = records(exported(demo.engine, MAIN))
    venue = next(r for r in other if r["object"] == "venue")
    course = next(r for r in other if r["object"] == "course")
    session = next(r for r in mine if r["object"] == "course_session")
    stolen = ndjson(
        mine[0], {**venue, "provider": MAIN}, {**session, "course": course["id"]}, mine[1]
    )
    problems = problems_of(demo.engine, stolen)
    assert f"line 2: id: venue {venue['id']} belongs to another provider" in problems
    assert (
        f"line 3: course: no course {course['id']} in the file or the provider's data" in problems
    )
    problems = problems_of(demo.engine, ndjson(mine[0], {**session, "provider": OTHER}))
    assert problems[0] == f"line 2: provider: {OTHER} is not the file's provider ({MAIN})"


@pytest.mark.writes
def test_bad_values_name_the_line_and_field(demo: Demo) -> None:
    data = records(exported(demo.engine, MAIN))
    venue = next(r for r in data if r["object"] == "venue" and r["physical_address"])
    bad_venue = {**venue, "physical_address": {**venue["physical_address"], "country": "GBR"}}
    session = next(r for r in data if r["object"] == "course_session")
    lines = [
        data[0],
        bad_venue,
        {**session, "status": "postponed"},
        {**session, "id": session["id"] + 10**6, "ends_at": "2020-01-01T00:00:00Z"},
        {**data[0], "timezone": "Mars/Olympus"},
        {"object": "api_token", "id": 1},
        {**session, "starts_at": "2026-01-05T10:00:00"},
        {**data[1], "id": 0},
    ]
    problems = problems_of(demo.engine, ndjson(*lines))
    assert problems[0].startswith("line 2: physical_address.country: must be shorter than")
    assert problems[1].startswith("line 3: status: must be one of")
    assert problems[2] == "line 4: ends_at: ends before the session starts (starts_at)"
    assert problems[3].startswith("line 5: timezone: 'Mars/Olympus' is not an IANA time zone")
    assert problems[4].startswith("line 6: object: 'api_token' is not a record kind")
    assert problems[5].startswith("line 7: starts_at: must be date-time")
    assert problems[6].startswith("line 8: id: must be bigger than or equal to 1")


class EndlessLine(io.RawIOBase):
    """``size`` bytes of one JSON string that never ends, made as they are read."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.start = b'{"object": "venue", "name": "'

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.left)
        chunk = (self.start + b"a" * n)[:n]
        self.start = self.start[n:]
        buffer[:n] = chunk
        self.left -= n
        return n


def test_a_huge_line_is_refused_in_bounded_memory() -> None:
    stream = io.BufferedReader(EndlessLine(2 * 10**9), buffer_size=1 << 16)
    tracemalloc.start()
    found = list(read_lines(stream, max_line_bytes=1 << 20))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [str(p) for p in found] == ["line 1: longer than 1048576 bytes (see --max-line-bytes)"]
    assert peak < 8 << 20, f"read a 2 GB line holding {peak} bytes"


def test_hostile_lines_are_problems_not_crashes(empty: Engine) -> None:
    nested = b'{"object": "venue", "name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
    lines = [
        b'{"object": "user", "id": 1, "email": "a@b", "name": "\xff\xfe"}\n',
        nested,
        b'{"object": "user", "id": 99999999999999999999999, "email": "a@b", "name": "x"}\n',
        b'{"object": "user", "id": 2, "email": "a@b", "name": "a\\u0000b"}\n',
        b"\n",
        b'"just a string"\n',
        b'{"object": "user", "id": 3, "email": "a@b", "name": "' + b"x" * 300 + b'"}\n',
    ]
    problems = problems_of(empty, b"".join(lines), provider_id=None)
    assert problems[0] == f"line 1: not valid UTF-8 (byte {lines[0].index(0xFF) + 1} of the line)"
    assert problems[1].startswith("line 2: not JSON: ")
    assert problems[2].startswith("line 3: ")
    assert problems[3] == "line 4: a NUL character (\\u0000) cannot be stored"
    assert problems[4] == "line 6: a line must hold one JSON object"
    assert problems[5].startswith("line 7: name: must be shorter than or equal to 200")


@pytest.mark.writes
@pytest.mark.slow
def test_one_bad_line_among_a_million_writes_nothing(demo: Demo, tmp_path: Path) -> None:
    with demo.engine.connect() as conn:
        session = conn.scalar(
            select(func.min(m.course_sessions.c.id)).where(m.course_sessions.c.provider_id == MAIN)
        )
        customer = conn.scalar(select(func.min(m.customer_profiles.c.id)).where(
            m.customer_profiles.c.provider_id == MAIN))  # fmt: skip
    path = tmp_path / "million.ndjson"
    line = (
        '{"object":"attendance","id":%d,"course_session":%d,"customer":%d,'
        '"status":"registered","created_at":"2026-01-01T00:00:00Z"}\n'
    )
    bad = 654_321
    with path.open("w") as out:
        for n in range(1, 1_000_001):
            status = "maybe" if n == bad else "registered"
            out.write(line.replace("registered", status) % (10**7 + n, session, customer))
    before = counts(demo.engine)
    with path.open("rb") as stream, pytest.raises(InvalidFile) as refused:
        import_records(demo.engine, read_lines(stream), provider_id=MAIN)
    assert [str(p) for p in refused.value.problems] == [
        f"line {bad}: status: must be one of "
        "['registered', 'attended', 'waitlisted', 'cancelled', 'no_show']"
    ]
    assert counts(demo.engine) == before


def test_the_example_file_in_the_docs_imports(empty: Engine) -> None:
    page = (Path(__file__).parent.parent / "docs" / "data.md").read_text()
    example = page.split("can be edited:", 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    lines = "".join(line.strip() + "\n" for line in example.splitlines())
    done = imported(empty, lines.encode())
    assert done.written and sum(done.counts.values()) == 7
    assert exported(empty, 1).count(b"\n") == 7


# -- kept counts and triggers around a bulk write ------------------------------------------

STUDIO: list[dict[str, Any]] = [
    {"object": "provider", "id": 5, "name": "P", "slug": "p", "timezone": "Europe/Paris",
     "currency_code": "EUR", "currency_symbol": "€", "currency_symbol_position": "after"},
    {"object": "user", "id": 1, "email": "a@example.com", "name": "A"},
    {"object": "customer", "id": 2, "provider": 5, "user": 1, "name": "A"},
    {"object": "venue", "id": 6, "provider": 5, "name": "V", "address": "Online",
     "timezone": "Europe/Paris", "venue_type": "online", "lat": 0.5, "lng": 1.5},
    {"object": "offering_type", "id": 7, "provider": 5, "name": "Yoga",
     "background_color": "#fff", "dropin_price": "12.5",
     "appointment_settings": {"duration": 60, "default_venue": 6, "default_venue_rooms": []},
     "room_rental_settings": {"duration": 60, "room_uniformity": False}},
    {"object": "course", "id": 8, "provider": 5, "offering_type": 7},
    *[{"object": "course_session", "id": i, "provider": 5, "course": 8, "venue": 6,
       "starts_at": "2026-01-05T10:00:00Z", "ends_at": "2026-01-05T11:00:00Z"}
      for i in (10, 11)],
]  # fmt: skip


def attendance(id: int, session: int, status: str = "registered") -> dict[str, Any]:
    return {"object": "attendance", "id": id, "course_session": session, "customer": 2,
            "status": status, "created_at": "2026-01-01T00:00:00Z"}  # fmt: skip


def attending(engine: Engine) -> dict[int, int]:
    t = m.course_sessions
    with engine.connect() as conn:
        return {
            row.id: row.attending_count for row in conn.execute(select(t.c.id, t.c.attending_count))
        }


def write_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(m.data_version.c.version)) or 0)


def test_new_rows_are_counted_and_the_triggers_work_after(empty: Engine) -> None:
    before = write_count(empty)
    imported(
        empty, ndjson(*STUDIO, attendance(1, 10), attendance(2, 10), attendance(3, 11, "cancelled"))
    )
    assert attending(empty) == {10: 2, 11: 0}
    if empty.dialect.name == "postgresql":
        assert write_count(empty) > before, "workers' memos would not see the import"
    # Inserted without their per-row triggers, the rows left the triggers in place.
    with empty.begin() as conn:
        conn.execute(m.attendances.insert().values(
            id=4, course_session_id=11, customer_profile_id=2, status="attended",
            created_at=datetime(2026, 1, 1, tzinfo=UTC)))  # fmt: skip
    assert attending(empty) == {10: 2, 11: 1}
    if empty.dialect.name == "postgresql":
        with empty.connect() as conn:
            assert conn.exec_driver_sql("SHOW session_replication_role").scalar() == "origin"


def test_a_row_moved_away_from_a_session_the_file_lacks_is_uncounted_there(empty: Engine) -> None:
    imported(empty, ndjson(*STUDIO, attendance(1, 10), attendance(2, 10)))
    imported(empty, ndjson(attendance(2, 11)), provider_id=5)
    assert attending(empty) == {10: 1, 11: 1}
    imported(empty, ndjson(attendance(1, 11, "no_show"), attendance(3, 10)), provider_id=5)
    assert attending(empty) == {10: 1, 11: 1}


@pytest.fixture
def plain_role(empty: Engine, backend: str) -> Iterator[Engine]:
    """``empty``'s database through a PostgreSQL role that may read and write its tables
    but is no superuser: it may not skip triggers."""
    if backend != "postgresql":
        pytest.skip("roles are PostgreSQL's")
    role = f"coursebook_plain_{uuid.uuid4().hex[:8]}"
    with empty.begin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
        conn.exec_driver_sql(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        conn.exec_driver_sql(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
    engine = create_db_engine(empty.url.set(username=role).render_as_string(False))
    try:
        yield engine
    finally:
        engine.dispose()
        with empty.begin() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")


def test_a_role_that_may_not_skip_triggers_imports_the_same(plain_role: Engine) -> None:
    with plain_role.connect() as conn:
        assert conn.exec_driver_sql("SHOW is_superuser").scalar() == "off"
    before = write_count(plain_role)
    imported(plain_role, ndjson(*STUDIO, attendance(1, 10), attendance(2, 11), attendance(3, 11)))
    assert attending(plain_role) == {10: 1, 11: 2}
    assert write_count(plain_role) > before


def test_staged_instants_are_stored_as_sqlalchemy_stores_them() -> None:
    dialect = sqlite_dialect()
    process = m.attendances.c.created_at.type.dialect_impl(dialect).bind_processor(dialect)
    assert process is not None and faster(process) is stored_instant
    start = datetime(1970, 1, 1, tzinfo=UTC)
    instants = [start + timedelta(seconds=n * 7_919_993.123457) for n in range(500)]
    assert [stored_instant(v) for v in instants] == [process(v) for v in instants]
    dates = m.memberships.c.start_date.type.dialect_impl(dialect).bind_processor(dialect)
    assert dates is not None and faster(dates) is dates
