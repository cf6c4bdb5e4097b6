"""used nonces: one key, (expires_at, nonce), in place of a key on the nonce and an index

A nonce carries its expiry under its MAC, so the pair is as unique as the nonce; the one
key serves both the single-use check and the GC's purge by expiry. On SQLite the table
has no rowid: the key is the table. Rows are copied: a spent nonce that has not expired
must stay spent across the upgrade (RFC 8555 §6.5).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TABLE = "acme_used_nonces"
_INDEX = "ix_acme_used_nonces_expires"
_PK = "pk_acme_used_nonces"


def upgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        # WITHOUT ROWID cannot be switched on in place: a new table, filled, renamed.
        op.create_table(
            "acme_used_nonces_new",
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("nonce", sa.String(length=96), nullable=False),
            sa.PrimaryKeyConstraint("expires_at", "nonce", name=_PK),
            sqlite_with_rowid=False,
        )
        op.execute(
            "INSERT INTO acme_used_nonces_new (expires_at, nonce)"
            " SELECT expires_at, nonce FROM acme_used_nonces"
        )
        op.drop_table(_TABLE)  # and its expiry index with it
        op.rename_table("acme_used_nonces_new", _TABLE)
        return
    op.drop_constraint(_PK, _TABLE, type_="primary")
    op.create_primary_key(_PK, _TABLE, ["expires_at", "nonce"])
    op.drop_index(_INDEX, table_name=_TABLE)


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        op.create_table(
            "acme_used_nonces_old",
            sa.Column("nonce", sa.String(length=96), nullable=False),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("nonce", name=_PK),
        )
        op.execute(
            "INSERT INTO acme_used_nonces_old (nonce, expires_at)"
            " SELECT nonce, expires_at FROM acme_used_nonces"
        )
        op.drop_table(_TABLE)
        op.rename_table("acme_used_nonces_old", _TABLE)
    else:
        op.drop_constraint(_PK, _TABLE, type_="primary")
        op.create_primary_key(_PK, _TABLE, ["nonce"])
    op.create_index(_INDEX, _TABLE, ["expires_at"], unique=False)
