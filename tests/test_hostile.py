"""Hostile query strings: whatever ``expand``, ``fields``, ``format`` and list
parameters hold, the answer is 200 or a clear 4xx in the error body, never a 5xx."""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import Api, Demo

NAMES = [
    "venue",
    "venue_rooms",
    "instructors",
    "course",
    "offering_type",
    "category",
    "course_sessions",
    "availability_schedules",
    "icalendar_links",
    "memberships",
    "name",
    "id",
    "",
    " ",
    "..",
    "é",
    "\x00",
    "%",
    "&",
    "=",
    "*",
]
PATHS = st.lists(st.sampled_from(NAMES), min_size=0, max_size=7).map(".".join)
LISTS = st.lists(st.one_of(PATHS, st.text(max_size=12)), max_size=6).map(",".join)
VALUES = st.one_of(LISTS, st.text(max_size=30), st.integers().map(str))
PARAMETERS = [
    "expand",
    "fields",
    "format",
    "page",
    "page_size",
    "sort",
    "course",
    "venues",
    "instructors",
    "status",
    "starts_at_gte",
    "ends_at_lte",
    "course_session",
    "venue",
]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(
        [
            "/api/v2/course_sessions/{id}",
            "/api/v2/course_sessions",
            "/api/v2/instructors",
            "/api/v2/venue_rooms",
        ]
    ),
    query=st.dictionaries(st.sampled_from(PARAMETERS), VALUES, max_size=5),
)
def test_no_query_string_breaks_the_server(
    api: Api, demo: Demo, path: str, query: dict[str, str]
) -> None:
    session_id = demo.manifest["course_sessions"]["main"][0]
    target = path.format(id=session_id)
    raw = "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in query.items())
    response = api.get(f"{target}?{raw}" if raw else target, demo.manifest["tokens"]["admin"])
    assert response.status_code in {200, 400, 404, 406}, response.text
    if response.status_code != 200:
        body = response.json() if "json" in response.headers["content-type"] else None
        if body is not None:
            assert body["code"] in {"parameter_invalid", "not_found", "not_acceptable"}
            assert "Traceback" not in response.text
