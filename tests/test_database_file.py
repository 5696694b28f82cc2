"""The database under a running server: a SQLite file replaced (restored from a
backup) or deleted is noticed on the next request, and ``/readyz`` is ready only when
the schema is at this code's migration, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text, update
from sqlalchemy.engine import make_url

from coursebook import migrate
from coursebook import models as m
from coursebook.settings import Settings
from coursebook.tokens import hash_token
from tests.support import Demo, DemoTemplate, in_process, serve_process

#: Requests made after a change, each on a new connection, so that both workers and
#: their threads meet the new file.
ROUNDS = 12


def sqlite_path(url: str) -> Path:
    database = make_url(url).database
    assert database is not None
    return Path(database)


@pytest.fixture
def sqlite_copy(backend: str, demo_template: DemoTemplate, tmp_path: Path) -> Path:
    """A demo database file of this test's own (SQLite only)."""
    if backend != "sqlite":
        pytest.skip("a database file is SQLite's")
    target = tmp_path / "served.sqlite3"
    shutil.copyfile(sqlite_path(demo_template.url), target)
    return target


def revoked_copy(template: DemoTemplate, token: str, directory: Path) -> Path:
    """A copy of the demo in which ``token`` is revoked, closed (no write-ahead log)."""
    target = directory / "restored.sqlite3"
    shutil.copyfile(sqlite_path(template.url), target)
    engine = create_engine(f"sqlite:///{target}")
    with engine.begin() as conn:
        revoked = conn.execute(
            update(m.api_tokens)
            .where(m.api_tokens.c.token_hash == hash_token(token))
            .values(revoked_at=datetime.now(UTC))
        )
        assert revoked.rowcount == 1
    engine.dispose()
    return target


def statuses(base_url: str, path: str, token: str | None = None) -> set[int]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return {httpx.get(base_url + path, headers=headers).status_code for _ in range(ROUNDS)}


def test_a_replaced_file_is_read_from_the_next_request(
    sqlite_copy: Path, demo_template: DemoTemplate, tmp_path: Path
) -> None:
    token = demo_template.manifest["tokens"]["admin"]
    session = f"/api/v2/course_sessions/{demo_template.manifest['course_sessions']['main'][0]}"
    with serve_process(f"sqlite:///{sqlite_copy}", workers=2) as served:
        assert statuses(served.base_url, session, token) == {200}
        os.replace(revoked_copy(demo_template, token, tmp_path), sqlite_copy)
        assert statuses(served.base_url, session, token) == {401}
        assert statuses(served.base_url, "/readyz") == {200}


def test_a_deleted_file_is_503_and_not_made_again(
    sqlite_copy: Path, demo_template: DemoTemplate
) -> None:
    token = demo_template.manifest["tokens"]["admin"]
    session = f"/api/v2/course_sessions/{demo_template.manifest['course_sessions']['main'][0]}"
    with serve_process(f"sqlite:///{sqlite_copy}", workers=2) as served:
        assert statuses(served.base_url, session, token) == {200}
        kept = sqlite_copy.with_suffix(".kept")
        os.replace(sqlite_copy, kept)
        assert statuses(served.base_url, session, token) == {503}
        response = httpx.get(f"{served.base_url}/readyz")
        assert response.status_code == 503
        assert response.json()["code"] == "service_unavailable"
        assert not sqlite_copy.exists(), "the server made an empty database in its place"
        os.replace(kept, sqlite_copy)
        assert statuses(served.base_url, session, token) == {200}


def test_an_empty_file_in_its_place_is_not_ready(
    sqlite_copy: Path, demo_template: DemoTemplate, tmp_path: Path
) -> None:
    token = demo_template.manifest["tokens"]["admin"]
    session = f"/api/v2/course_sessions/{demo_template.manifest['course_sessions']['main'][0]}"
    with serve_process(f"sqlite:///{sqlite_copy}", workers=2) as served:
        assert statuses(served.base_url, "/readyz") == {200}
        empty = tmp_path / "empty.sqlite3"
        empty.touch()
        os.replace(empty, sqlite_copy)
        assert statuses(served.base_url, "/readyz") == {503}
        answer = httpx.get(f"{served.base_url}/readyz").json()
        assert answer["message"] == "The database schema is not at this server's migration."
        assert statuses(served.base_url, session, token) == {503}


@pytest.mark.writes
def test_ready_only_at_the_latest_migration(demo: Demo) -> None:
    with in_process(Settings(database_url=demo.url)) as api:
        assert api.get("/readyz").status_code == 200
        with demo.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
        behind = api.get("/readyz")
        assert behind.status_code == 503
        assert behind.json()["message"] == "The database schema is not at this server's migration."
        with demo.engine.begin() as conn:
            conn.execute(
                text("UPDATE alembic_version SET version_num = :head"), {"head": migrate.head()}
            )
        assert api.get("/readyz").status_code == 200
