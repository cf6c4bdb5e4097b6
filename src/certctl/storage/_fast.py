"""The statements every issuance runs, executed on the driver's cursor.

An issuance runs about twenty fixed statements. Through ``Connection.execute`` each one
pays SQLAlchemy's per-execution machinery (cache key and compiled-cache lookup,
execution context, parameter and result processing, a result object), which costs more
than SQLite takes to run the statement (measured: about 25 µs against 12 µs for one
audit-row INSERT). A ``FastStatement`` keeps the Core construct as the one source of
its SQL, compiles it once per dialect for the parameter names its caller passes, and
then does only what is left: the column types' bind processors (``UTCDateTime``: aware
UTC in, naive UTC for SQLite), the cursor call, and the result processors.

It runs on the caller's ``Connection``, inside whatever transaction that connection is
in. On PostgreSQL every statement of a connection runs on one psycopg cursor, kept with
the connection: a new cursor per statement cost about a third of psycopg's share of a
statement (measured: about 15 µs of 45), and a client-side cursor holds nothing on the
server between statements. On SQLite each statement has a cursor of its own, closed
after it: an open cursor's unfinished SELECT would keep its statement active.

A driver error goes through SQLAlchemy's own handling of driver errors
(``Connection._handle_dbapi_exception``), so callers still catch ``IntegrityError`` and
``OperationalError``, and a lost PostgreSQL connection still invalidates the pool: that
is SQLAlchemy's private method, and ``tests/unit/storage/test_fast.py`` holds it to both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import StatementError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, ReturnsRows

Row = dict[str, Any]
_Processor = Callable[[Any], Any] | None
_MISSING = object()
# The key of a connection's kept cursor in SQLAlchemy's per-connection ``info``, which is
# cleared when the driver's connection is replaced (after an invalidation, say).
_CURSOR = "certctl.fast_cursor"


class _Plan:
    """A statement compiled for one dialect, and how to bind and read it."""

    __slots__ = ("binds", "columns", "keep_cursor", "positional", "results", "sql")

    def __init__(self, stmt: ClauseElement, keys: Sequence[str], dialect: Dialect) -> None:
        compiled = stmt.compile(dialect=dialect, column_keys=list(keys) or None)
        if not isinstance(compiled, SQLCompiler):  # pragma: no cover - DDL is not run here
            raise TypeError("FastStatement takes DML and SELECT statements")
        self.sql = compiled.string
        self.positional = dialect.positional
        self.keep_cursor = dialect.name == "postgresql"
        by_name = {name: bind for bind, name in compiled.bind_names.items()}
        names = list(compiled.positiontup or ()) if self.positional else list(by_name)
        # (name in the SQL, processor, value when the caller gives none)
        self.binds: list[tuple[str, _Processor, Any]] = []
        for name in names:
            bind = by_name[name]
            if bind.expanding:
                raise TypeError(f"{name}: IN lists are not supported here")
            value = _MISSING if bind.required or bind.callable is not None else bind.value
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            self.binds.append((name, processor, value))
        self.columns: list[str] = []
        self.results: list[_Processor] = []
        if isinstance(stmt, ReturnsRows):
            for column in stmt.exported_columns:
                impl = column.type.dialect_impl(dialect)
                self.columns.append(column.key)
                self.results.append(impl.result_processor(dialect, None))

    def arguments(self, params: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        values = []
        for name, processor, default in self.binds:
            value = params.get(name, default)
            if value is _MISSING:
                raise KeyError(f"no value for {name!r}")
            values.append(value if processor is None or value is None else processor(value))
        if self.positional:
            return values
        return dict(zip((name for name, _, _ in self.binds), values, strict=True))

    def row(self, raw: Sequence[Any]) -> Row:
        return {
            key: value if process is None or value is None else process(value)
            for key, process, value in zip(self.columns, self.results, raw, strict=True)
        }


class FastStatement:
    """A Core statement run straight on the driver (see the module docstring).

    ``keys``: for an INSERT or UPDATE built without ``.values()``, the column keys every
    call passes (what ``Connection.execute`` would compile it for).
    """

    __slots__ = ("_keys", "_plans", "_stmt")

    def __init__(self, stmt: ClauseElement, keys: Sequence[str] = ()) -> None:
        self._stmt = stmt
        self._keys = tuple(keys)
        self._plans: dict[str, _Plan] = {}

    def _plan(self, conn: Connection) -> _Plan:
        dialect = conn.dialect
        plan = self._plans.get(dialect.name)
        if plan is None:
            plan = self._plans[dialect.name] = _Plan(self._stmt, self._keys, dialect)
        return plan

    def _execute(self, conn: Connection, plan: _Plan, params: Mapping[str, Any]) -> Any:
        return self._call(conn, plan, [params], many=False)

    def _call(
        self, conn: Connection, plan: _Plan, rows: Sequence[Mapping[str, Any]], *, many: bool
    ) -> Any:
        """The cursor after ``execute`` (one row) or ``executemany`` (``many``)."""
        try:
            arguments = [plan.arguments(params) for params in rows]
        except (KeyError, TypeError, ValueError) as exc:
            # As Connection.execute reports a value its type refuses (a naive datetime).
            raise StatementError(f"({type(exc).__name__}) {exc}", plan.sql, None, exc) from exc
        fairy = conn.connection
        if plan.keep_cursor:
            cursor = fairy.info.get(_CURSOR)
            if cursor is None:
                cursor = fairy.info[_CURSOR] = fairy.driver_connection.cursor()  # type: ignore[union-attr]
        else:
            cursor = fairy.driver_connection.cursor()  # type: ignore[union-attr]
        # Cursor events are honoured as Connection.execute honours them (tests count
        # statements with them); an engine without listeners pays one truth test.
        listeners = conn.dispatch.before_cursor_execute
        given = arguments if many else arguments[0]
        if listeners:
            for listener in listeners:
                listener(conn, cursor, plan.sql, given, None, many)
        try:
            if many:
                cursor.executemany(plan.sql, arguments)
            else:
                cursor.execute(plan.sql, given)
        except Exception as exc:
            if plan.keep_cursor:
                # SQLAlchemy closes the cursor of a failed statement: the connection,
                # which outlives the error (a unique key refused, say), takes a new one.
                del fairy.info[_CURSOR]
            conn._handle_dbapi_exception(exc, plan.sql, given, cursor, None)
        return cursor

    def execute_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run it once per parameter set, in one driver call (psycopg pipelines them: one
        round trip for all)."""
        plan = self._plan(conn)
        _done(plan, self._call(conn, plan, rows, many=True))

    def rowcount(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Run it; the number of rows it changed."""
        plan = self._plan(conn)
        cursor = self._execute(conn, plan, params)
        count: int = cursor.rowcount
        _done(plan, cursor)
        return count

    def first(self, conn: Connection, params: Mapping[str, Any]) -> Row | None:
        """Run it; its first row, or None."""
        plan = self._plan(conn)
        cursor = self._execute(conn, plan, params)
        raw = cursor.fetchone()
        _done(plan, cursor)
        return None if raw is None else plan.row(raw)

    def all(self, conn: Connection, params: Mapping[str, Any]) -> list[Row]:
        """Run it; every row."""
        plan = self._plan(conn)
        cursor = self._execute(conn, plan, params)
        rows = cursor.fetchall()
        _done(plan, cursor)
        return [plan.row(raw) for raw in rows]


def _done(plan: _Plan, cursor: Any) -> None:
    """A statement's cursor once it has been read: closed unless the connection keeps it."""
    if not plan.keep_cursor:
        cursor.close()
