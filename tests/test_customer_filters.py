"""In customer mode, no list filter and no related collection matches more than the
customer may read (docs/access.md), whatever ids it names: both providers' ids, of
visible and hidden sessions, courses, venues, instructors and offering types.

The oracle is SQL written from the access rules, not ``coursebook.access``: the
sessions a customer may see (``sessions_a_customer_may_see``) and the offering types it
may book; a related collection of something it may not read is empty.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import and_, exists, or_, select

from coursebook import models as m
from tests.support import Api, Demo, customer_profile_of, sessions_a_customer_may_see, walk

#: The customers: a customer-only user, and a user with staff and customer profiles
#: asking for customer mode.
CUSTOMERS = {"customer": {}, "dual_mode": {"Teamup-Request-Mode": "customer"}}
#: Filters of /api/v2/course_sessions naming ids, and the table their ids are from.
SESSION_ID_FILTERS = {
    "course": m.courses,
    "venues": m.venues,
    "instructors": m.instructors,
    "offering_types": m.offering_types,
}
#: Filters whose value is no id: what they match must still be visible.
SESSION_VALUE_FILTERS = {
    "status": ["active", "cancelled", "active,cancelled"],
    "occupancy_status": ["full", "not_full", "has_registrations", "has_waitlist", "empty"],
    "starts_at_gte": ["2020-01-01", "2026-06-01T00:00Z"],
    "ends_at_lte": ["2030-01-01", "2026-06-01"],
    "local_starts_at_gte": ["2020-01-01T00:00:00"],
    "start_lte": ["2035-01-01"],
}


class Oracle:
    """What one customer may read, from the rules."""

    def __init__(self, demo: Demo, role: str) -> None:
        self.visible = sessions_a_customer_may_see(demo, customer_profile_of(demo, role))
        profile = customer_profile_of(demo, role)
        ot = m.offering_types
        holds = exists().where(
            m.offering_type_memberships.c.offering_type_id == ot.c.id,
            m.customer_memberships.c.membership_id == m.offering_type_memberships.c.membership_id,
            m.customer_memberships.c.customer_profile_id == profile,
            m.customer_memberships.c.active.is_(True),
        )
        with demo.engine.connect() as conn:
            self.bookable = frozenset(
                conn.scalars(
                    select(ot.c.id).where(
                        ot.c.provider_id == demo.manifest["providers"]["main"],
                        ot.c.is_draft.is_(False),
                        or_(
                            ot.c.customer_visibility == "public",
                            and_(ot.c.customer_visibility == "membership_holders", holds),
                        ),
                    )
                )
            )
            main_venues = select(m.venues.c.id).where(
                m.venues.c.provider_id == demo.manifest["providers"]["main"]
            )
            rooms = m.venue_rooms.c
            #: Venues are not hidden from customers: the rooms of the provider's venues.
            self.rooms = pairs_of(
                conn.execute(
                    select(rooms.venue_id, rooms.id).where(rooms.venue_id.in_(main_venues))
                )
            )


def ids_of(demo: Demo, table: Any) -> list[int]:
    with demo.engine.connect() as conn:
        return sorted(conn.scalars(select(table.c.id)))


def pairs(demo: Demo, table: Any, left: str, right: str) -> dict[int, frozenset[int]]:
    """``left`` -> the ``right`` values beside it in ``table``."""
    with demo.engine.connect() as conn:
        return pairs_of(conn.execute(select(table.c[left], table.c[right])))


def pairs_of(rows: Any) -> dict[int, frozenset[int]]:
    """The first value of each row -> the second values beside it."""
    found: dict[int, set[int]] = {}
    for a, b in rows:
        found.setdefault(a, set()).add(b)
    return {key: frozenset(values) for key, values in found.items()}


def results(api: Api, role: str, path: str, params: dict[str, str], demo: Demo) -> set[int]:
    query = "&".join(f"{k}={v}" for k, v in {**params, "page_size": "100"}.items())
    headers = CUSTOMERS[role]
    token = demo.manifest["tokens"][role]
    return {row["id"] for row in walk(api, token, f"{path}?{query}", headers=dict(headers))}


SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(data=st.data())
def test_session_filters_match_only_visible_sessions(api: Api, demo: Demo, data: Any) -> None:
    role = data.draw(st.sampled_from(sorted(CUSTOMERS)))
    oracle = Oracle(demo, role)
    name = data.draw(st.sampled_from([*SESSION_ID_FILTERS, *SESSION_VALUE_FILTERS]))
    if name in SESSION_ID_FILTERS:
        ids = data.draw(
            st.lists(
                st.sampled_from(ids_of(demo, SESSION_ID_FILTERS[name])), min_size=1, max_size=3
            )
        )
        value = ",".join(map(str, ids))
    else:
        value = data.draw(st.sampled_from(SESSION_VALUE_FILTERS[name]))
    found = results(api, role, "/api/v2/course_sessions", {name: value}, demo)
    assert found <= oracle.visible, f"{name}={value} matched {sorted(found - oracle.visible)}"


@SETTINGS
@given(data=st.data())
def test_related_collections_hold_only_what_the_customer_may_read(
    api: Api, demo: Demo, data: Any
) -> None:
    role = data.draw(st.sampled_from(sorted(CUSTOMERS)))
    oracle = Oracle(demo, role)
    relation = data.draw(st.sampled_from(["course_session", "offering_type", "venue", "course"]))
    if relation == "course_session":
        parent = data.draw(st.sampled_from(ids_of(demo, m.course_sessions)))
        expected = (
            pairs(demo, m.course_session_instructors, "course_session_id", "instructor_id").get(
                parent, frozenset()
            )
            if parent in oracle.visible
            else frozenset()
        )
        found = results(api, role, "/api/v2/instructors", {"course_session": str(parent)}, demo)
    elif relation == "offering_type":
        parent = data.draw(st.sampled_from(ids_of(demo, m.offering_types)))
        expected = (
            pairs(demo, m.offering_type_instructors, "offering_type_id", "instructor_id").get(
                parent, frozenset()
            )
            if parent in oracle.bookable
            else frozenset()
        )
        found = results(api, role, "/api/v2/instructors", {"offering_type": str(parent)}, demo)
    elif relation == "venue":
        parent = data.draw(st.sampled_from(ids_of(demo, m.venues)))
        expected = oracle.rooms.get(parent, frozenset())
        found = results(api, role, "/api/v2/venue_rooms", {"venue": str(parent)}, demo)
    else:
        parent = data.draw(st.sampled_from(ids_of(demo, m.courses)))
        sessions = pairs(demo, m.course_sessions, "course_id", "id").get(parent, frozenset())
        expected = sessions & oracle.visible
        found = results(api, role, "/api/v2/course_sessions", {"course": str(parent)}, demo)
    assert found == expected, f"{relation}={parent}"
