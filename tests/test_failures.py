"""Faults: an unexpected error is a bare 500 with a request id; revocation is immediate
in every worker of a multi-process server; migrations match the models and fill what
they add from the data a database already holds."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select, text, update

from coursebook import models as m
from coursebook.db import create_db_engine
from coursebook.demo import generate
from coursebook.migrate import upgrade
from tests.support import Api, Demo, empty_database, free_port


def test_migrations_match_the_models(demo: Demo) -> None:
    with demo.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), m.metadata) == []


def test_upgrading_fills_the_kept_counts_of_existing_rows(backend: str, tmp_path: Path) -> None:
    """Migrations 0004 and 0005 count what a database already holds, then keep count."""
    with empty_database(backend, tmp_path) as url:
        upgrade(url, "0003")
        engine = create_db_engine(url)
        generate(engine, seed=7, scale="small", progress=False)
        upgrade(url)
        attending = (
            select(func.count())
            .where(
                m.attendances.c.course_session_id == m.course_sessions.c.id,
                m.attendances.c.status.in_(m.ATTENDING_STATUSES),
            )
            .scalar_subquery()
        )
        active = (
            select(func.count())
            .where(
                m.customer_memberships.c.membership_id == m.memberships.c.id,
                m.customer_memberships.c.active.is_(True),
            )
            .scalar_subquery()
        )
        with engine.connect() as conn:
            sessions = conn.execute(select(m.course_sessions.c.attending_count, attending)).all()
            memberships = conn.execute(select(m.memberships.c.active_member_count, active)).all()
        engine.dispose()
    for pairs in (sessions, memberships):
        assert pairs and all(stored == counted for stored, counted in pairs)
        assert any(stored for stored, _ in pairs)


def test_upgrading_sqlite_keeps_statistics_for_the_index_it_makes_again(tmp_path: Path) -> None:
    """Migration 0007 makes the (provider, start) index again with the id: the dropped
    index's statistics must come back, or SQLite's planner takes it for a very selective
    one and reads a course's sessions by walking the provider's whole calendar."""
    with empty_database("sqlite", tmp_path) as url:
        upgrade(url, "0006")
        engine = create_db_engine(url)
        generate(engine, seed=7, scale="small", progress=False)  # and ANALYZE
        upgrade(url)
        with engine.connect() as conn:
            kept = conn.execute(
                text("SELECT stat FROM sqlite_stat1 WHERE idx = :name"),
                {"name": "ix_course_sessions_provider_starts_at"},
            ).scalar_one_or_none()
            course_id = conn.execute(select(func.min(m.courses.c.id))).scalar_one()
            plan = " ".join(
                str(row[-1])
                for row in conn.execute(
                    text(
                        "EXPLAIN QUERY PLAN SELECT id FROM course_sessions "
                        "WHERE provider_id = 1 AND course_id = :course ORDER BY starts_at, id"
                    ),
                    {"course": course_id},
                )
            )
        engine.dispose()
    assert kept is not None and len(kept.split()) == 4, kept  # rows, then per column
    assert "ix_course_sessions_course_starts_at" in plan, plan


@pytest.fixture
def broken_demo(demo: Demo) -> Demo:
    """The test's own demo, whose availability schedules hold data the code cannot read."""
    with demo.engine.begin() as conn:
        conn.execute(update(m.availability_schedules).values(weekly_ranges=5))
    return demo


@pytest.mark.writes
def test_unexpected_errors_are_bare_500s_with_a_request_id(
    api: Api, broken_demo: Demo, caplog: pytest.LogCaptureFixture
) -> None:
    token = broken_demo.manifest["tokens"]["admin"]
    session_id = broken_demo.manifest["course_sessions"]["main"][0]
    caplog.set_level(logging.ERROR, logger="coursebook")
    expand = "instructors.availability_schedules"
    for output in ("json", "xml"):
        response = api.get(
            f"/api/v2/course_sessions/{session_id}",
            token,
            params={"expand": expand, "format": output},
        )
        assert response.status_code == 500
        assert response.headers["content-type"].startswith(f"application/{output}")
        request_id = response.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", request_id)  # made by the server
        for leak in ("Traceback", "Error:", "weekly_ranges", "SELECT", token):
            assert leak not in response.text
        assert request_id in caplog.text
    # The rest of the service keeps answering.
    assert api.get(f"/api/v2/course_sessions/{session_id}", token).status_code == 200
    assert "Traceback" in caplog.text or "AttributeError" in caplog.text
    assert token not in caplog.text


def test_revocation_takes_effect_in_every_worker(backend: str, tmp_path: Path) -> None:
    """Two servers of two workers each on one database, as two hosts would run: a changed
    permission applies, and a revoked token fails, on the next request to any worker.

    Nothing a worker remembers between requests outlives a change: the memo is dropped
    when the write count a request's statement reads (SQLite's ``data_version``,
    PostgreSQL's counted writes) is not the one the memo was read at."""
    with empty_database(backend, tmp_path) as url:
        env = {**os.environ, "COURSEBOOK_DATABASE_URL": url, "COURSEBOOK_LOG_LEVEL": "warning"}
        bin_dir = Path(sys.executable).parent
        manifest_path = tmp_path / "manifest.json"
        subprocess.run(
            [bin_dir / "coursebook", "demo", "--seed", "9", "--manifest", str(manifest_path)],
            env=env,
            check=True,
            capture_output=True,
            cwd=tmp_path,
        )
        manifest = json.loads(manifest_path.read_text())
        created = subprocess.run(
            [bin_dir / "coursebook", "token", "create", "--user-id", "1", "--name", "doomed"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        token_id = re.search(r"Token (\d+) created", created.stdout)
        assert token_id is not None
        secret = created.stdout.strip().splitlines()[-1]
        ports = [free_port(), free_port()]
        servers = [
            subprocess.Popen(
                [bin_dir / "coursebook", "serve", "--port", str(port), "--workers", "2"],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for port in ports
        ]
        try:
            bases = [f"http://127.0.0.1:{port}" for port in ports]
            deadline = time.monotonic() + 30
            for base in bases:
                while True:
                    try:
                        if httpx.get(f"{base}/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert time.monotonic() < deadline, "a server did not start"
                    time.sleep(0.1)
            path = f"/api/v2/course_sessions/{manifest['course_sessions']['main'][0]}"
            headers = {"Authorization": f"Bearer {secret}"}

            def answers() -> list[httpx.Response]:
                # Fresh connections each time, so every worker of both servers answers some.
                return [
                    httpx.get(base + path, headers=headers) for base in bases for _ in range(20)
                ]

            assert {a.status_code for a in answers()} == {200}
            engine = create_db_engine(url)
            permissions = {name: False for name in m.PERMISSION_NAMES}
            with engine.begin() as conn:
                granted = (
                    conn.execute(select(m.staff_profiles).where(m.staff_profiles.c.user_id == 1))
                    .mappings()
                    .all()
                )
                conn.execute(
                    update(m.staff_profiles)
                    .where(m.staff_profiles.c.user_id == 1)
                    .values(**permissions)
                )
            refused = answers()
            assert {a.status_code for a in refused} == {403}
            assert {a.json()["code"] for a in refused} == {"permission_denied"}
            with engine.begin() as conn:
                for row in granted:
                    conn.execute(
                        update(m.staff_profiles)
                        .where(m.staff_profiles.c.id == row["id"])
                        .values(**{name: row[name] for name in m.PERMISSION_NAMES})
                    )
            engine.dispose()
            assert {a.status_code for a in answers()} == {200}
            subprocess.run(
                [bin_dir / "coursebook", "token", "revoke", token_id.group(1)],
                env=env,
                check=True,
                capture_output=True,
                cwd=tmp_path,
            )
            revoked = answers()
            assert {a.status_code for a in revoked} == {401}
            assert {a.json()["code"] for a in revoked} == {"authentication_failed"}
        finally:
            for server in servers:
                server.terminate()
                server.wait(10)
