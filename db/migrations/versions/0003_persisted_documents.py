"""GraphQL documents registered through automatic persisted queries (db/documents.py).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "persisted_documents",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        # db.models.UTCDateTime: timestamptz on PostgreSQL, UTC wall time on SQLite
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_persisted_documents")),
    )
    # Eviction deletes the least recently used beyond the cap, a batch at a time.
    op.create_index(
        op.f("ix_persisted_documents_used_at"), "persisted_documents", ["used_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_persisted_documents_used_at"), table_name="persisted_documents")
    op.drop_table("persisted_documents")
