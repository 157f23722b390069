"""Rate-limit attempt windows in the service's own database (specs/decisions.md, decision 15).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # PostgreSQL: UNLOGGED. Counters need neither crash safety nor standbys (they start empty
    # after a crash or a failover), and without WAL an attempt waits for no disk flush (~4 ms
    # each otherwise, on a login that only reads).
    unlogged = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "rate_limit_windows",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("hits", sa.Text(), nullable=False),
        sa.Column("last_counted", sa.Boolean(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rate_limit_windows")),
        prefixes=["UNLOGGED"] if unlogged else [],
    )
    # The service's clean-up deletes expired rows, oldest first, a batch at a time.
    op.create_index(
        op.f("ix_rate_limit_windows_expires_at"),
        "rate_limit_windows",
        ["expires_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_rate_limit_windows_expires_at"), table_name="rate_limit_windows")
    op.drop_table("rate_limit_windows")
