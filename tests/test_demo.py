"""The demo generator: manifest shape, determinism, and the role semantics tests rely on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, and_, exists, func, insert, or_, select

from coursebook import models as m
from coursebook.db import create_db_engine
from coursebook.demo import ROLES, generate
from coursebook.migrate import upgrade
from coursebook.tokens import hash_token
from tests.support import Demo, inserted_id

SESSION_LISTS = {
    "main",
    "other",
    "instructed",
    "not_instructed",
    "customer_visible",
    "customer_hidden",
}


def fresh_demo(directory: Path, seed: int) -> Engine:
    """A migrated SQLite database in ``directory`` holding the small demo for ``seed``."""
    url = f"sqlite:///{directory}/seed-{seed}-{len(list(directory.iterdir()))}.sqlite3"
    upgrade(url)
    engine = create_db_engine(url)
    generate(engine, seed=seed, scale="small", progress=False)
    return engine


def table_rows(engine: Engine, table: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(table).order_by(*table.primary_key.columns)).all())


def token_user(demo: Demo, role: str) -> int:
    with demo.engine.connect() as conn:
        user_id = conn.scalar(
            select(m.api_tokens.c.user_id).where(
                m.api_tokens.c.token_hash == hash_token(demo.manifest["tokens"][role])
            )
        )
    assert user_id is not None
    return int(user_id)


def test_manifest_has_exactly_the_agreed_keys(demo: Demo) -> None:
    manifest = demo.manifest
    assert set(manifest) == {"seed", "scale", "providers", "tokens", "users", "course_sessions"}
    assert (manifest["seed"], manifest["scale"]) == (42, "small")
    assert set(manifest["providers"]) == {"main", "other"}
    assert set(manifest["tokens"]) == set(ROLES)
    assert len(set(manifest["tokens"].values())) == len(ROLES)
    assert set(manifest["course_sessions"]) == SESSION_LISTS
    assert all(manifest["course_sessions"][name] for name in SESSION_LISTS)


def test_manifest_names_the_user_of_each_token(demo: Demo) -> None:
    """Every role's token but the developer's (an M2M token) belongs to the user the
    manifest names for that role."""
    assert set(demo.manifest["users"]) == set(ROLES) - {"developer"}
    with demo.engine.connect() as conn:
        for role, secret in demo.manifest["tokens"].items():
            owner = conn.execute(
                select(m.api_tokens.c.user_id, m.api_tokens.c.provider_id).where(
                    m.api_tokens.c.token_hash == hash_token(secret)
                )
            ).one()
            if role == "developer":
                assert owner.user_id is None
                assert owner.provider_id == demo.manifest["providers"]["main"]
                continue
            user = conn.execute(select(m.users).where(m.users.c.id == owner.user_id)).one()
            assert demo.manifest["users"][role] == {
                "id": user.id,
                "email": user.email,
                "name": user.name,
            }


def test_every_table_is_filled_and_sessions_are_complete(demo: Demo) -> None:
    with demo.engine.connect() as conn:
        for table in m.metadata.sorted_tables:
            assert conn.scalar(select(func.count()).select_from(table)), table.name
        main = demo.manifest["providers"]["main"]
        main_sessions = conn.scalars(
            select(m.course_sessions.c.id).where(m.course_sessions.c.provider_id == main)
        ).all()
        longest = conn.scalar(
            select(func.count())
            .where(m.course_sessions.c.provider_id == main)
            .group_by(m.course_sessions.c.course_id)
            .order_by(func.count().desc())
            .limit(1)
        )
    assert sorted(main_sessions) == sorted(demo.manifest["course_sessions"]["main"])
    assert len(main_sessions) >= 300
    assert longest is not None and longest >= 200


def test_same_seed_same_rows_other_seed_other_rows(tmp_path: Path) -> None:
    first, again, other = (fresh_demo(tmp_path, seed) for seed in (7, 7, 8))
    for table in (m.course_sessions, m.venues, m.users, m.attendances):
        assert table_rows(first, table) == table_rows(again, table), table.name
        assert table_rows(first, table) != table_rows(other, table), table.name
    for engine in (first, again, other):
        engine.dispose()


def test_instructed_sessions_are_those_of_the_instructor(demo: Demo) -> None:
    user_id = token_user(demo, "instructor")
    sessions = demo.manifest["course_sessions"]
    with demo.engine.connect() as conn:
        instructor_id = conn.scalar(
            select(m.instructors.c.id)
            .join(m.staff_profiles, m.staff_profiles.c.id == m.instructors.c.staff_profile_id)
            .where(m.staff_profiles.c.user_id == user_id)
        )
        taught = set(
            conn.scalars(
                select(m.course_session_instructors.c.course_session_id).where(
                    m.course_session_instructors.c.instructor_id == instructor_id
                )
            )
        )
    assert set(sessions["instructed"]) <= taught
    assert not set(sessions["not_instructed"]) & taught
    assert set(sessions["instructed"]) | set(sessions["not_instructed"]) <= set(sessions["main"])


def test_customer_lists_follow_the_visibility_rule(demo: Demo) -> None:
    customer = token_user(demo, "customer")
    ot, cs = m.offering_types, m.course_sessions
    holds_membership = exists().where(
        m.offering_type_memberships.c.offering_type_id == ot.c.id,
        m.customer_memberships.c.membership_id == m.offering_type_memberships.c.membership_id,
        m.customer_memberships.c.active.is_(True),
        m.customer_profiles.c.id == m.customer_memberships.c.customer_profile_id,
        m.customer_profiles.c.user_id == customer,
    )
    visible = and_(
        m.courses.c.published.is_(True),
        ot.c.is_draft.is_(False),
        or_(
            ot.c.customer_visibility == "public",
            and_(ot.c.customer_visibility == "membership_holders", holds_membership),
        ),
    )
    query = (
        select(cs.c.id, visible, m.courses.c.published, ot.c.is_draft, ot.c.customer_visibility)
        .join(m.courses, m.courses.c.id == cs.c.course_id)
        .join(ot, ot.c.id == m.courses.c.offering_type_id)
    )
    with demo.engine.connect() as conn:
        rows = {row[0]: row[1:] for row in conn.execute(query)}
    lists = demo.manifest["course_sessions"]
    assert all(rows[i][0] for i in lists["customer_visible"])
    hidden = [rows[i] for i in lists["customer_hidden"]]
    assert not any(row[0] for row in hidden)
    assert any(not row[1] for row in hidden), "an unpublished course"
    assert any(row[2] for row in hidden), "a draft offering type"
    assert any(row[3] == "private" for row in hidden)
    assert any(row[3] == "membership_holders" and row[1] and not row[2] for row in hidden)


@pytest.mark.writes
def test_new_rows_get_fresh_ids_after_generation(demo: Demo) -> None:
    with demo.engine.begin() as conn:
        new_id = inserted_id(
            conn.execute(insert(m.users).values(email="new.user@example.com", name="New User"))
        )
        assert conn.scalar(select(func.count()).where(m.users.c.id == new_id)) == 1
        conn.rollback()
