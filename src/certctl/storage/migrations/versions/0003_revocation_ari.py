"""revocation, CRL state, blocked keys, ARI replacement and shifts, pre-authorization

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("certificate_versions") as batch:
        batch.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("revocation_reason", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("replaced_by_order_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("ari_window_end", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("aki", sa.String(length=128), server_default="", nullable=False))
        batch.create_index("ix_certificate_versions_issuer_status", ["issuer_id", "status"])
    op.create_table(
        "certificate_revocations",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("issuer_id", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["serial"],
            ["certificate_versions.serial"],
            name=op.f("fk_certificate_revocations_serial_certificate_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["issuer_id"], ["issuers.id"], name=op.f("fk_certificate_revocations_issuer_id_issuers")
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_certificate_revocations")),
        sa.UniqueConstraint("serial", name="uq_certificate_revocations_serial"),
    )
    op.create_table(
        "blocked_keys",
        sa.Column("spki_sha256", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("source_serial", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("spki_sha256", name=op.f("pk_blocked_keys")),
    )
    op.create_table(
        "crl_state",
        sa.Column("issuer_id", sa.String(length=64), nullable=False),
        sa.Column("crl_number", sa.Integer(), nullable=False),
        sa.Column("this_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["issuer_id"], ["issuers.id"], name=op.f("fk_crl_state_issuer_id_issuers")
        ),
        sa.PrimaryKeyConstraint("issuer_id", name=op.f("pk_crl_state")),
    )
    with op.batch_alter_table("acme_orders") as batch:
        batch.add_column(sa.Column("replaces", sa.String(length=64), nullable=True))
    with op.batch_alter_table("acme_authorizations") as batch:
        batch.alter_column("order_id", existing_type=sa.String(length=64), nullable=True)
    with op.batch_alter_table("certificate_profiles") as batch:
        batch.add_column(
            sa.Column(
                "allow_preauthorization", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
        batch.add_column(sa.Column("renewal_window_days", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("certificate_profiles") as batch:
        batch.drop_column("renewal_window_days")
        batch.drop_column("allow_preauthorization")
    with op.batch_alter_table("acme_authorizations") as batch:
        batch.alter_column("order_id", existing_type=sa.String(length=64), nullable=False)
    with op.batch_alter_table("acme_orders") as batch:
        batch.drop_column("replaces")
    op.drop_table("crl_state")
    op.drop_table("blocked_keys")
    op.drop_table("certificate_revocations")
    with op.batch_alter_table("certificate_versions") as batch:
        batch.drop_index("ix_certificate_versions_issuer_status")
        batch.drop_column("aki")
        batch.drop_column("ari_window_end")
        batch.drop_column("replaced_by_order_id")
        batch.drop_column("revocation_reason")
        batch.drop_column("revoked_at")
