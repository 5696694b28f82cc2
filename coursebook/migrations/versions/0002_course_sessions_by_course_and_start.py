"""Index course sessions by course and start time.

Loading a course's sessions filters by course and sorts by start; with only a
course index and a (provider, start) index, SQLite chose the latter and walked the
provider's whole calendar to find one course's sessions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 04:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("course_sessions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_course_sessions_course_starts_at", ["course_id", "starts_at"], unique=False
        )
        batch_op.drop_index("ix_course_sessions_course_id")


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("course_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_course_sessions_course_id", ["course_id"], unique=False)
        batch_op.drop_index("ix_course_sessions_course_starts_at")
