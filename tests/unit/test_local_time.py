"""coursebook.db.local_time on a real database: a UTC instant as the wall-clock time of
a zone named per row, on SQLite (zoneinfo, in a function of the connection) and
PostgreSQL (its own time-zone database), across daylight-saving changes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Column, DateTime, Engine, Integer, MetaData, String, Table, insert, select

from coursebook.db import create_db_engine, local_time
from tests.support import empty_database

metadata = MetaData()
moments = Table(
    "moments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("zone", String(64), nullable=False),
)

ZONES = ("Europe/London", "America/New_York", "Pacific/Kiritimati", "Pacific/Pago_Pago", "UTC")
#: Every half hour around London's and New York's spring and autumn changes of 2026.
INSTANTS = [
    start + timedelta(minutes=30 * n)
    for start in (
        datetime(2026, 3, 7, 20, tzinfo=UTC),
        datetime(2026, 3, 28, 20, tzinfo=UTC),
        datetime(2026, 10, 24, 20, tzinfo=UTC),
        datetime(2026, 10, 31, 20, tzinfo=UTC),
    )
    for n in range(24)
]
#: (id, instant, zone): every instant in every zone.
MOMENTS = list(enumerate((at, zone) for at in INSTANTS for zone in ZONES))


@pytest.fixture(scope="module")
def engine(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A database of ``backend`` holding ``moments``, through coursebook's engine setup."""
    with empty_database(backend, tmp_path_factory.mktemp(f"local-{backend}")) as url:
        engine = create_db_engine(url)
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(
                insert(moments), [{"id": i, "at": at, "zone": zone} for i, (at, zone) in MOMENTS]
            )
        yield engine
        engine.dispose()


def test_local_time_is_zoneinfos_wall_clock(engine: Engine) -> None:
    m = moments.c
    with engine.connect() as conn:
        found = {id_: at for id_, at in conn.execute(select(m.id, local_time(m.at, m.zone)))}
    for moment_id, (at, zone) in MOMENTS:
        assert found[moment_id] == at.astimezone(ZoneInfo(zone)).replace(tzinfo=None), (at, zone)


def test_a_local_bound_compares_wall_clock_times(engine: Engine) -> None:
    """At London's autumn change 01:30 happens twice: both are at or after 01:30 and
    before 02:00, though an hour apart."""
    m = moments.c
    local = local_time(m.at, m.zone)
    with engine.connect() as conn:
        found = conn.execute(
            select(m.at).where(
                m.zone == "Europe/London",
                local >= datetime(2026, 10, 25, 1, 30),
                local < datetime(2026, 10, 25, 2, 0),
            )
        ).scalars()
        instants = sorted(at.replace(tzinfo=UTC) if at.tzinfo is None else at for at in found)
    assert instants == [
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 25, 1, 30, tzinfo=UTC),
    ]


def test_a_zone_sqlite_does_not_know_is_null_not_an_error() -> None:
    """(PostgreSQL refuses an unknown zone: a venue's zone is an IANA name.)"""
    engine = create_db_engine("sqlite://")
    with engine.connect() as conn:
        at = datetime(2026, 1, 1, tzinfo=UTC)
        for zone in ("Mars/Olympus_Mons", "../../etc/passwd", ""):
            assert conn.execute(select(local_time(at, zone))).scalar() is None
    engine.dispose()
