"""GET /api/v2/course_sessions/{id}: the plain object, URLs and values from the database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, select, update

from coursebook import models as m
from tests.conftest import Api, Demo

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
    assert body["starts_at"].startswith(row.starts_at.strftime("%Y-%m-%dT%H:%M:%S"))
    assert body["starts_at"].endswith("Z")
    assert body["instructors"] == (
        f"{api.live.base_url}/api/v2/instructors?course_session={session_id}"
    )
    prefix = f"/p/{row.provider_id}-{row.slug}/"
    assert body["customer_url"] == f"{prefix}c/course_sessions/{session_id}"
    assert body["provider_url"] == f"{prefix}course_sessions/{session_id}"


def test_attending_count_follows_stored_attendances(api: Api, demo: Demo) -> None:
    with demo.engine.connect() as conn:
        counts = dict(
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


def test_attending_count_follows_every_write_to_attendances(api: Api, demo: Demo) -> None:
    """The count is kept by triggers on ``attendances`` (migration 0004), whoever writes."""
    token = demo.manifest["tokens"]["admin"]
    here, there = demo.manifest["course_sessions"]["main"][3:5]

    def counts() -> tuple[int, int]:
        return tuple(  # type: ignore[return-value]
            api.get(session_path(sid), token).json()["attending_count"] for sid in (here, there)
        )

    def write(statement: Any) -> Any:
        with demo.engine.begin() as conn:
            return conn.execute(statement)

    start_here, start_there = counts()
    with demo.engine.connect() as conn:
        customer = conn.scalar(
            select(m.customer_profiles.c.id)
            .where(m.customer_profiles.c.provider_id == demo.manifest["providers"]["main"])
            .limit(1)
        )
    rows = m.attendances.c
    new = {"customer_profile_id": customer, "created_at": datetime.now(UTC)}
    added: list[int] = []
    try:
        for status in ("registered", "waitlisted"):
            result = write(
                insert(m.attendances).values(course_session_id=here, status=status, **new)
            )
            added.append(result.inserted_primary_key[0])
        assert counts() == (start_here + 1, start_there)
        write(update(m.attendances).where(rows.id == added[1]).values(status="attended"))
        assert counts() == (start_here + 2, start_there)
        write(update(m.attendances).where(rows.id == added[0]).values(status="cancelled"))
        assert counts() == (start_here + 1, start_there)
        write(update(m.attendances).where(rows.id == added[1]).values(course_session_id=there))
        assert counts() == (start_here, start_there + 1)
    finally:
        write(delete(m.attendances).where(rows.id.in_(added)))
    assert counts() == (start_here, start_there)


def test_active_member_count_follows_every_write_to_customer_memberships(
    api: Api, demo: Demo
) -> None:
    """The count is kept by triggers on ``customer_memberships`` (migration 0005)."""
    token = demo.manifest["tokens"]["admin"]
    main = demo.manifest["providers"]["main"]
    with demo.engine.connect() as conn:
        customer = conn.scalar(
            select(m.customer_profiles.c.id).where(m.customer_profiles.c.provider_id == main)
        )

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

    def write(statement: Any) -> Any:
        with demo.engine.begin() as conn:
            return conn.execute(statement)

    rows = m.customer_memberships.c
    start_here, start_there = counts()
    new = {"customer_profile_id": customer, "starts_on": datetime.now(UTC).date()}
    added: list[int] = []
    try:
        for active in (True, False):
            result = write(
                insert(m.customer_memberships).values(membership_id=here, active=active, **new)
            )
            added.append(result.inserted_primary_key[0])
        assert counts() == (start_here + 1, start_there)
        write(update(m.customer_memberships).where(rows.id == added[1]).values(active=True))
        assert counts() == (start_here + 2, start_there)
        write(update(m.customer_memberships).where(rows.id == added[0]).values(active=False))
        assert counts() == (start_here + 1, start_there)
        write(update(m.customer_memberships).where(rows.id == added[1]).values(membership_id=there))
        assert counts() == (start_here, start_there + 1)
    finally:
        write(delete(m.customer_memberships).where(rows.id.in_(added)))
    assert counts() == (start_here, start_there)


def test_a_session_with_attendances_can_be_deleted(api: Api, demo: Demo) -> None:
    """Deleting a session cascades to its attendances; their triggers must not get in the way."""
    token = demo.manifest["tokens"]["admin"]
    source = demo.manifest["course_sessions"]["main"][5]
    with demo.engine.begin() as conn:
        original = conn.execute(
            select(m.course_sessions).where(m.course_sessions.c.id == source)
        ).one()
        values = {k: v for k, v in original._mapping.items() if k not in ("id", "attending_count")}
        copy = conn.execute(insert(m.course_sessions).values(values)).inserted_primary_key[0]
        customer = conn.scalar(
            select(m.customer_profiles.c.id).where(
                m.customer_profiles.c.provider_id == original.provider_id
            )
        )
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
