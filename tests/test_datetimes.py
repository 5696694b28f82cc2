"""Date-times as TeamUp writes them (SEMANTICS.md section 7): whole seconds at the offset
the venue's zone has at that instant, ``Z`` when it is zero, in JSON and XML alike; an
online venue's sessions in their provider's zone; a zone the database does not know is
UTC, never an error."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection, insert, select, update

from coursebook import models as m
from coursebook.values import ZONES
from tests.contract import formats
from tests.served import parse_xml
from tests.support import Api, Demo, inserted_id, session_times, written_datetime

SESSIONS = "/api/v2/course_sessions"


def _utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


#: Sessions across the 2026 daylight-saving changes of London (29 March and 25 October,
#: at 01:00 UTC) and New York (8 March at 07:00 UTC, 1 November at 06:00 UTC): zone,
#: start and end in UTC, and how TeamUp writes them.
ACROSS_CHANGES: list[tuple[str, datetime, datetime, str, str]] = [
    # TeamUp's recorded examples: London in winter and in summer, New York in spring.
    (
        "Europe/London",
        _utc(2026, 1, 29, 6, 30),
        _utc(2026, 1, 29, 7, 30),
        "2026-01-29T06:30:00Z",
        "2026-01-29T07:30:00Z",
    ),
    (
        "Europe/London",
        _utc(2026, 3, 30, 5, 30),
        _utc(2026, 3, 30, 6, 30),
        "2026-03-30T06:30:00+01:00",
        "2026-03-30T07:30:00+01:00",
    ),
    (
        "America/New_York",
        _utc(2026, 4, 30, 10, 30),
        _utc(2026, 4, 30, 11, 30),
        "2026-04-30T06:30:00-04:00",
        "2026-04-30T07:30:00-04:00",
    ),
    # Sessions that span a change: the end has another offset than the start.
    (
        "Europe/London",
        _utc(2026, 3, 29, 0, 30),
        _utc(2026, 3, 29, 1, 30),
        "2026-03-29T00:30:00Z",
        "2026-03-29T02:30:00+01:00",
    ),
    (
        "Europe/London",
        datetime(2026, 10, 25, 0, 30, 0, 999999, tzinfo=UTC),  # fractions are dropped
        _utc(2026, 10, 25, 1, 30),
        "2026-10-25T01:30:00+01:00",
        "2026-10-25T01:30:00Z",  # the same wall-clock time, an hour later
    ),
    (
        "America/New_York",
        _utc(2026, 3, 8, 6, 30),
        _utc(2026, 3, 8, 7, 30),
        "2026-03-08T01:30:00-05:00",
        "2026-03-08T03:30:00-04:00",
    ),
    (
        "America/New_York",
        _utc(2026, 11, 1, 5, 30),
        _utc(2026, 11, 1, 6, 30),
        "2026-11-01T01:30:00-04:00",
        "2026-11-01T01:30:00-05:00",
    ),
]


def _admin(demo: Demo) -> str:
    return demo.manifest["tokens"]["admin"]


def _copy(conn: Connection, table: Any, row_id: int, **changes: Any) -> int:
    """Insert a copy of ``table``'s row ``row_id`` with ``changes``; its id."""
    row = conn.execute(select(table).where(table.c.id == row_id)).one()
    values = {key: value for key, value in row._mapping.items() if key != "id"} | changes
    values.pop("attending_count", None)  # kept by triggers
    return inserted_id(conn.execute(insert(table).values(values)))


def _main_session(demo: Demo, venue_type: str) -> tuple[int, int]:
    """A main provider's session at a venue of ``venue_type``, and that venue."""
    cs = m.course_sessions
    with demo.engine.connect() as conn:
        row = conn.execute(
            select(cs.c.id, cs.c.venue_id)
            .join(m.venues, m.venues.c.id == cs.c.venue_id)
            .where(
                cs.c.provider_id == demo.manifest["providers"]["main"],
                m.venues.c.venue_type == venue_type,
            )
            .order_by(cs.c.id)
        ).first()
    assert row is not None, f"the demo should have a session at a {venue_type} venue"
    return int(row.id), int(row.venue_id)


def _xml_values(api: Api, path: str, token: str, params: dict[str, str]) -> Any:
    response = api.get(path, token, params={**params, "format": "xml"})
    assert response.status_code == 200, response.text
    return parse_xml(response.content)


@pytest.mark.writes
def test_date_times_across_daylight_saving_changes_in_two_zones(api: Api, demo: Demo) -> None:
    token = _admin(demo)
    source, physical = _main_session(demo, "physical")
    with demo.engine.begin() as conn:
        venues = {
            zone: _copy(conn, m.venues, physical, timezone=zone, name=f"Studio in {zone}")
            for zone in ("Europe/London", "America/New_York")
        }
        sessions = {
            _copy(
                conn, m.course_sessions, source, venue_id=venues[zone], starts_at=start, ends_at=end
            ): (starts_at, ends_at)
            for zone, start, end, starts_at, ends_at in ACROSS_CHANGES
        }

    for session_id, (starts_at, ends_at) in sessions.items():
        path = f"{SESSIONS}/{session_id}"
        body = api.get(path, token).json()
        assert (body["starts_at"], body["ends_at"]) == (starts_at, ends_at)
        xml = _xml_values(api, path, token, {})
        assert (xml["starts_at"], xml["ends_at"]) == (starts_at, ends_at)
        # A date-time alone still reads its zone.
        assert api.get(path, token, params={"fields": "starts_at"}).json() == {
            "starts_at": starts_at
        }
        expanded = api.get(path, token, params={"fields": "ends_at,venue.name"}).json()
        assert expanded["ends_at"] == ends_at

    listed = api.get(
        SESSIONS,
        token,
        params={"venues": ",".join(map(str, venues.values())), "page_size": "100"},
    ).json()
    assert {s["id"]: (s["starts_at"], s["ends_at"]) for s in listed["results"]} == sessions
    as_xml = _xml_values(
        api, SESSIONS, token, {"venues": ",".join(map(str, venues.values())), "page_size": "100"}
    )
    assert {s["id"]: (s["starts_at"], s["ends_at"]) for s in as_xml["results"]} == {
        str(session_id): times for session_id, times in sessions.items()
    }


@pytest.mark.writes
def test_an_online_venues_sessions_are_in_their_providers_zone(api: Api, demo: Demo) -> None:
    """An online venue is no place: its sessions are written in the provider's zone, not in
    the zone its venue row happens to hold."""
    token = _admin(demo)
    online_session, online = _main_session(demo, "online")
    physical_session, physical = _main_session(demo, "physical")
    with demo.engine.begin() as conn:
        conn.execute(
            update(m.venues).where(m.venues.c.id == online).values(timezone="Asia/Kolkata")
        )
        conn.execute(
            update(m.venues).where(m.venues.c.id == physical).values(timezone="Europe/London")
        )
        conn.execute(
            update(m.providers)
            .where(m.providers.c.id == demo.manifest["providers"]["main"])
            .values(timezone="America/New_York")
        )
        for session_id in (online_session, physical_session):
            conn.execute(
                update(m.course_sessions)
                .where(m.course_sessions.c.id == session_id)
                .values(starts_at=_utc(2026, 7, 1, 16, 0), ends_at=_utc(2026, 7, 1, 17, 0))
            )

    online_body = api.get(f"{SESSIONS}/{online_session}", token).json()
    assert (online_body["starts_at"], online_body["ends_at"]) == (
        "2026-07-01T12:00:00-04:00",
        "2026-07-01T13:00:00-04:00",
    )
    assert session_times(demo, online_session) == {
        "starts_at": online_body["starts_at"],
        "ends_at": online_body["ends_at"],
    }
    physical_body = api.get(f"{SESSIONS}/{physical_session}", token).json()
    assert physical_body["starts_at"] == "2026-07-01T17:00:00+01:00"
    xml = _xml_values(api, f"{SESSIONS}/{online_session}", token, {"fields": "starts_at"})
    assert xml == {"starts_at": "2026-07-01T12:00:00-04:00"}


@pytest.mark.writes
def test_a_zone_the_database_does_not_know_is_utc(
    api: Api, demo: Demo, caplog: pytest.LogCaptureFixture
) -> None:
    token = _admin(demo)
    session_id, venue = _main_session(demo, "physical")
    unknown = "Atlantis/Poseidonis"
    ZONES.pop(unknown, None)  # zones are looked up once per process; look again
    with demo.engine.begin() as conn:
        conn.execute(update(m.venues).where(m.venues.c.id == venue).values(timezone=unknown))
        conn.execute(
            update(m.course_sessions)
            .where(m.course_sessions.c.id == session_id)
            .values(starts_at=_utc(2026, 7, 1, 16, 0), ends_at=_utc(2026, 7, 1, 17, 0))
        )
    with caplog.at_level(logging.WARNING, logger="coursebook"):
        response = api.get(f"{SESSIONS}/{session_id}", token)
    assert response.status_code == 200, response.text
    assert response.json()["starts_at"] == "2026-07-01T16:00:00Z"
    assert f"Unknown time zone {unknown!r}" in caplog.text


@pytest.mark.writes
def test_a_rooms_thumbnail_is_dated_in_its_venues_zone(api: Api, demo: Demo) -> None:
    token = _admin(demo)
    session_id, physical = _main_session(demo, "physical")
    created = {
        "Europe/London": (_utc(2026, 7, 1, 12, 0), "2026-07-01T13:00:00+01:00"),
        "America/New_York": (_utc(2026, 1, 15, 12, 0), "2026-01-15T07:00:00-05:00"),
    }
    venues: dict[str, int] = {}
    with demo.engine.begin() as conn:
        image = conn.execute(
            select(m.images.c.id)
            .where(m.images.c.provider_id == demo.manifest["providers"]["main"])
            .order_by(m.images.c.id)
        ).scalar()
        assert image is not None, "the demo should have images"
        for zone, (at, _written) in created.items():
            venues[zone] = _copy(conn, m.venues, physical, timezone=zone)
            thumbnail = _copy(conn, m.images, image, created_at=at)
            conn.execute(
                insert(m.venue_rooms).values(
                    venue_id=venues[zone], name="Studio Z", status="active", thumbnail_id=thumbnail
                )
            )
        conn.execute(
            update(m.course_sessions)
            .where(m.course_sessions.c.id == session_id)
            .values(venue_id=venues["Europe/London"])
        )

    for zone, (_at, written) in created.items():
        params = {"venue": str(venues[zone])}
        (room,) = api.get("/api/v2/venue_rooms", token, params=params).json()["results"]
        assert room["thumbnail"]["created_at"] == written
        (as_xml,) = _xml_values(api, "/api/v2/venue_rooms", token, params)["results"]
        assert as_xml["thumbnail"]["created_at"] == written

    path = f"{SESSIONS}/{session_id}"
    london = created["Europe/London"][1]
    body = api.get(path, token, params={"expand": "venue.venue_rooms"}).json()
    assert [r["thumbnail"]["created_at"] for r in body["venue"]["venue_rooms"]] == [london]
    alone = api.get(path, token, params={"fields": "venue.venue_rooms.thumbnail"}).json()
    (thumbnail,) = (r["thumbnail"] for r in alone["venue"]["venue_rooms"])
    assert thumbnail["created_at"] == london


@pytest.mark.parametrize(
    ("value", "conforms"),
    [
        ("2026-03-30T06:30:00+01:00", True),
        ("2026-01-29T06:30:00Z", True),
        ("2026-01-29T06:30:00+05:30", True),
        ("2026-04-30T06:30:00-04:00", True),
        ("2026-01-29T06:30:00.000Z", False),  # fractions
        ("2026-01-29T06:30:00+00:00", False),  # zero is Z
        ("2026-01-29T06:30:00-00:00", False),
        ("2026-01-29T06:30:00", False),  # no offset
        ("2026-01-29T06:30Z", False),  # no seconds
        ("2026-01-29T06:30:00+0100", False),
        ("2026-01-29T06:30:00+05:60", False),
        ("2026-02-30T06:30:00Z", False),  # no such day
        ("2026-01-29 06:30:00Z", False),
    ],
)
def test_the_contracts_date_time_format(value: str, conforms: bool) -> None:
    assert formats.conforms(value, "date-time") is conforms


def test_written_datetime_agrees_with_teamups_examples() -> None:
    """The tests' own expectation, checked against what TeamUp was seen to write."""
    assert written_datetime(datetime(2026, 1, 29, 6, 30), "Europe/London") == "2026-01-29T06:30:00Z"
    assert (
        written_datetime(_utc(2026, 3, 30, 5, 30), "Europe/London") == "2026-03-30T06:30:00+01:00"
    )
