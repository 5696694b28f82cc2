"""Count committed writes on PostgreSQL in one row, so workers can keep what they read.

PostgreSQL gives a worker no cheap signal that the database changed (SQLite has
``PRAGMA data_version``), so until now a worker on PostgreSQL remembered nothing
between requests and read every request's token again. ``data_version`` holds one
row; a statement trigger on every other table adds one to it in the transaction that
writes, so the change to the count commits, and becomes visible, exactly with the
write. A statement that reads the count beside its data reads the count that matches
that data (``coursebook.memo``).

A table added by a later revision needs the same trigger (``add_counting_trigger``
below shows the statement); a test fails for a table without it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 14:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTION = """
CREATE FUNCTION count_data_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE data_version SET version = version + 1 WHERE id = 1;
    RETURN NULL;
END
$$
"""
#: Tables whose writes change no response: the count itself, and Alembic's own.
UNCOUNTED = frozenset({"data_version", "alembic_version"})


def add_counting_trigger(table: str) -> None:
    """Count every write statement to ``table`` (PostgreSQL)."""
    op.execute(
        f"CREATE TRIGGER {table}_data_version "
        f"AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION count_data_version()"
    )


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "data_version",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), server_default="0", nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_data_version_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_version")),
    )
    op.execute("INSERT INTO data_version (id, version) VALUES (1, 0)")
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute(FUNCTION)
    for table in sorted(set(sa.inspect(bind).get_table_names()) - UNCOUNTED):
        add_counting_trigger(table)


def downgrade() -> None:
    """Revert this revision."""
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for table in sorted(set(sa.inspect(bind).get_table_names()) - UNCOUNTED):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_data_version ON {table}")
        op.execute("DROP FUNCTION count_data_version()")
    op.drop_table("data_version")
