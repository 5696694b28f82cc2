"""Keep each membership's active member count on the membership, maintained by triggers.

Every rendered membership counted its active ``customer_memberships``: an index range
as long as the membership has members, which grows with the provider's customers
(thousands on the large dataset). The count now lives in
``memberships.active_member_count``; triggers on ``customer_memberships`` keep it equal
to the number of its rows with ``active`` true, whoever writes them. Upgrading fills
it from the customer memberships there are.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 07:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_TRIGGERS = {
    "customer_memberships_active_member_count_insert": """
    CREATE TRIGGER customer_memberships_active_member_count_insert
    AFTER INSERT ON customer_memberships WHEN NEW.active
    BEGIN
        UPDATE memberships SET active_member_count = active_member_count + 1
        WHERE id = NEW.membership_id;
    END
    """,
    "customer_memberships_active_member_count_delete": """
    CREATE TRIGGER customer_memberships_active_member_count_delete
    AFTER DELETE ON customer_memberships WHEN OLD.active
    BEGIN
        UPDATE memberships SET active_member_count = active_member_count - 1
        WHERE id = OLD.membership_id;
    END
    """,
    "customer_memberships_active_member_count_update": """
    CREATE TRIGGER customer_memberships_active_member_count_update
    AFTER UPDATE OF active, membership_id ON customer_memberships
    BEGIN
        UPDATE memberships SET active_member_count = active_member_count - 1
        WHERE id = OLD.membership_id AND OLD.active;
        UPDATE memberships SET active_member_count = active_member_count + 1
        WHERE id = NEW.membership_id AND NEW.active;
    END
    """,
}

POSTGRESQL_FUNCTION = """
CREATE FUNCTION memberships_active_member_count() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        IF OLD.active THEN
            UPDATE memberships SET active_member_count = active_member_count - 1
            WHERE id = OLD.membership_id;
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        IF NEW.active THEN
            UPDATE memberships SET active_member_count = active_member_count + 1
            WHERE id = NEW.membership_id;
        END IF;
    END IF;
    RETURN NULL;
END
$$
"""
POSTGRESQL_TRIGGER = """
CREATE TRIGGER customer_memberships_active_member_count
AFTER INSERT OR DELETE OR UPDATE OF active, membership_id ON customer_memberships
FOR EACH ROW EXECUTE FUNCTION memberships_active_member_count()
"""


def upgrade() -> None:
    """Apply this revision."""
    op.add_column(
        "memberships",
        sa.Column("active_member_count", sa.Integer(), nullable=False, server_default="0"),
    )
    op.execute(
        """
        UPDATE memberships SET active_member_count = (
            SELECT count(*) FROM customer_memberships
            WHERE customer_memberships.membership_id = memberships.id
            AND customer_memberships.active = TRUE
        )
        """
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRESQL_FUNCTION)
        op.execute(POSTGRESQL_TRIGGER)
    else:
        for trigger in SQLITE_TRIGGERS.values():
            op.execute(trigger)


def downgrade() -> None:
    """Revert this revision."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER customer_memberships_active_member_count ON customer_memberships")
        op.execute("DROP FUNCTION memberships_active_member_count()")
    else:
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.drop_column("active_member_count")
