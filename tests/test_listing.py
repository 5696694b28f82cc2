"""List endpoints: related collections that resolve, filters, sorting and pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from coursebook import models as m
from coursebook.demo import FULL_EXPANSION
from tests.support import Api, Demo, get, main_session_ids, rich_session, walk


def page(api: Api, demo: Demo, path: str, role: str = "admin", **params: str) -> dict[str, Any]:
    response = api.get(path, demo.manifest["tokens"][role], params=params or None)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert list(body) == ["count", "next", "previous", "results"]
    return body


def test_every_related_collection_resolves_to_the_expansion(api: Api, demo: Demo) -> None:
    token = demo.manifest["tokens"]["admin"]
    session_id = rich_session(demo, big_course=True)
    plain = get(api, demo, session_id, expand="venue,course.offering_type")
    expanded = get(api, demo, session_id, expand=FULL_EXPANSION)
    pairs = [
        (
            plain["instructors"],
            "expand=availability_schedules,icalendar_links",
            expanded["instructors"],
        ),
        (plain["venue"]["venue_rooms"], "", expanded["venue"]["venue_rooms"]),
        (
            plain["course"]["offering_type"]["instructors"],
            "expand=availability_schedules",
            expanded["course"]["offering_type"]["instructors"],
        ),
        (plain["course"]["course_sessions"], "", expanded["course"]["course_sessions"]),
    ]
    for url, extra, objects in pairs:
        assert url.startswith(api.base_url + "/api/v2/")
        followed = walk(api, token, f"{url}&{extra}" if extra else url)
        assert followed == objects, url
    assert len(expanded["course"]["course_sessions"]) >= 200


def test_pages_walk_without_repeats_or_gaps(api: Api, demo: Demo) -> None:
    token = demo.manifest["tokens"]["admin"]
    expected = main_session_ids(demo)
    assert len(expected) >= 250
    for size in (7, 100):
        results = walk(api, token, f"/api/v2/course_sessions?page_size={size}&fields=id")
        ids = [r["id"] for r in results]
        assert ids == expected, size


def test_next_and_previous_keep_every_other_parameter(api: Api, demo: Demo) -> None:
    params = {"page_size": "5", "page": "3", "status": "active", "fields": "id", "sort": "-id"}
    body = page(api, demo, "/api/v2/course_sessions", **params)
    for link, number in ((body["next"], "4"), (body["previous"], "2")):
        parts = urlsplit(link)
        assert f"{parts.scheme}://{parts.netloc}" == api.base_url
        assert parts.path == "/api/v2/course_sessions"
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        assert query == {**params, "page": number}
    second = page(api, demo, "/api/v2/course_sessions", page_size="5", page="2")
    assert parse_qs(urlsplit(second["previous"]).query) == {"page_size": ["5"]}
    first = page(api, demo, "/api/v2/course_sessions", page_size="5")
    assert first["previous"] is None


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"sort": "name"}, "sort"),
        ({"sort": "start,-id"}, "sort"),
        ({"course": "1,x"}, "course"),
        ({"venues": "99999999999999999999"}, "venues"),
        ({"instructors": "1.5"}, "instructors"),
        ({"instructors": "me,you"}, "instructors"),
        ({"course": "me"}, "course"),
        ({"offering_types": "-3"}, "offering_types"),
        ({"status": "done"}, "status"),
        ({"status": "active,done"}, "status"),
        ({"occupancy_status": "crowded"}, "occupancy_status"),
        ({"starts_at_gte": "yesterday"}, "starts_at_gte"),
        ({"ends_at_lte": "2026-13-45"}, "ends_at_lte"),
        ({"local_starts_at_gte": "06:30"}, "local_starts_at_gte"),
        ({"start_lte": "2026-01-02T00:00:00 00:00"}, "start_lte"),
        ({"expand": "venu"}, "expand"),
    ],
)
def test_bad_list_parameters_are_clear_400s(
    api: Api, demo: Demo, params: dict[str, str], parameter: str
) -> None:
    response = api.get("/api/v2/course_sessions", demo.manifest["tokens"]["admin"], params=params)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "parameter_invalid"
    assert list(body["field_errors"]) == [parameter]


def test_filters_match_the_database(api: Api, demo: Demo) -> None:
    cs = m.course_sessions
    with demo.engine.connect() as conn:
        course_id, venue_id = conn.execute(
            select(cs.c.course_id, cs.c.venue_id).where(
                cs.c.id == demo.manifest["course_sessions"]["main"][5]
            )
        ).one()
        instructor_id = conn.execute(
            select(m.course_session_instructors.c.instructor_id).where(
                m.course_session_instructors.c.course_session_id
                == demo.manifest["course_sessions"]["main"][5]
            )
        ).scalar()
        offering_type_id = conn.execute(
            select(m.courses.c.offering_type_id).where(m.courses.c.id == course_id)
        ).scalar_one()
        taught = set(
            conn.execute(
                select(m.course_session_instructors.c.course_session_id).where(
                    m.course_session_instructors.c.instructor_id == instructor_id
                )
            ).scalars()
        )
        of_type = set(
            conn.execute(
                select(m.courses.c.id).where(m.courses.c.offering_type_id == offering_type_id)
            ).scalars()
        )
    middle = datetime(2025, 6, 1, tzinfo=UTC)
    cases: list[tuple[dict[str, str], list[int]]] = [
        ({"course": str(course_id)}, main_session_ids(demo, cs.c.course_id == course_id)),
        ({"venues": f"{venue_id},{venue_id}"}, main_session_ids(demo, cs.c.venue_id == venue_id)),
        ({"instructors": str(instructor_id)}, main_session_ids(demo, cs.c.id.in_(taught))),
        (
            {"offering_types": str(offering_type_id)},
            main_session_ids(demo, cs.c.course_id.in_(of_type)),
        ),
        ({"status": "cancelled"}, main_session_ids(demo, cs.c.status == "cancelled")),
        (
            {"starts_at_gte": "2025-06-01T00:00:00Z"},
            main_session_ids(demo, cs.c.starts_at >= middle),
        ),
        (
            {"starts_at_lte": "2025-06-01"},
            main_session_ids(demo, cs.c.starts_at < middle + timedelta(days=1)),
        ),
        (
            {"ends_at_gte": "2025-06-01T02:00:00+02:00"},
            main_session_ids(demo, cs.c.ends_at >= middle),
        ),
        ({"ends_at_lte": "2025-06-01T00:00:00Z"}, main_session_ids(demo, cs.c.ends_at <= middle)),
    ]
    token = demo.manifest["tokens"]["admin"]
    for params, expected in cases:
        assert expected, f"the demo data should match {params}"
        query = "&".join(f"{k}={v}" for k, v in params.items()).replace("+", "%2B")
        found = walk(api, token, f"/api/v2/course_sessions?fields=id&{query}")
        assert [r["id"] for r in found] == expected, params


def test_other_providers_ids_match_nothing(api: Api, demo: Demo) -> None:
    other = demo.manifest["course_sessions"]["other"][0]
    cs = m.course_sessions
    with demo.engine.connect() as conn:
        course_id, venue_id = conn.execute(
            select(cs.c.course_id, cs.c.venue_id).where(cs.c.id == other)
        ).one()
    for path in (
        f"/api/v2/course_sessions?course={course_id}",
        f"/api/v2/course_sessions?venues={venue_id}",
        f"/api/v2/instructors?course_session={other}",
        f"/api/v2/venue_rooms?venue={venue_id}",
    ):
        body = page(api, demo, path)
        assert (body["count"], body["results"]) == (0, []), path


def test_unfiltered_lists_hold_only_the_providers_rows(api: Api, demo: Demo) -> None:
    main = demo.manifest["providers"]["main"]
    with demo.engine.connect() as conn:
        instructors = list(
            conn.execute(
                select(m.instructors.c.id)
                .where(m.instructors.c.provider_id == main)
                .order_by(m.instructors.c.id)
            ).scalars()
        )
        rooms = list(
            conn.execute(
                select(m.venue_rooms.c.id)
                .join(m.venues, m.venues.c.id == m.venue_rooms.c.venue_id)
                .where(m.venues.c.provider_id == main)
                .order_by(m.venue_rooms.c.id)
            ).scalars()
        )
    token = demo.manifest["tokens"]["admin"]
    assert [i["id"] for i in walk(api, token, "/api/v2/instructors")] == instructors
    assert [r["id"] for r in walk(api, token, "/api/v2/venue_rooms")] == rooms


def test_sorting(api: Api, demo: Demo) -> None:
    token = demo.manifest["tokens"]["admin"]
    ascending = [r["id"] for r in walk(api, token, "/api/v2/course_sessions?fields=id")]
    descending = [
        r["id"] for r in walk(api, token, "/api/v2/course_sessions?fields=id&sort=-starts_at")
    ]
    assert descending == ascending[::-1]
    by_id = [r["id"] for r in walk(api, token, "/api/v2/course_sessions?fields=id&sort=id")]
    assert by_id == sorted(ascending)
    assert by_id != ascending, "the demo data should not start in id order"


def test_lists_are_scoped_like_retrieval(api: Api, demo: Demo) -> None:
    lists = demo.manifest["course_sessions"]
    instructor = demo.manifest["tokens"]["instructor"]
    taught = {r["id"] for r in walk(api, instructor, "/api/v2/course_sessions?fields=id")}
    assert taught and taught <= set(lists["instructed"]) | set(lists["main"])
    assert not taught & set(lists["not_instructed"])
    customer = demo.manifest["tokens"]["customer"]
    visible = {r["id"] for r in walk(api, customer, "/api/v2/course_sessions?fields=id")}
    assert visible and not visible & set(lists["customer_hidden"])
    assert set(lists["customer_visible"]) <= visible
    hidden = lists["not_instructed"][0]
    body = page(api, demo, f"/api/v2/instructors?course_session={hidden}", role="instructor")
    assert body["count"] == 0
    hidden = lists["customer_hidden"][0]
    body = page(api, demo, f"/api/v2/instructors?course_session={hidden}", role="customer")
    assert body["count"] == 0
    denied = api.get("/api/v2/course_sessions", demo.manifest["tokens"]["no_permission"])
    assert denied.status_code == 403
    customer_schedules = api.get(
        "/api/v2/instructors", customer, params={"expand": "availability_schedules"}
    )
    assert customer_schedules.status_code == 400


def test_statements_per_page_are_fixed(api: Api, demo: Demo) -> None:
    token = demo.manifest["tokens"]["admin"]
    counts = set()
    for size in ("5", "100"):
        count, body = api.statements(
            "/api/v2/course_sessions",
            token,
            {"page_size": size, "expand": "venue.venue_rooms,instructors.availability_schedules"},
        )
        assert len(body["results"]) == int(size)
        counts.add(count)
    # The page, then on SQLite one per expanded relation (four), on PostgreSQL one per
    # level of them (two): a warm memo holds the token and the count, checked current by
    # the write count the page's statement reads beside it.
    expected = 1 + 4 if api.backend == "sqlite" else 1 + 2
    assert counts == {expected}


def test_lists_in_xml(api: Api, demo: Demo) -> None:
    response = api.get(
        "/api/v2/venue_rooms",
        demo.manifest["tokens"]["admin"],
        params={"format": "xml", "page_size": "2"},
    )
    assert response.status_code == 200
    assert b"<results><list-item><id>" in response.content


@pytest.mark.parametrize("value", ["2147483648", "9223372036854775807"])
def test_ids_past_32_bits_match_nothing(api: Api, demo: Demo, value: str) -> None:
    for path in (
        f"/api/v2/course_sessions?course={value}",
        f"/api/v2/course_sessions?venues={value}&instructors={value}&offering_types={value}",
        f"/api/v2/instructors?course_session={value}",
        f"/api/v2/venue_rooms?venue={value}",
    ):
        body = page(api, demo, path)
        assert (body["count"], body["results"]) == (0, []), path


def test_id_zero_is_refused(api: Api, demo: Demo) -> None:
    response = api.get(
        "/api/v2/venue_rooms", demo.manifest["tokens"]["admin"], params={"venue": "0"}
    )
    assert response.status_code == 400
    assert list(response.json()["field_errors"]) == ["venue"]


def test_customers_learn_nothing_of_offering_types_they_may_not_see(api: Api, demo: Demo) -> None:
    """``instructors?offering_type=ID`` for a draft or private offering type is an empty
    page in customer mode, as if it did not exist; a public one lists its instructors."""
    ot, link = m.offering_types, m.offering_type_instructors
    taught = select(link.c.offering_type_id).distinct()
    with demo.engine.connect() as conn:
        rows = conn.execute(
            select(ot.c.id, ot.c.is_draft, ot.c.customer_visibility).where(
                ot.c.provider_id == demo.manifest["providers"]["main"], ot.c.id.in_(taught)
            )
        ).all()
    hidden = [row.id for row in rows if row.is_draft or row.customer_visibility == "private"]
    public = [row.id for row in rows if not row.is_draft and row.customer_visibility == "public"]
    assert hidden and public, "the demo has both kinds"
    tokens = demo.manifest["tokens"]

    def count(token: str, offering_type: int) -> int:
        response = api.get(
            "/api/v2/instructors", token, params={"offering_type": str(offering_type)}
        )
        assert response.status_code == 200, response.text
        return int(response.json()["count"])

    for offering_type in hidden:
        assert count(tokens["admin"], offering_type) > 0
        assert count(tokens["customer"], offering_type) == 0
    assert all(count(tokens["customer"], offering_type) > 0 for offering_type in public)
