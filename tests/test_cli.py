"""The CLI: demo loading, token management and one-line errors, on a scratch SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from typer.testing import CliRunner

from coursebook import models as m
from coursebook.cli import app

runner = CliRunner()


@pytest.fixture
def database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path}/cli.sqlite3"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COURSEBOOK_DATABASE_URL", url)
    return url


@pytest.fixture
def manifest(database_url: str, tmp_path: Path) -> dict[str, dict[str, str]]:
    path = tmp_path / "manifest.json"
    result = runner.invoke(app, ["demo", "--seed", "3", "--manifest", str(path)])
    assert result.exit_code == 0, result.output
    assert path.stat().st_mode & 0o777 == 0o600
    loaded: dict[str, dict[str, str]] = json.loads(path.read_text())
    for secret in loaded["tokens"].values():
        assert secret in result.output
    return loaded


def test_demo_refuses_a_database_with_providers(manifest: dict[str, dict[str, str]]) -> None:
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 1
    assert "already holds providers" in result.output
    assert isinstance(result.exception, SystemExit)


def test_token_list_never_shows_secrets(manifest: dict[str, dict[str, str]]) -> None:
    created = runner.invoke(app, ["token", "create", "--user-id", "1", "--name", "laptop"])
    assert created.exit_code == 0, created.output
    secret = created.output.strip().splitlines()[-1]
    listed = runner.invoke(app, ["token", "list"])
    assert listed.exit_code == 0, listed.output
    assert "laptop" in listed.output and secret[:10] in listed.output
    for shown in [secret, *manifest["tokens"].values()]:
        assert shown not in listed.output


def test_m2m_token_and_its_errors(manifest: dict[str, dict[str, str]]) -> None:
    ok = runner.invoke(app, ["token", "create", "--provider-id", "1", "--permission", "developer"])
    assert ok.exit_code == 0, ok.output
    for args, message in [
        (["--provider-id", "1", "--permission", "root"], "Unknown permission(s): root"),
        (["--provider-id", "1"], "needs at least one --permission"),
        (["--provider-id", "999", "--permission", "developer"], "No provider with id 999"),
        (["--user-id", "999"], "No user with id 999"),
        ([], "exactly one of --user-id"),
    ]:
        result = runner.invoke(app, ["token", "create", *args])
        assert result.exit_code == 1, args
        assert message in result.output
        assert "Traceback" not in result.output


def test_revoke_sets_revoked_at(database_url: str, manifest: dict[str, dict[str, str]]) -> None:
    result = runner.invoke(app, ["token", "revoke", "1"])
    assert result.exit_code == 0, result.output
    engine = create_engine(database_url)
    with engine.connect() as conn:
        revoked_at = conn.scalar(select(m.api_tokens.c.revoked_at).where(m.api_tokens.c.id == 1))
    engine.dispose()
    assert revoked_at is not None
    unknown = runner.invoke(app, ["token", "revoke", "4242"])
    assert unknown.exit_code == 1
    assert "No token with id 4242" in unknown.output


def test_db_upgrade_and_downgrade(database_url: str) -> None:
    for args in (["db", "upgrade"], ["db", "downgrade", "--revision", "base"], ["db", "upgrade"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output


def test_unreachable_database_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURSEBOOK_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    result = runner.invoke(app, ["token", "list"])
    assert result.exit_code == 1
    assert "Database error" in result.output and "Traceback" not in result.output
