"""Index customer memberships by membership and active flag.

Every rendered membership counts its active members. With an index on the
membership alone, SQLite read each member's row to test ``active``: at a provider
with thousands of customers that was most of a full expansion's time.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 06:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("customer_memberships", schema=None) as batch_op:
        batch_op.create_index(
            "ix_customer_memberships_membership_active", ["membership_id", "active"], unique=False
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("customer_memberships", schema=None) as batch_op:
        batch_op.drop_index("ix_customer_memberships_membership_active")
