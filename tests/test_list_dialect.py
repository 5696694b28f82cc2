"""Lists in TeamUp's dialect: its course-session filters and sort, and empty filters as
absent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, insert, or_, select

from coursebook import models as m
from coursebook.tokens import hash_token
from tests.support import Api, Demo, inserted_id, main_session_ids, walk

SESSIONS = "/api/v2/course_sessions"
cs = m.course_sessions


def ids(api: Api, token: str, **params: str) -> list[int]:
    """The ids of every session the list answers ``params`` with, page after page."""
    query = urlencode({"fields": "id", **params})
    return [row["id"] for row in walk(api, token, f"{SESSIONS}?{query}")]


def admin(demo: Demo) -> str:
    return demo.manifest["tokens"]["admin"]


def as_utc(value: datetime) -> datetime:
    """SQLite keeps no time zone: its datetimes are naive UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# -- sort ------------------------------------------------------------------------------------


def test_sort_start_is_the_default_and_its_aliases_agree(api: Api, demo: Demo) -> None:
    token = admin(demo)
    by_start = ids(api, token, sort="start")
    assert by_start == main_session_ids(demo)
    assert ids(api, token) == by_start
    assert ids(api, token, sort="") == by_start
    assert ids(api, token, sort="starts_at") == by_start
    assert ids(api, token, sort="-start") == by_start[::-1]
    assert ids(api, token, sort="-starts_at") == by_start[::-1]
    assert ids(api, token, sort="-id") == sorted(by_start, reverse=True)


def test_an_unknown_sort_is_a_400_naming_the_valid_ones(api: Api, demo: Demo) -> None:
    response = api.get(SESSIONS, admin(demo), params={"sort": "ordering"})
    assert response.status_code == 400
    assert response.json()["field_errors"] == {
        "sort": [
            "'ordering' is not a valid sort. Valid: start, -start, starts_at, -starts_at, id, -id."
        ]
    }


# -- filters ---------------------------------------------------------------------------------


def test_filters_given_empty_are_absent(api: Api, demo: Demo) -> None:
    empty = {
        name: ""
        for name in (
            "course",
            "venues",
            "instructors",
            "offering_types",
            "status",
            "occupancy_status",
            "starts_at_gte",
            "starts_at_lte",
            "ends_at_gte",
            "ends_at_lte",
            "local_starts_at_gte",
            "local_starts_at_lte",
            "start_gte",
            "start_lte",
            "sort",
        )
    }
    assert ids(api, admin(demo), **empty) == main_session_ids(demo)
    assert ids(api, admin(demo), status=",", venues=" , ") == main_session_ids(demo)


def test_status_takes_several_values(api: Api, demo: Demo) -> None:
    token = admin(demo)
    cancelled = main_session_ids(demo, cs.c.status == "cancelled")
    active = main_session_ids(demo, cs.c.status == "active")
    assert cancelled and active
    assert ids(api, token, status="cancelled") == cancelled
    assert ids(api, token, status="active") == active
    assert ids(api, token, status="active,cancelled") == main_session_ids(demo)
    assert ids(api, token, status="cancelled, cancelled,") == cancelled


def occupancy(demo: Demo) -> dict[str, list[int]]:
    """Each ``occupancy_status`` worked out in Python from the rows, per the docs."""
    with demo.engine.connect() as conn:
        rows = conn.execute(
            select(cs.c.id, cs.c.max_occupancy, cs.c.attending_count)
            .where(cs.c.provider_id == demo.manifest["providers"]["main"])
            .order_by(cs.c.starts_at, cs.c.id)
        ).all()
        waitlisted = set(
            conn.execute(
                select(m.attendances.c.course_session_id).where(
                    m.attendances.c.status == "waitlisted"
                )
            ).scalars()
        )
    full = {
        row.id for row in rows if row.max_occupancy and row.attending_count >= row.max_occupancy
    }
    return {
        "full": [row.id for row in rows if row.id in full],
        "not_full": [row.id for row in rows if row.id not in full],
        "has_registrations": [row.id for row in rows if row.attending_count > 0],
        "has_waitlist": [row.id for row in rows if row.id in waitlisted],
        "empty": [row.id for row in rows if row.attending_count == 0],
    }


def test_occupancy_status(api: Api, demo: Demo) -> None:
    expected = occupancy(demo)
    token = admin(demo)
    for status, sessions in expected.items():
        assert sessions, f"the demo data should have {status} sessions"
        assert ids(api, token, occupancy_status=status) == sessions, status
    either = set(expected["full"]) | set(expected["empty"])
    assert set(ids(api, token, occupancy_status="full,empty")) == either


def test_unlimited_sessions_are_never_full(api: Api, demo: Demo) -> None:
    with demo.engine.connect() as conn:
        unlimited = set(
            conn.execute(
                select(cs.c.id).where(
                    cs.c.provider_id == demo.manifest["providers"]["main"],
                    or_(cs.c.max_occupancy.is_(None), cs.c.max_occupancy == 0),
                )
            ).scalars()
        )
    assert unlimited, "the demo data should have sessions of unlimited occupancy"
    token = admin(demo)
    assert not unlimited & set(ids(api, token, occupancy_status="full"))
    assert unlimited <= set(ids(api, token, occupancy_status="not_full"))


def test_deprecated_start_filters_are_starts_at(api: Api, demo: Demo) -> None:
    token = admin(demo)
    bounds = {"gte": "2025-09-01T00:00+01:00", "lte": "2025-10-01"}
    for op, value in bounds.items():
        assert ids(api, token, **{f"start_{op}": value}) == ids(
            api, token, **{f"starts_at_{op}": value}
        )
    both = ids(api, token, start_gte=bounds["gte"], start_lte=bounds["lte"])
    assert both and both == ids(
        api, token, starts_at_gte=bounds["gte"], starts_at_lte=bounds["lte"]
    )


def test_minute_precision_offsets(api: Api, demo: Demo) -> None:
    bound = datetime(2025, 9, 1, 6, 30, tzinfo=UTC)
    expected = main_session_ids(demo, cs.c.starts_at >= bound)
    assert expected
    assert ids(api, admin(demo), starts_at_gte="2025-09-01T08:30+02:00") == expected
    assert ids(api, admin(demo), starts_at_gte="2025-09-01T01:30-05:00") == expected


def test_a_plain_date_upper_bound_covers_the_whole_day(api: Api, demo: Demo) -> None:
    day_end = datetime(2025, 9, 2, tzinfo=UTC)
    expected = main_session_ids(demo, cs.c.starts_at < day_end)
    assert len(expected) > len(
        main_session_ids(demo, cs.c.starts_at <= day_end - timedelta(days=1))
    )
    token = admin(demo)
    assert ids(api, token, starts_at_lte="2025-09-01") == expected
    assert ids(api, token, start_lte="2025-09-01") == expected
    ending = main_session_ids(demo, cs.c.ends_at < day_end)
    assert ids(api, token, ends_at_lte="2025-09-01") == ending


def test_a_plus_sent_unencoded_is_told_to_be_percent_encoded(api: Api, demo: Demo) -> None:
    response = api.get(f"{SESSIONS}?starts_at_gte=2026-01-02T00:00+00:00", admin(demo))
    assert response.status_code == 400
    [message] = response.json()["field_errors"]["starts_at_gte"]
    assert "%2B" in message


def test_instructors_me_is_the_callers_own_instructor(api: Api, demo: Demo) -> None:
    tokens = demo.manifest["tokens"]
    teaching = ids(api, tokens["instructor"])
    assert teaching
    assert ids(api, tokens["instructor"], instructors="me") == teaching
    for role in ("admin", "customer", "developer"):
        assert ids(api, tokens[role], instructors="me") == [], role


@pytest.mark.writes
def test_me_names_a_full_staff_members_instructor_too(api: Api, demo: Demo) -> None:
    """An admin who also teaches: ``me`` is their sessions; with an id, theirs or its."""
    main = demo.manifest["providers"]["main"]
    with demo.engine.begin() as conn:
        profile = staff_profile_of(conn, admin(demo), main)
        mine = inserted_id(
            conn.execute(
                insert(m.instructors).values(
                    provider_id=main,
                    staff_profile_id=profile,
                    name="Ada Admin",
                    icalendar_key="k" * 32,
                )
            )
        )
        taught = main_session_ids(demo)[10:14]
        conn.execute(
            insert(m.course_session_instructors),
            [{"course_session_id": s, "instructor_id": mine} for s in taught],
        )
        someone = conn.execute(
            select(m.course_session_instructors.c.instructor_id).where(
                m.course_session_instructors.c.course_session_id == main_session_ids(demo)[100]
            )
        ).scalar_one()
        theirs = set(
            conn.execute(
                select(m.course_session_instructors.c.course_session_id).where(
                    m.course_session_instructors.c.instructor_id == someone
                )
            ).scalars()
        )
    token = admin(demo)
    assert ids(api, token, instructors="me") == taught
    both = ids(api, token, instructors=f"{someone},me")
    assert both == main_session_ids(demo, cs.c.id.in_(theirs | set(taught)))


def staff_profile_of(conn: Connection, token: str, provider_id: int) -> int:
    """The staff profile at ``provider_id`` of the user ``token`` belongs to."""
    return int(
        conn.execute(
            select(m.staff_profiles.c.id)
            .join(m.api_tokens, m.api_tokens.c.user_id == m.staff_profiles.c.user_id)
            .where(
                m.api_tokens.c.token_hash == hash_token(token),
                m.staff_profiles.c.provider_id == provider_id,
            )
        ).scalar_one()
    )


# -- local start times, in each venue's zone --------------------------------------------------

#: Zones far apart, with and without daylight saving (UTC+14 and UTC-11 among them).
ZONES = ("America/New_York", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Asia/Kolkata")


@pytest.fixture
def zoned(demo: Demo) -> None:
    """Venues of the main provider in ``ZONES``, each with a session every 40 minutes over
    four days around 2026-03-08 (New York's spring change) and 2026-11-01 (its autumn
    one)."""
    main = demo.manifest["providers"]["main"]
    with demo.engine.begin() as conn:
        course_id = conn.execute(
            select(cs.c.course_id).where(cs.c.id == main_session_ids(demo)[0])
        ).scalar_one()
        sessions = []
        for zone in ZONES:
            venue_id = inserted_id(
                conn.execute(
                    insert(m.venues).values(
                        provider_id=main,
                        name=f"Studio in {zone}",
                        address="1 Example Street",
                        timezone=zone,
                        venue_type="physical",
                        lat=0.0,
                        lng=0.0,
                    )
                )
            )
            for start in (datetime(2026, 3, 6, tzinfo=UTC), datetime(2026, 10, 30, tzinfo=UTC)):
                for n in range(4 * 36):
                    at = start + timedelta(minutes=40 * n)
                    sessions.append(
                        {
                            "provider_id": main,
                            "course_id": course_id,
                            "venue_id": venue_id,
                            "starts_at": at,
                            "ends_at": at + timedelta(hours=1),
                            "status": "active",
                        }
                    )
        conn.execute(insert(cs), sessions)


def local_starts(demo: Demo) -> list[tuple[int, datetime]]:
    """Every main-provider session with its start as a wall-clock time at its venue."""
    with demo.engine.connect() as conn:
        rows = conn.execute(
            select(cs.c.id, cs.c.starts_at, m.venues.c.timezone)
            .join(m.venues, m.venues.c.id == cs.c.venue_id)
            .where(cs.c.provider_id == demo.manifest["providers"]["main"])
            .order_by(cs.c.starts_at, cs.c.id)
        ).all()
    return [
        (row.id, as_utc(row.starts_at).astimezone(ZoneInfo(row.timezone)).replace(tzinfo=None))
        for row in rows
    ]


@pytest.mark.writes
@pytest.mark.parametrize(
    ("params", "low", "high"),
    [
        ({"local_starts_at_gte": "2026-03-08T02:30:00"}, datetime(2026, 3, 8, 2, 30), None),
        ({"local_starts_at_lte": "2026-03-08T06:30:00"}, None, datetime(2026, 3, 8, 6, 30)),
        (
            {"local_starts_at_gte": "2026-11-01T01:20", "local_starts_at_lte": "2026-11-01T01:40"},
            datetime(2026, 11, 1, 1, 20),
            datetime(2026, 11, 1, 1, 40),
        ),
        (
            {"local_starts_at_gte": "2026-11-01", "local_starts_at_lte": "2026-11-01"},
            datetime(2026, 11, 1),
            datetime(2026, 11, 2) - timedelta(microseconds=1),
        ),
        (
            {"local_starts_at_gte": "2026-03-07T06:30:00-05:00"},
            datetime(2026, 3, 7, 6, 30),
            None,
        ),
    ],
)
def test_local_starts_compare_wall_clock_times_in_each_venues_zone(
    api: Api,
    demo: Demo,
    zoned: None,
    params: dict[str, str],
    low: datetime | None,
    high: datetime | None,
) -> None:
    expected = [
        session
        for session, local in local_starts(demo)
        if (low is None or local >= low) and (high is None or local <= high)
    ]
    by_utc = main_session_ids(demo)
    assert expected and len(expected) < len(by_utc)
    assert ids(api, admin(demo), **params) == expected
    body = api.get(SESSIONS, admin(demo), params={**params, "page_size": "7"}).json()
    assert body["count"] == len(expected)
