"""Keep each course session's attending count on the session, maintained by triggers.

Every rendered session showed ``attending_count`` through a correlated subquery over
``attendances``: an index probe per session, cheap on a small database but random
reads on a large one (most of a list page's SQL time at a million sessions). The
count now lives in ``course_sessions.attending_count``; triggers on ``attendances``
keep it equal to the number of its attendances whose status is ``registered`` or
``attended``, whoever writes them. Upgrading fills it from the attendances there are.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 06:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The statuses that count as attending (``models.ATTENDING_STATUSES`` when written).
ATTENDING = "('registered', 'attended')"

SQLITE_TRIGGERS = (
    f"""
    CREATE TRIGGER attendances_attending_count_insert AFTER INSERT ON attendances
    WHEN NEW.status IN {ATTENDING}
    BEGIN
        UPDATE course_sessions SET attending_count = attending_count + 1
        WHERE id = NEW.course_session_id;
    END
    """,
    f"""
    CREATE TRIGGER attendances_attending_count_delete AFTER DELETE ON attendances
    WHEN OLD.status IN {ATTENDING}
    BEGIN
        UPDATE course_sessions SET attending_count = attending_count - 1
        WHERE id = OLD.course_session_id;
    END
    """,
    f"""
    CREATE TRIGGER attendances_attending_count_update
    AFTER UPDATE OF status, course_session_id ON attendances
    BEGIN
        UPDATE course_sessions SET attending_count = attending_count - 1
        WHERE id = OLD.course_session_id AND OLD.status IN {ATTENDING};
        UPDATE course_sessions SET attending_count = attending_count + 1
        WHERE id = NEW.course_session_id AND NEW.status IN {ATTENDING};
    END
    """,
)
SQLITE_TRIGGER_NAMES = (
    "attendances_attending_count_insert",
    "attendances_attending_count_delete",
    "attendances_attending_count_update",
)

POSTGRESQL_FUNCTION = f"""
CREATE FUNCTION course_sessions_attending_count() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        IF OLD.status IN {ATTENDING} THEN
            UPDATE course_sessions SET attending_count = attending_count - 1
            WHERE id = OLD.course_session_id;
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        IF NEW.status IN {ATTENDING} THEN
            UPDATE course_sessions SET attending_count = attending_count + 1
            WHERE id = NEW.course_session_id;
        END IF;
    END IF;
    RETURN NULL;
END
$$
"""
POSTGRESQL_TRIGGER = """
CREATE TRIGGER attendances_attending_count
AFTER INSERT OR DELETE OR UPDATE OF status, course_session_id ON attendances
FOR EACH ROW EXECUTE FUNCTION course_sessions_attending_count()
"""


def upgrade() -> None:
    """Apply this revision."""
    op.add_column(
        "course_sessions",
        sa.Column("attending_count", sa.Integer(), nullable=False, server_default="0"),
    )
    op.execute(
        f"""
        UPDATE course_sessions SET attending_count = (
            SELECT count(*) FROM attendances
            WHERE attendances.course_session_id = course_sessions.id
            AND attendances.status IN {ATTENDING}
        )
        """
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRESQL_FUNCTION)
        op.execute(POSTGRESQL_TRIGGER)
    else:
        for trigger in SQLITE_TRIGGERS:
            op.execute(trigger)


def downgrade() -> None:
    """Revert this revision."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER attendances_attending_count ON attendances")
        op.execute("DROP FUNCTION course_sessions_attending_count()")
    else:
        for name in SQLITE_TRIGGER_NAMES:
            op.execute(f"DROP TRIGGER {name}")
    with op.batch_alter_table("course_sessions", schema=None) as batch_op:
        batch_op.drop_column("attending_count")
