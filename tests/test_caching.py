"""HTTP caching: a strong ETag on every 200, 304 for a matching If-None-Match (GET and
HEAD), Vary and Cache-Control: private on answers about the caller's data."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from coursebook import models as m
from tests.support import Api, Demo

PRIVATE_VARY = "Accept, Authorization, TeamUp-Provider-ID, Teamup-Request-Mode"


def session_path(demo: Demo) -> str:
    return f"/api/v2/course_sessions/{demo.manifest['course_sessions']['main'][0]}"


def admin(demo: Demo) -> str:
    return demo.manifest["tokens"]["admin"]


@pytest.mark.parametrize(
    "path",
    [
        "session",
        "/api/v2/course_sessions?page_size=3",
        "/api/v2/instructors",
        "/api/v2/venue_rooms",
    ],
)
def test_every_api_answer_has_a_strong_etag_and_is_private(api: Api, demo: Demo, path: str) -> None:
    path = session_path(demo) if path == "session" else path
    response = api.get(path, admin(demo))
    assert response.status_code == 200
    etag = response.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    assert response.headers["cache-control"] == "private"
    assert response.headers["vary"] == PRIVATE_VARY
    again = api.get(path, admin(demo))
    assert again.headers["etag"] == etag  # the same representation, the same tag


def test_a_matching_if_none_match_is_304_without_a_body(api: Api, demo: Demo) -> None:
    first = api.get(session_path(demo), admin(demo))
    etag = first.headers["etag"]
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        response = api.get(session_path(demo), admin(demo), headers={"If-None-Match": header})
        assert response.status_code == 304, header
        assert response.content == b""
        assert response.headers["etag"] == etag
        assert response.headers["cache-control"] == "private"
        assert response.headers["vary"] == PRIVATE_VARY


def test_another_tag_gets_the_whole_answer(api: Api, demo: Demo) -> None:
    response = api.get(session_path(demo), admin(demo), headers={"If-None-Match": '"stale"'})
    assert response.status_code == 200
    assert response.json()["id"] == demo.manifest["course_sessions"]["main"][0]


def test_each_representation_has_its_own_tag(api: Api, demo: Demo) -> None:
    path = session_path(demo)
    plain = api.get(path, admin(demo)).headers["etag"]
    as_xml = api.get(path, admin(demo), params={"format": "xml"}).headers["etag"]
    expanded = api.get(path, admin(demo), params={"expand": "venue"}).headers["etag"]
    assert len({plain, as_xml, expanded}) == 3
    response = api.get(
        path, admin(demo), params={"format": "xml"}, headers={"If-None-Match": plain}
    )
    assert response.status_code == 200


@pytest.mark.wire
def test_head_answers_304_too(api: Api, demo: Demo) -> None:
    headers = {"Authorization": f"Bearer {admin(demo)}"}
    etag = api.client.head(session_path(demo), headers=headers).headers["etag"]
    response = api.client.head(session_path(demo), headers={**headers, "If-None-Match": etag})
    assert response.status_code == 304
    assert response.content == b""


def test_errors_are_private_and_have_no_tag(api: Api, demo: Demo) -> None:
    response = api.get(session_path(demo))
    assert response.status_code == 401
    assert "etag" not in response.headers
    assert response.headers["cache-control"] == "private"


def test_probes_have_a_tag_but_are_not_private(api: Api) -> None:
    response = api.get("/healthz")
    assert response.status_code == 200
    assert "etag" in response.headers
    assert "cache-control" not in response.headers
    again = api.get("/healthz", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304


@pytest.mark.writes
def test_a_change_makes_a_new_tag(api: Api, demo: Demo) -> None:
    path = session_path(demo)
    etag = api.get(path, admin(demo)).headers["etag"]
    session_id = demo.manifest["course_sessions"]["main"][0]
    with demo.engine.begin() as conn:
        conn.execute(
            update(m.course_sessions)
            .where(m.course_sessions.c.id == session_id)
            .values(max_occupancy=m.course_sessions.c.max_occupancy + 1)
        )
    response = api.get(path, admin(demo), headers={"If-None-Match": etag})
    assert response.status_code == 200
    assert response.headers["etag"] != etag
