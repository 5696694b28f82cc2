"""Index course sessions by provider, start time and id: a list page in one index scan.

A list of course sessions sorts by start time, then id (``graph._by_start``), and a
page skips the sessions before it. SQLite's index of (provider, start) already ends
with the id (the table's rowid), so it reads a page from the index alone, in order.
PostgreSQL's did not hold the id: for a page deep in a large calendar it fetched
every skipped session's row from the table and sorted each run of equal start times
again (``EXPLAIN (ANALYZE, BUFFERS)``: an index scan and an incremental sort, a buffer
per skipped session). With the id in the index the page is an index-only scan, read
in order.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 03:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_course_sessions_provider_starts_at"


def _analyze() -> None:
    """On SQLite, gather the new index's statistics where the database keeps any.

    Dropping an index drops its row of ``sqlite_stat1``, and SQLite's planner takes an
    index without statistics for a very selective one: it then chose this index for a
    course's sessions too and walked the provider's whole calendar for each (a large
    dataset's full expansions stopped answering). PostgreSQL keeps statistics by
    column, which the index change does not touch.
    """
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    kept = bind.execute(
        sa.text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'")
    ).first()
    if kept is not None:
        bind.execute(sa.text(f"ANALYZE {NAME}"))


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("course_sessions", schema=None) as batch_op:
        batch_op.drop_index(NAME)
        batch_op.create_index(NAME, ["provider_id", "starts_at", "id"], unique=False)
    _analyze()


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("course_sessions", schema=None) as batch_op:
        batch_op.drop_index(NAME)
        batch_op.create_index(NAME, ["provider_id", "starts_at"], unique=False)
    _analyze()
