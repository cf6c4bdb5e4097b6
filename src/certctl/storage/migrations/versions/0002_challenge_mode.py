"""challenge mode: identifier policy, CAA and EAB settings per profile, EAB keys,
authorization validation time, challenge processing bookkeeping

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "eab_keys",
        sa.Column("kid", sa.String(length=128), nullable=False),
        sa.Column("hmac_key", sa.LargeBinary(), nullable=False),
        sa.Column("profile_ids", sa.Text(), nullable=False),
        sa.Column("reusable", sa.Boolean(), nullable=False),
        sa.Column("uses", sa.Integer(), server_default="0", nullable=False),
        sa.Column("revoked", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("allowed_names", sa.Text(), server_default="[]", nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_eab_keys")),
    )
    with op.batch_alter_table("certificate_profiles") as batch:
        batch.add_column(sa.Column("allowed_names", sa.Text(), server_default="[]", nullable=False))
        batch.add_column(sa.Column("denied_names", sa.Text(), server_default="[]", nullable=False))
        batch.add_column(
            sa.Column("allow_wildcards", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        batch.add_column(
            sa.Column("allow_ip", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.add_column(sa.Column("ip_networks", sa.Text(), server_default="[]", nullable=False))
        batch.add_column(
            sa.Column("max_identifiers", sa.Integer(), server_default="100", nullable=False)
        )
        batch.add_column(
            sa.Column("caa_check", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.add_column(
            sa.Column("eab_required", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("acme_accounts") as batch:
        batch.add_column(sa.Column("eab_kid", sa.String(length=128), nullable=True))
        batch.create_foreign_key(
            op.f("fk_acme_accounts_eab_kid_eab_keys"), "eab_keys", ["eab_kid"], ["kid"]
        )
    with op.batch_alter_table("acme_authorizations") as batch:
        batch.add_column(sa.Column("validated_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index(
            "ix_acme_authorizations_reuse",
            ["account_id", "identifier_type", "identifier_value", "status"],
            unique=False,
        )
    with op.batch_alter_table("acme_challenges") as batch:
        batch.add_column(sa.Column("processing_since", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("validation_record", sa.Text(), nullable=True))
        batch.create_index("ix_acme_challenges_status", ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("acme_challenges") as batch:
        batch.drop_index("ix_acme_challenges_status")
        batch.drop_column("validation_record")
        batch.drop_column("processing_since")
    with op.batch_alter_table("acme_authorizations") as batch:
        batch.drop_index("ix_acme_authorizations_reuse")
        batch.drop_column("validated_at")
    with op.batch_alter_table("acme_accounts") as batch:
        batch.drop_constraint(op.f("fk_acme_accounts_eab_kid_eab_keys"), type_="foreignkey")
        batch.drop_column("eab_kid")
    with op.batch_alter_table("certificate_profiles") as batch:
        for name in (
            "eab_required",
            "caa_check",
            "max_identifiers",
            "ip_networks",
            "allow_ip",
            "allow_wildcards",
            "denied_names",
            "allowed_names",
        ):
            batch.drop_column(name)
    op.drop_table("eab_keys")
