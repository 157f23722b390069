"""The task events' log: live updates that lose nothing and resume (specs/decisions.md, 23).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "task_events",
        # PostgreSQL: an identity (never reused); SQLite: INTEGER PRIMARY KEY AUTOINCREMENT.
        sa.Column(
            "position",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.Identity(),
            nullable=False,
        ),
        sa.Column("xid", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(length=7), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=True),
        sa.Column("description", sa.String(length=1000), nullable=True),
        sa.Column("completed", sa.Boolean(), nullable=True),
        # db.models.UTCDateTime: timestamptz on PostgreSQL, UTC wall time on SQLite
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_task_events")),
        sqlite_autoincrement=True,
    )
    # Instances read the log in snapshot batches, from the oldest transaction not yet seen.
    op.create_index(op.f("ix_task_events_xid"), "task_events", ["xid"], unique=False)
    # A subscriber's replay: one owner's events after a position.
    op.create_index(
        "ix_task_events_user_id_position", "task_events", ["user_id", "position"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_task_events_user_id_position", table_name="task_events")
    op.drop_index(op.f("ix_task_events_xid"), table_name="task_events")
    op.drop_table("task_events")
