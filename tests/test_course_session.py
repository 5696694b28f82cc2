"""GET /api/v2/course_sessions/{id}: the plain object, URLs and values from the database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Table, delete, func, insert, select, update

from coursebook import models as m
from tests.support import Api, Demo, inserted_id, session_times

PLAIN_KEYS = [
    "id",
    "object",
    "name",
    "starts_at",
    "ends_at",
    "status",
    "attending_count",
    "max_occupancy",
    "venue",
    "instructors",
    "course",
    "customer_url",
    "provider_url",
]


def session_path(session_id: int | str) -> str:
    return f"/api/v2/course_sessions/{session_id}"


def test_plain_retrieve_matches_the_database(api: Api, demo: Demo) -> None:
    session_id = demo.manifest["course_sessions"]["main"][3]
    response = api.get(session_path(session_id), demo.manifest["tokens"]["admin"])
    assert response.status_code == 200
    body = response.json()
    assert list(body) == PLAIN_KEYS
    with demo.engine.connect() as conn:
        row = conn.execute(
            select(m.course_sessions, m.courses.c.name, m.providers.c.slug)
            .join(m.courses, m.courses.c.id == m.course_sessions.c.course_id)
            .join(m.providers, m.providers.c.id == m.course_sessions.c.provider_id)
            .where(m.course_sessions.c.id == session_id)
        ).one()
        attending = conn.execute(
            select(func.count()).where(
                m.attendances.c.course_session_id == session_id,
                m.attendances.c.status.in_(m.ATTENDING_STATUSES),
            )
        ).scalar_one()
    assert body["id"] == session_id
    assert body["object"] == "course_session"
    assert body["name"] == row.name
    assert body["status"] == row.status
    assert body["attending_count"] == attending
    assert body["max_occupancy"] == row.max_occupancy
    assert body["venue"] == row.venue_id
    assert body["course"] == row.course_id
    assert {key: body[key] for key in ("starts_at", "ends_at")} == session_times(demo, session_id)
    assert body["instructors"] == f"{api.base_url}/api/v2/instructors?course_session={session_id}"
    prefix = f"/p/{row.provider_id}-{row.slug}/"
    assert body["customer_url"] == f"{prefix}c/course_sessions/{session_id}"
    assert body["provider_url"] == f"{prefix}course_sessions/{session_id}"


def test_attending_count_follows_stored_attendances(api: Api, demo: Demo) -> None:
    with demo.engine.connect() as conn:
        counts: dict[int, int] = dict(
            conn.execute(
                select(m.attendances.c.course_session_id, func.count())
                .where(m.attendances.c.status.in_(m.ATTENDING_STATUSES))
                .group_by(m.attendances.c.course_session_id)
            ).all()
        )
    token = demo.manifest["tokens"]["admin"]
    ids = demo.manifest["course_sessions"]["main"][::10]
    seen = {sid: api.get(session_path(sid), token).json()["attending_count"] for sid in ids}
    assert seen == {sid: counts.get(sid, 0) for sid in ids}
    assert len(set(seen.values())) > 1, "the demo data should vary attendance"


def follows_writes(
    demo: Demo,
    table: Table,
    parent: str,
    parents: tuple[int, int],
    flag: str,
    values: tuple[Any, Any, Any, Any],
    extra: dict[str, Any],
    counts: Callable[[], tuple[int, int]],
) -> None:
    """Write rows of ``table`` under two ``parents``; their kept counts must follow.

    ``values`` of ``flag`` are: counted, not counted, counted again, not counted again.
    ``counts`` reads the two parents' counts through the API.
    """
    counted, uncounted, counted_again, uncounted_again = values
    here, there = counts()
    rows = table.c

    def write(statement: Any) -> Any:
        with demo.engine.begin() as conn:
            return conn.execute(statement)

    added: list[int] = []
    try:
        for value in (counted, uncounted):
            result = write(insert(table).values({parent: parents[0], flag: value, **extra}))
            added.append(result.inserted_primary_key[0])
        assert counts() == (here + 1, there)
        write(update(table).where(rows.id == added[1]).values({flag: counted_again}))
        assert counts() == (here + 2, there)
        write(update(table).where(rows.id == added[0]).values({flag: uncounted_again}))
        assert counts() == (here + 1, there)
        write(update(table).where(rows.id == added[1]).values({parent: parents[1]}))
        assert counts() == (here, there + 1)
    finally:
        write(delete(table).where(rows.id.in_(added)))
    assert counts() == (here, there)


def a_customer(demo: Demo) -> int:
    """A customer profile of the main provider."""
    with demo.engine.connect() as conn:
        customer = conn.scalar(
            select(m.customer_profiles.c.id).where(
                m.customer_profiles.c.provider_id == demo.manifest["providers"]["main"]
            )
        )
    assert customer is not None
    return int(customer)


@pytest.mark.writes
def test_attending_count_follows_every_write_to_attendances(api: Api, demo: Demo) -> None:
    """The count is kept by triggers on ``attendances`` (migration 0004), whoever writes."""
    token = demo.manifest["tokens"]["admin"]
    here, there = demo.manifest["course_sessions"]["main"][3:5]

    def counts() -> tuple[int, int]:
        first, second = (
            api.get(session_path(sid), token).json()["attending_count"] for sid in (here, there)
        )
        return first, second

    follows_writes(
        demo,
        m.attendances,
        "course_session_id",
        (here, there),
        "status",
        ("registered", "waitlisted", "attended", "cancelled"),
        {"customer_profile_id": a_customer(demo), "created_at": datetime.now(UTC)},
        counts,
    )


@pytest.mark.writes
def test_active_member_count_follows_every_write_to_customer_memberships(
    api: Api, demo: Demo
) -> None:
    """The count is kept by triggers on ``customer_memberships`` (migration 0005)."""
    token = demo.manifest["tokens"]["admin"]

    def shown() -> dict[int, int]:
        response = api.get(
            "/api/v2/course_sessions",
            token,
            params={"page_size": "100", "expand": "course.offering_type.memberships"},
        )
        return {
            membership["id"]: membership["active_member_count"]
            for session in response.json()["results"]
            for membership in session["course"]["offering_type"]["memberships"]
        }

    here, there = sorted(shown())[:2]

    def counts() -> tuple[int, int]:
        found = shown()
        return found[here], found[there]

    follows_writes(
        demo,
        m.customer_memberships,
        "membership_id",
        (here, there),
        "active",
        (True, False, True, False),
        {"customer_profile_id": a_customer(demo), "starts_on": datetime.now(UTC).date()},
        counts,
    )


@pytest.mark.writes
def test_a_session_with_attendances_can_be_deleted(api: Api, demo: Demo) -> None:
    """Deleting a session cascades to its attendances; their triggers must not get in the way."""
    token = demo.manifest["tokens"]["admin"]
    source = demo.manifest["course_sessions"]["main"][5]
    with demo.engine.begin() as conn:
        original = conn.execute(
            select(m.course_sessions).where(m.course_sessions.c.id == source)
        ).one()
        values = {k: v for k, v in original._mapping.items() if k not in ("id", "attending_count")}
        copy = inserted_id(conn.execute(insert(m.course_sessions).values(values)))
        customer = a_customer(demo)
        conn.execute(
            insert(m.attendances),
            [
                {
                    "course_session_id": copy,
                    "customer_profile_id": customer,
                    "status": status,
                    "created_at": datetime.now(UTC),
                }
                for status in ("registered", "attended", "waitlisted")
            ],
        )
    assert api.get(session_path(copy), token).json()["attending_count"] == 2
    with demo.engine.begin() as conn:
        conn.execute(delete(m.course_sessions).where(m.course_sessions.c.id == copy))
        left = conn.scalar(select(func.count()).where(m.attendances.c.course_session_id == copy))
    assert left == 0
    assert api.get(session_path(copy), token).status_code == 404


@pytest.mark.parametrize(
    "template",
    [
        "/api/v2/course_sessions/{id}",
        "/api/v2/course_sessions/{id}/",
        "/api/v2//course_sessions/{id}/",
        "/api/v2//course_sessions/{id}",
    ],
)
def test_url_forms_answer_directly(api: Api, demo: Demo, template: str) -> None:
    session_id = demo.manifest["course_sessions"]["main"][0]
    response = api.get(template.format(id=session_id), demo.manifest["tokens"]["admin"])
    assert response.status_code == 200
    assert response.json()["id"] == session_id


@pytest.mark.parametrize(
    "raw_id",
    [
        "abc",
        "0",
        "-1",
        "1.5",
        "2147483648",
        "9223372036854775807",
        "9223372036854775808",
        "9" * 5000,
        "%C3%A9",
        "1e3",
    ],
)
def test_bad_ids_are_not_found(api: Api, demo: Demo, raw_id: str) -> None:
    response = api.get(session_path(raw_id), demo.manifest["tokens"]["admin"])
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_missing_id_is_not_found(api: Api, demo: Demo) -> None:
    with demo.engine.connect() as conn:
        top = conn.execute(select(func.max(m.course_sessions.c.id))).scalar_one()
    response = api.get(session_path(top + 1000), demo.manifest["tokens"]["admin"])
    assert response.status_code == 404


def test_another_providers_session_is_not_found(api: Api, demo: Demo) -> None:
    other = demo.manifest["course_sessions"]["other"][0]
    response = api.get(session_path(other), demo.manifest["tokens"]["admin"])
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("role", ["admin", "manager", "attendances", "developer"])
def test_every_reading_role_runs_the_issue_example(api: Api, demo: Demo, role: str) -> None:
    session_id = demo.manifest["course_sessions"]["main"][1]
    response = api.get(
        session_path(session_id),
        demo.manifest["tokens"][role],
        params={
            "expand": "venue.venue_rooms,instructors.availability_schedules,"
            "course.offering_type.category",
            "fields": "id,name,venue,instructors.name,instructors.availability_schedules,"
            "course.offering_type",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["id", "name", "venue", "instructors", "course"]
    assert isinstance(body["venue"]["venue_rooms"], list)
    assert body["instructors"], "every demo session has an instructor"
    for instructor in body["instructors"]:
        assert list(instructor) == ["name", "availability_schedules"]
    assert list(body["course"]) == ["offering_type"]
    offering_type = body["course"]["offering_type"]
    assert offering_type["object"] == "offering_type"
    category = offering_type["category"]
    assert category is None or category["object"] == "offering_type_category"
