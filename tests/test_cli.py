"""The CLI on real databases: demo loading and reuse, users and their profiles, tokens,
help text, and one-line errors for every option it cannot honour."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer.main
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, func, select
from typer.testing import CliRunner, Result

from coursebook import migrate
from coursebook import models as m
from coursebook.cli import app
from coursebook.demo import Manifest, read_manifest
from coursebook.settings import Settings
from coursebook.tokens import hash_token, token_states
from tests.support import empty_database, free_port, in_process

runner = CliRunner()
COURSEBOOK = Path(sys.executable).parent / "coursebook"
#: The roles whose demo token never authenticates.
DEAD_ROLES = {"expired", "revoked"}


@pytest.fixture
def database_url(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with empty_database(backend, tmp_path) as url:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("COURSEBOOK_DATABASE_URL", url)
        yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def manifest(database_url: str, tmp_path: Path) -> Manifest:
    """The small demo of seed 3, made by `coursebook demo` with its manifest where it goes
    by default."""
    result = invoke("demo", "--seed", "3")
    assert result.exit_code == 0, result.output
    path = tmp_path / "var" / "demo-manifest.json"
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = read_manifest(path)
    assert loaded is not None
    assert (loaded["seed"], loaded["scale"]) == (3, "small")
    for role, secret in loaded["tokens"].items():
        assert (secret in result.output) == (role not in DEAD_ROLES), role
    return loaded


def invoke(*args: str, input: str | None = None) -> Result:
    """Run the CLI in process, as the installed command would."""
    return runner.invoke(app, list(args), input=input)


def refused(result: Result | subprocess.CompletedProcess[str], *messages: str) -> None:
    """``result`` is an exit with status 1 whose one-line error says each of ``messages``."""
    if isinstance(result, Result):
        code, output = result.exit_code, result.output
    else:
        code, output = result.returncode, result.stdout + result.stderr
    assert code == 1, output
    for message in messages:
        assert message in output
    assert "Traceback" not in output


def coursebook(*args: str, cwd: Path, url: str) -> subprocess.CompletedProcess[str]:
    """Run the installed command; a time limit, since `serve` that is not refused serves."""
    return subprocess.run(
        [COURSEBOOK, *args],
        env={**os.environ, "COURSEBOOK_DATABASE_URL": url},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def created_id(result: Result, pattern: str) -> int:
    assert result.exit_code == 0, result.output
    found = re.search(pattern, result.output)
    assert found is not None, result.output
    return int(found.group(1))


def new_token(user_id: int) -> str:
    created = invoke("token", "create", "--user-id", str(user_id))
    assert created.exit_code == 0, created.output
    return created.output.strip().splitlines()[-1]


def read(api: Any, session_id: int, token: str) -> int:
    response = api.get(f"/api/v2/course_sessions/{session_id}", token)
    return int(response.status_code)


# -- demo ---------------------------------------------------------------------------------


def test_demo_on_a_used_database_says_how_to_start_again(manifest: Manifest) -> None:
    refused(
        invoke("demo", "--seed", "7"),
        "already holds data",
        "`coursebook demo --reset --seed 7`",
    )


def test_demo_reset_asks_then_starts_again(engine: Engine, manifest: Manifest) -> None:
    refused(invoke("demo", "--yes"), "--yes only confirms --reset")
    kept = invoke("demo", "--reset", "--seed", "5", input="n\n")
    assert kept.exit_code == 1 and "Aborted" in kept.output
    now = datetime.now(UTC)
    with engine.connect() as conn:
        assert token_states(conn, [manifest["tokens"]["admin"]], now) == {
            manifest["tokens"]["admin"]: True
        }

    again = invoke("demo", "--reset", "--seed", "5", input="y\n")
    assert again.exit_code == 0, again.output
    fresh = read_manifest(Path("var/demo-manifest.json"))
    assert fresh is not None and fresh["seed"] == 5
    with engine.connect() as conn:
        assert token_states(conn, manifest["tokens"].values(), now) == {}
        alive = token_states(conn, fresh["tokens"].values(), now)
        assert conn.scalar(select(func.count()).select_from(m.providers)) == 2
        admin = conn.execute(select(m.users).where(m.users.c.id == fresh["users"]["admin"]["id"]))
        assert admin.one().email == fresh["users"]["admin"]["email"]
    assert {role for role, secret in fresh["tokens"].items() if alive[secret]} == (
        set(fresh["tokens"]) - DEAD_ROLES
    )

    unasked = invoke("demo", "--reset", "--yes", "--scale", "small")
    assert unasked.exit_code == 0, unasked.output


# -- serve --------------------------------------------------------------------------------


def test_serve_refuses_demo_options_it_cannot_honour(
    database_url: str, manifest: Manifest, tmp_path: Path
) -> None:
    refused(
        coursebook("serve", "--scale", "large", cwd=tmp_path, url=database_url),
        "--seed and --scale choose the demo data, so they need --demo",
    )
    refused(
        coursebook(
            "serve", "--demo", "--seed", "7", "--scale", "medium", cwd=tmp_path, url=database_url
        ),
        "holds the demo of seed 3 at scale small, not seed 7 at scale medium",
        "`coursebook demo --reset --seed 7 --scale medium`",
    )
    refused(
        coursebook("serve", "--demo", "--scale", "medium", cwd=tmp_path, url=database_url),
        "not seed 3 at scale medium",
        "`coursebook demo --reset --seed 3 --scale medium`",
    )
    (tmp_path / "var" / "demo-manifest.json").unlink()
    refused(
        coursebook("serve", "--demo", cwd=tmp_path, url=database_url),
        "already holds data, and no demo manifest",
        "Serve it without --demo",
    )
    for args, message in [
        (["--workers", "0"], "Invalid value for '--workers': must be at least 1."),
        (["--port", "70000"], "Invalid value for '--port': must be from 0 to 65535."),
        (["--scale", "huge"], "'huge' is not one of 'small', 'medium', 'large'"),
    ]:
        result = coursebook("serve", *args, cwd=tmp_path, url=database_url)
        assert result.returncode == 2 and message in result.stderr, result.stderr


def test_serve_demo_reuses_the_demo_and_prints_only_live_tokens(
    database_url: str, engine: Engine, manifest: Manifest, tmp_path: Path
) -> None:
    """The demo already there is served again, not regenerated, and a token revoked since
    it was made is left out along with the expired and revoked roles'."""
    token = m.api_tokens.c.token_hash == hash_token(manifest["tokens"]["admin"])
    with engine.connect() as conn:
        admin_token = conn.scalar(select(m.api_tokens.c.id).where(token))
    assert invoke("token", "revoke", str(admin_token)).exit_code == 0
    written = (tmp_path / "var" / "demo-manifest.json").read_bytes()
    port = free_port()
    server = subprocess.Popen(
        [COURSEBOOK, "serve", "--demo", "--seed", "3", "--port", str(port)],
        env={**os.environ, "COURSEBOOK_DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not answer"
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        session = manifest["course_sessions"]["main"][0]
        answer = httpx.get(
            f"http://127.0.0.1:{port}/api/v2/course_sessions/{session}",
            headers={"Authorization": f"Bearer {manifest['tokens']['manager']}"},
        )
        assert answer.status_code == 200
    finally:
        server.terminate()
        out, err = server.communicate(timeout=30)
    assert "The demo of seed 3 at scale small" in out, err
    for role, secret in manifest["tokens"].items():
        assert (secret in out) == (role not in DEAD_ROLES | {"admin"}), role
    assert (tmp_path / "var" / "demo-manifest.json").read_bytes() == written
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(m.providers)) == 2


# -- users and profiles -------------------------------------------------------------------


def test_new_users_get_profiles_and_tokens_that_read(
    database_url: str, engine: Engine, manifest: Manifest
) -> None:
    main = str(manifest["providers"]["main"])
    staff_user = created_id(
        invoke("user", "create", "--email", "ada@example.org", "--name", "Ada Lovelace"),
        r"User (\d+) created",
    )
    staffed = invoke(
        "user", "staff", "--user-id", str(staff_user), "--provider-id", main,
        "--permission", "manage_events", "--permission", "pos",
    )  # fmt: skip
    assert "with manage_events, pos." in staffed.output
    created_id(staffed, r"Staff profile (\d+)")

    with engine.connect() as conn:
        customer_profile = conn.scalar(
            select(m.customer_profiles.c.id).where(
                m.customer_profiles.c.user_id == manifest["users"]["customer"]["id"]
            )
        )
        held = conn.scalar(
            select(m.customer_memberships.c.membership_id).where(
                m.customer_memberships.c.customer_profile_id == customer_profile
            )
        )
        visible = manifest["course_sessions"]["customer_visible"]
        rows = conn.execute(
            select(m.course_sessions.c.id, m.offering_types.c.customer_visibility)
            .join(m.courses, m.courses.c.id == m.course_sessions.c.course_id)
            .join(m.offering_types, m.offering_types.c.id == m.courses.c.offering_type_id)
            .where(m.course_sessions.c.id.in_(visible))
        )
        kinds = {row.id: row.customer_visibility for row in rows}
    assert held is not None
    holders = next(i for i in visible if kinds[i] == "membership_holders")
    public = next(i for i in visible if kinds[i] == "public")
    members = {}
    for name, memberships in (("holder", ["--membership", str(held)]), ("walk-in", [])):
        user = created_id(
            invoke("user", "create", "--email", f"{name}@example.org", "--name", name),
            r"User (\d+) created",
        )
        created_id(
            invoke("user", "customer", "--user-id", str(user), "--provider-id", main, *memberships),
            r"Customer profile (\d+)",
        )
        members[name] = new_token(user)

    with in_process(Settings(database_url=database_url)) as api:
        staff_token = new_token(staff_user)
        assert read(api, manifest["course_sessions"]["main"][0], staff_token) == 200
        assert read(api, manifest["course_sessions"]["other"][0], staff_token) == 404
        assert read(api, public, members["walk-in"]) == 200
        assert read(api, holders, members["walk-in"]) == 404
        assert read(api, holders, members["holder"]) == 200


def test_user_commands_refuse_what_they_cannot_do(engine: Engine, manifest: Manifest) -> None:
    main, other = manifest["providers"]["main"], manifest["providers"]["other"]
    admin = manifest["users"]["admin"]
    user = created_id(
        invoke("user", "create", "--email", "grace@example.org", "--name", "Grace Hopper"),
        r"User (\d+) created",
    )
    with engine.connect() as conn:
        others = conn.scalar(select(m.memberships.c.id).where(m.memberships.c.provider_id == other))
    for args, message in [
        (["create", "--email", "grace", "--name", "G"], "'grace' is not an email address"),
        (["create", "--email", "x@example.org", "--name", " "], "A user's name is 1 to 200"),
        (
            ["create", "--email", admin["email"].upper(), "--name", "Again"],
            f"User {admin['id']} already has the email",
        ),
        (["staff", "--user-id", "99999", "--provider-id", str(main)], "No user with id 99999"),
        (["staff", "--user-id", str(user), "--provider-id", "999"], "No provider with id 999"),
        (
            ["staff", "--user-id", str(admin["id"]), "--provider-id", str(main)],
            f"User {admin['id']} already has staff profile",
        ),
        (
            ["staff", "--user-id", str(user), "--provider-id", str(main), "--permission", "root"],
            "Unknown permission(s): root",
        ),
        (
            ["customer", "--user-id", str(user), "--provider-id", str(main), "--membership", "0"],
            "No membership with id 0",
        ),
        (
            ["customer", "--user-id", str(user), "--provider-id", str(main)]
            + ["--membership", str(others)],
            f"Membership {others} is provider {other}'s, not provider {main}'s",
        ),
    ]:
        refused(invoke("user", *args), message)
    with engine.connect() as conn:
        profiles = select(func.count()).where(m.customer_profiles.c.user_id == user)
        assert conn.scalar(profiles) == 0


# -- tokens -------------------------------------------------------------------------------


def test_token_list_never_shows_secrets(manifest: Manifest) -> None:
    created = invoke("token", "create", "--user-id", "1", "--name", "laptop")
    assert created.exit_code == 0, created.output
    secret = created.output.strip().splitlines()[-1]
    listed = invoke("token", "list")
    assert listed.exit_code == 0, listed.output
    assert "laptop" in listed.output and secret[:10] in listed.output
    for shown in [secret, *manifest["tokens"].values()]:
        assert shown not in listed.output


def test_m2m_token_and_its_errors(manifest: Manifest) -> None:
    ok = invoke("token", "create", "--provider-id", "1", "--permission", "developer")
    assert ok.exit_code == 0, ok.output
    for args, message in [
        (["--provider-id", "1", "--permission", "root"], "Unknown permission(s): root"),
        (["--provider-id", "1"], "needs at least one --permission"),
        (["--provider-id", "999", "--permission", "developer"], "No provider with id 999"),
        (["--user-id", "999"], "No user with id 999"),
        ([], "exactly one of --user-id"),
    ]:
        refused(invoke("token", "create", *args), message)
    days = invoke("token", "create", "--user-id", "1", "--expires-in-days", "0")
    assert days.exit_code == 2
    assert "Invalid value for '--expires-in-days': must be at least 1." in days.output


def test_revoke_sets_revoked_at(engine: Engine, manifest: Manifest) -> None:
    token = m.api_tokens.c.token_hash == hash_token(manifest["tokens"]["admin"])
    with engine.connect() as conn:
        token_id = conn.scalar(select(m.api_tokens.c.id).where(token))
    result = invoke("token", "revoke", str(token_id))
    assert result.exit_code == 0, result.output
    with engine.connect() as conn:
        assert conn.scalar(select(m.api_tokens.c.revoked_at).where(token)) is not None
    refused(invoke("token", "revoke", "4242"), "No token with id 4242")


def test_mirror_options_are_checked_before_anything_is_fetched() -> None:
    base = ["mirror", "--token", "cb_never_shown", "--provider-id", "1"]
    for source, message in [
        ("ftp://api.example.com", "must be an http:// or https:// URL"),
        ("api.example.com", "must be an http:// or https:// URL"),
        ("https://me:pw@api.example.com", "must not hold a user or password"),
    ]:
        result = invoke(*base, "--from", source)
        assert result.exit_code == 2 and message in " ".join(result.output.split())
        assert "cb_never_shown" not in result.output
    retries = invoke(*base, "--from", "https://api.example.com", "--retries", "0")
    assert retries.exit_code == 2
    assert "Invalid value for '--retries': must be at least 1." in retries.output
    missing = invoke("mirror", "--from", "https://api.example.com", "--provider-id", "1")
    assert missing.exit_code == 2 and "--token" in missing.output


def test_db_upgrade_and_downgrade(database_url: str) -> None:
    for args in (["db", "upgrade"], ["db", "downgrade", "--revision", "base"], ["db", "upgrade"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output


def test_db_downgrade_names_the_revision_it_reached(database_url: str) -> None:
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    one_back = runner.invoke(app, ["db", "downgrade"])
    assert one_back.exit_code == 0, one_back.output
    head = migrate.head()
    assert head is not None
    script = ScriptDirectory(str(migrate.MIGRATIONS_DIR)).get_revision(head)
    assert script is not None and isinstance(script.down_revision, str)
    assert f"Database downgraded to revision {script.down_revision}." in one_back.output
    to_base = runner.invoke(app, ["db", "downgrade", "--revision", "base"])
    assert to_base.exit_code == 0, to_base.output
    assert "Database downgraded to base" in to_base.output
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0


def test_unreachable_database_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURSEBOOK_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    refused(invoke("token", "list"), "Database error")


# -- help ---------------------------------------------------------------------------------


def commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command and group of the CLI, with the words that name it."""
    yield path, group
    for name, command in getattr(group, "commands", {}).items():
        yield from commands(command, (*path, name))


COMMANDS = dict(commands(typer.main.get_command(app)))


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "coursebook")
def test_help_is_plain_english_with_defaults_and_choices(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for python in ("<bool>", "<int", "<str", "<path", "list[", "x>=", "range"):
        assert python not in text
    assert not re.search(r"\s[.,;:]", text), text
    for option in COMMANDS[path].params:
        if option.default in (None, "", False) or getattr(option, "is_flag", False):
            continue
        assert f"[default: {option.default}]" in text, option.opts
    if path == ("mirror",):
        for option in ("--from URL", "--token TOKEN", "--provider-id ID", "--state FILE"):
            assert option in text
        assert "[default: 8]" in text and "COURSEBOOK_MIRROR_TOKEN" in text
    if path in {("demo",), ("serve",)}:
        assert "--scale small|medium|large" in text
    if path == ("serve",):
        for name, default in (("HOST", "127.0.0.1"), ("PORT", "8000"), ("WORKERS", "1")):
            assert f"[default: COURSEBOOK_{name}, else {default}]" in text
