"""Alembic environment: always run on the connection certctl hands in (see db.migrate)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from certctl.storage.schema import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


_conn = context.config.attributes.get("connection")
if _conn is None:  # pragma: no cover - only reachable from the alembic CLI
    raise RuntimeError("run migrations through certctl (certctl init), not the alembic CLI")
_run(_conn)
