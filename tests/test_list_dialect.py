"""Lists in TeamUp's dialect: its course-session filters and sort, empty filters as
absent, unknown parameters ignored (and named in a header), and Django REST
framework's page-number pagination, down to the bytes of its links."""

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
            "page",
            "page_size",
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


# -- pages, as Django REST framework's page-number pagination --------------------------------


@pytest.mark.parametrize("value", ["0", "-1", "x", "2.0", "9999", "LAST"])
def test_a_page_that_is_no_page_is_404_invalid_page(api: Api, demo: Demo, value: str) -> None:
    response = api.get(SESSIONS, admin(demo), params={"page": value})
    assert response.status_code == 404
    assert response.json() == {
        "code": "not_found",
        "field_errors": {},
        "message": "Invalid page.",
        "type": "invalid_request_error",
    }


@pytest.mark.parametrize("path", [SESSIONS, "/api/v2/instructors", "/api/v2/venue_rooms"])
def test_every_list_pages_as_drf_does(api: Api, demo: Demo, path: str) -> None:
    token = admin(demo)
    count = api.get(path, token).json()["count"]
    assert count > 2
    size = min(100, (count + 1) // 2)
    pages = -(-count // size)
    last = api.get(path, token, params={"page": "last", "page_size": str(size)})
    assert last.status_code == 200
    assert last.json()["next"] is None
    assert len(last.json()["results"]) == count - (pages - 1) * size
    numbered = api.get(path, token, params={"page": str(pages), "page_size": str(size)})
    assert numbered.json() == last.json()
    past = api.get(path, token, params={"page": str(pages + 1), "page_size": str(size)})
    assert past.status_code == 404
    capped = api.get(path, token, params={"page_size": "1000"}).json()
    assert len(capped["results"]) == min(count, 100)
    for fallback in ("0", "-5", "ten", ""):
        answer = api.get(path, token, params={"page_size": fallback, "page": "1"}).json()
        assert len(answer["results"]) == min(count, 100), fallback


def test_page_one_of_an_empty_list_is_an_empty_page(api: Api, demo: Demo) -> None:
    other = demo.manifest["course_sessions"]["other"][0]
    with demo.engine.connect() as conn:
        course_id = conn.execute(select(cs.c.course_id).where(cs.c.id == other)).scalar_one()
    for params in ({"course": str(course_id)}, {"course": str(course_id), "page": "1"}):
        response = api.get(SESSIONS, admin(demo), params=params)
        assert response.status_code == 200
        assert response.json() == {"count": 0, "next": None, "previous": None, "results": []}
    assert (
        api.get(SESSIONS, admin(demo), params={"course": str(course_id), "page": "2"}).status_code
        == 404
    )


def test_links_are_written_exactly_as_drf_writes_them(api: Api, demo: Demo) -> None:
    query = (
        "venues=&starts_at_gte=2025-06-01T00:00%2B00:00&expand=instructors,venue"
        "&fields=id,name,venue.name&page_size=5&page=2&status=active&cours=x"
    )
    body = api.get(f"{SESSIONS}/?{query}", admin(demo)).json()
    kept = (
        "cours=x&expand=instructors%2Cvenue&fields=id%2Cname%2Cvenue.name"
        "{page}&page_size=5&starts_at_gte=2025-06-01T00%3A00%2B00%3A00&status=active&venues="
    )
    assert body["next"] == f"{api.base_url}{SESSIONS}?" + kept.format(page="&page=3")
    assert body["previous"] == f"{api.base_url}{SESSIONS}?" + kept.format(page="")
    last = api.get(f"{SESSIONS}?page=2&page_size=500", admin(demo)).json()
    assert last["previous"] == f"{api.base_url}{SESSIONS}?page_size=500"


def test_page_size_500_walks_pages_of_100(api: Api, demo: Demo) -> None:
    found = ids(api, admin(demo), page_size="500")
    assert found == main_session_ids(demo)
    assert len(found) > 300


# -- unknown parameters ---------------------------------------------------------------------

IGNORED = "coursebook-ignored-parameters"


def test_unknown_parameters_are_ignored_and_named(api: Api, demo: Demo) -> None:
    token = admin(demo)
    plain = api.get(SESSIONS, token, params={"page_size": "3"})
    assert IGNORED not in plain.headers
    typo = api.get(SESSIONS, token, params={"page_size": "3", "ordering": "-start", "cours": "1"})
    assert typo.status_code == 200
    assert typo.headers[IGNORED] == "cours, ordering"
    assert typo.json()["results"] == plain.json()["results"]
    session = demo.manifest["course_sessions"]["main"][0]
    retrieve = api.get(f"{SESSIONS}/{session}", token, params={"sort": "start", "expand": "venue"})
    assert (retrieve.status_code, retrieve.headers[IGNORED]) == (200, "sort")
    assert IGNORED not in api.get(f"{SESSIONS}/{session}", token, params={"fields": "id"}).headers
    assert api.get("/healthz", params={"verbose": "1"}).headers[IGNORED] == "verbose"


def test_errors_name_the_ignored_parameters_too(api: Api, demo: Demo) -> None:
    bad_sort = api.get(SESSIONS, admin(demo), params={"sort": "name", "order": "asc"})
    assert (bad_sort.status_code, bad_sort.headers[IGNORED]) == (400, "order")
    no_token = api.get(SESSIONS, params={"page": "1", "limit": "5"})
    assert (no_token.status_code, no_token.headers[IGNORED]) == (401, "limit")
    bad_page = api.get(SESSIONS, admin(demo), params={"page": "99", "offset": "0"})
    assert (bad_page.status_code, bad_page.headers[IGNORED]) == (404, "offset")


def test_an_ignored_name_is_percent_encoded_in_the_header(api: Api, demo: Demo) -> None:
    response = api.get(f"{SESSIONS}?a%0D%0Ab=1&%C3%A9t%C3%A9=2&page_size=1", admin(demo))
    assert response.status_code == 200
    assert response.headers[IGNORED] == "a%0D%0Ab, %C3%A9t%C3%A9"


# -- a client written as TeamUp's are ------------------------------------------------------------


def customer_visible(demo: Demo, since: datetime, until: datetime) -> set[int]:
    """The main provider's sessions starting in [since, until) that the demo customer may
    see, worked out from the tables (SEMANTICS.md section 4), not through the app."""
    main = demo.manifest["providers"]["main"]
    ot, courses, held = m.offering_types, m.courses, m.customer_memberships
    with demo.engine.connect() as conn:
        customer = conn.execute(
            select(m.customer_profiles.c.id)
            .join(m.api_tokens, m.api_tokens.c.user_id == m.customer_profiles.c.user_id)
            .where(
                m.api_tokens.c.token_hash == hash_token(demo.manifest["tokens"]["customer"]),
                m.customer_profiles.c.provider_id == main,
            )
        ).scalar_one()
        memberships = set(
            conn.execute(
                select(m.offering_type_memberships.c.offering_type_id)
                .join(held, held.c.membership_id == m.offering_type_memberships.c.membership_id)
                .where(held.c.customer_profile_id == customer, held.c.active.is_(True))
            ).scalars()
        )
        rows = conn.execute(
            select(cs.c.id, cs.c.starts_at, courses.c.published, ot.c.id.label("type"))
            .add_columns(ot.c.is_draft, ot.c.customer_visibility)
            .join(courses, courses.c.id == cs.c.course_id)
            .join(ot, ot.c.id == courses.c.offering_type_id)
            .where(cs.c.provider_id == main)
        ).all()
    return {
        row.id
        for row in rows
        if since <= as_utc(row.starts_at) < until
        and row.published
        and not row.is_draft
        and (
            row.customer_visibility == "public"
            or (row.customer_visibility == "membership_holders" and row.type in memberships)
        )
    }


@pytest.mark.wire
def test_a_teamup_style_client_walks_the_schedule_and_sees_each_session_once(
    api: Api, demo: Demo
) -> None:
    since, until = datetime(2025, 11, 3, tzinfo=UTC), datetime(2026, 2, 2, tzinfo=UTC)
    params = {
        "course": "",
        "venues": "",
        "instructors": "",
        "offering_types": "",
        "occupancy_status": "",
        "local_starts_at_gte": "",
        "local_starts_at_lte": "",
        "status": "",
        "starts_at_gte": "2025-11-03T00:00+00:00",
        "starts_at_lte": "2026-02-01T23:59+00:00",
        "sort": "start",
        "page_size": "500",
        "expand": "instructors,venue",
        "fields": "id,name,starts_at,venue.name,venue.timezone,instructors.name",
    }
    headers = {
        "authorization": f"Token {demo.manifest['tokens']['customer']}",
        "teamup-provider-id": str(demo.manifest["providers"]["main"]),
        "teamup-request-mode": "customer",
        "accept": "application/json",
    }
    results = walk(api, None, f"{SESSIONS}?{urlencode(params)}", headers=headers)
    seen = [row["id"] for row in results]
    assert len(seen) == len(set(seen)), "a session came twice"
    assert len(seen) > 100
    assert set(seen) == customer_visible(demo, since, until - timedelta(minutes=1))
    assert set(seen) <= set(demo.manifest["course_sessions"]["customer_visible"])
    starts = [datetime.fromisoformat(row["starts_at"].replace("Z", "+00:00")) for row in results]
    assert starts == sorted(starts)  # instants: the strings carry each venue's offset
    assert all(set(row["venue"]) == {"name", "timezone"} for row in results)
