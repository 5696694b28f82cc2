"""Alembic migrations driven from code: the config is built here, no alembic.ini needed."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the packaged migrations and at ``url``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    # New revisions are formatted and lint-fixed so they pass the project's ruff rules.
    config.set_section_option("post_write_hooks", "hooks", "ruff_format, ruff_fix")
    config.set_section_option("post_write_hooks", "ruff_fix.type", "module")
    config.set_section_option("post_write_hooks", "ruff_fix.module", "ruff")
    config.set_section_option(
        "post_write_hooks", "ruff_fix.options", "check --fix --quiet REVISION_SCRIPT_FILENAME"
    )
    config.set_section_option("post_write_hooks", "ruff_format.type", "module")
    config.set_section_option("post_write_hooks", "ruff_format.module", "ruff")
    config.set_section_option(
        "post_write_hooks", "ruff_format.options", "format --quiet REVISION_SCRIPT_FILENAME"
    )
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision`` (the latest by default)."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "-1") -> None:
    """Migrate the database at ``url`` down to ``revision`` (one step by default)."""
    command.downgrade(alembic_config(url), revision)


def revision(url: str, message: str) -> None:
    """Autogenerate a new migration from the difference between ``url`` and the models."""
    command.revision(alembic_config(url), message=message, autogenerate=True)


@functools.cache
def head() -> str | None:
    """The latest revision of the packaged migrations: the schema this code reads."""
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def current(conn: Connection) -> str | None:
    """The revision the database at ``conn`` is migrated to; None when it never was.

    One statement when it was; a database that does not answer raises.
    """
    try:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:
        if conn.dialect.has_table(conn, "alembic_version"):
            raise
        return None
