"""Token authentication (SEMANTICS.md section 2)."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from coursebook import models as m
from tests.support import Api, Demo


def path(demo: Demo) -> str:
    return f"/api/v2/course_sessions/{demo.manifest['course_sessions']['main'][0]}"


@pytest.mark.parametrize("scheme", ["Bearer", "Token", "bearer", "TOKEN"])
def test_bearer_and_token_schemes(api: Api, demo: Demo, scheme: str) -> None:
    response = api.get(path(demo), demo.manifest["tokens"]["admin"], scheme=scheme)
    assert response.status_code == 200


def test_no_credentials(api: Api, demo: Demo) -> None:
    response = api.get(path(demo))
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("header", "code"),
    [
        # No credentials of ours: another scheme, or nothing.
        ("Basic dXNlcjpwYXNz", "not_authenticated"),
        ("", "not_authenticated"),
        # Our scheme with a missing or malformed token (as DRF's "Invalid token header").
        ("Bearer", "authentication_failed"),
        ("Bearer a b", "authentication_failed"),
        ("Token", "authentication_failed"),
    ],
)
def test_malformed_headers(api: Api, demo: Demo, header: str, code: str) -> None:
    response = api.get(path(demo), headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["code"] == code
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("role", ["expired", "revoked"])
def test_dead_tokens_fail(api: Api, demo: Demo, role: str) -> None:
    response = api.get(path(demo), demo.manifest["tokens"][role])
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"
    assert response.headers["www-authenticate"] == "Bearer"
    # The same answer as for a token never issued: nothing says it was once valid.
    never = api.get(path(demo), "cb_" + "x" * 43)
    assert response.json() == never.json()


@pytest.mark.wire
@pytest.mark.parametrize("token", ["cb_" + "x" * 43, "nonsense", "é" * 10, "x" * 300])
def test_unknown_tokens_fail(api: Api, demo: Demo, token: str) -> None:
    # A bytes value goes as these bytes (UTF-8 here); httpx accepts it, its types do not.
    response = api.get(path(demo), headers={"Authorization": f"Bearer {token}".encode()})  # type: ignore[dict-item]
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"


def test_tokens_are_stored_only_as_hashes(demo: Demo) -> None:
    with demo.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(m.api_tokens)).mappings()]
    stored = " ".join(str(value) for row in rows for value in row.values())
    for secret in demo.manifest["tokens"].values():
        assert secret not in stored
        assert len(secret) >= 43


def test_tokens_never_reach_the_logs(
    api: Api, demo: Demo, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for role, token in demo.manifest["tokens"].items():
        api.get(path(demo), token)
        api.get(path(demo) + "?expand=bogus", token)
        assert token not in caplog.text, role


def test_credentials_are_checked_before_parameters(api: Api, demo: Demo) -> None:
    for params in ({"expand": "venu"}, {"fields": "nme"}, {"expand": "a.b.c.d.e"}):
        response = api.get(path(demo), params=params)
        assert response.status_code == 401, params
        assert response.json()["code"] == "not_authenticated"
    listed = api.get("/api/v2/course_sessions", params={"page": "0", "sort": "x"})
    assert listed.status_code == 401


@pytest.mark.parametrize("mode", ["Customer", "PROVIDER", "customers"])
def test_mode_values_are_exact(api: Api, demo: Demo, mode: str) -> None:
    response = api.get(
        path(demo), demo.manifest["tokens"]["dual_mode"], headers={"Teamup-Request-Mode": mode}
    )
    assert response.status_code == 400
    assert response.json()["field_errors"] == {
        "Teamup-Request-Mode": [f"'{mode}' is not a valid mode. Valid: customer, provider."]
    }
