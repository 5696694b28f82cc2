"""Health and readiness, unknown routes and methods: the error body everywhere."""

from __future__ import annotations

import pytest

from coursebook.settings import Settings
from tests.support import Api, Demo, in_process


def test_health_and_readiness(api: Api) -> None:
    for route in ("/healthz", "/readyz"):
        response = api.get(route)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


def test_readiness_fails_when_the_database_does_not_answer() -> None:
    settings = Settings(database_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    with in_process(settings) as client:
        assert client.get("/healthz").status_code == 200
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["code"] == "service_unavailable"
        session = client.get("/api/v2/course_sessions/1", "cb_whatever")
        assert session.status_code == 503
        assert "psycopg" not in session.text and "127.0.0.1" not in session.text


@pytest.mark.parametrize(
    "route", ["/", "/api/v2/", "/api/v2/courses", "/api/v3/x", "/docs/assets/nope.js"]
)
def test_unknown_routes_are_not_found(api: Api, route: str) -> None:
    response = api.get(route)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_other_methods_are_not_allowed(api: Api, demo: Demo, method: str) -> None:
    session_id = demo.manifest["course_sessions"]["main"][0]
    response = api.client.request(method, f"/api/v2/course_sessions/{session_id}")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
    assert response.headers["allow"] == "GET, HEAD"


@pytest.mark.wire
def test_head_answers_without_a_body(api: Api, demo: Demo) -> None:
    session_id = demo.manifest["course_sessions"]["main"][0]
    token = demo.manifest["tokens"]["admin"]
    response = api.client.head(
        f"/api/v2/course_sessions/{session_id}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) > 0
