"""rate limits: overrides per account and per profile, open-orders index

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ratelimit_overrides",
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("limit_name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "scope", "subject_id", "limit_name", name=op.f("pk_ratelimit_overrides")
        ),
    )
    with op.batch_alter_table("acme_orders") as batch:
        batch.create_index("ix_acme_orders_account_status", ["account_id", "status"])


def downgrade() -> None:
    with op.batch_alter_table("acme_orders") as batch:
        batch.drop_index("ix_acme_orders_account_status")
    op.drop_table("ratelimit_overrides")
