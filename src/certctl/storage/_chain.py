"""A whole transaction as one statement, for PostgreSQL's hottest transactions.

On PostgreSQL every statement is a round trip, and a transaction adds two more (BEGIN,
COMMIT); a round trip costs the server and the client more CPU than a short INSERT does
(measured: an autocommit INSERT cost client and server 55-60 % of BEGIN, INSERT, COMMIT). A
transaction of a fixed shape, where each later write depends only on whether an earlier
one happened, is written instead as one statement of data-modifying CTEs, run in
autocommit: atomic by itself, one round trip, and prepared like any other.

Each write after the first reads its values from parameters ``FROM`` the CTE it depends
on (``rows_after``), so it writes a row exactly when that CTE returned one: a gate that
found nothing to change writes nothing after it. All the CTEs run on one snapshot, and a
foreign key to a row that an earlier CTE inserts is checked at the end of the statement,
when that row exists.

SQLite has no data-modifying CTEs; there the same writes run one by one inside the
caller's transaction, which costs no round trip.

A read joins such a statement the same way: ``ReadById`` keeps a read in parts, so that
storage.spending can put it beside a nonce's spend, and storage.issuance beside the
finalize's key checks, in one statement with the plain read's columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy import CTE, FromClause, Insert, Select, Table, bindparam, func, insert, select
from sqlalchemy.sql.elements import ColumnElement, Label


def rows_after(table: Table, keys: Sequence[str], gate: CTE, prefix: str) -> Insert:
    """``INSERT INTO table (keys) SELECT :<prefix><key>, ... FROM gate``: one row for each
    row of ``gate`` (at most one, for the gates used here)."""
    values = [bindparam(prefix + key, type_=table.c[key].type) for key in keys]
    return insert(table).from_select(list(keys), select(*values).select_from(gate))


def prefixed(values: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The parameters of a ``rows_after`` insert from a row's values."""
    return {prefix + key: value for key, value in values.items()}


def count(cte: CTE, name: str) -> Label[int]:
    """How many rows ``cte`` returned, as a column of the statement's one result row."""
    return select(func.count()).select_from(cte).scalar_subquery().label(name)


class ReadById(NamedTuple):
    """A read of the rows of one id (parameter ``b_id``), in parts, so that another
    statement can embed it (storage.spending outer-joins it to a one-row source)."""

    columns: Sequence[Any]
    source: FromClause
    where: ColumnElement[bool]
    order_by: Sequence[Any] = ()

    def select(self) -> Select[Any]:
        return (
            select(*self.columns)
            .select_from(self.source)
            .where(self.where)
            .order_by(*self.order_by)
        )
