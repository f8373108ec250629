"""Statements compiled once per dialect and run on the driver's cursor.

SQLAlchemy's ``Connection.execute`` rebuilds on every call what a statement that never
changes does not need rebuilt: the statement's cache key (a walk of the whole expression),
the parameter dictionary of its compiled form, the result's column map and a ``Row`` per
row. For the ledger's guarded moves -- three per redemption, each one short UPDATE that
commits on its own -- that bookkeeping costs about as much CPU as the database's work (on
SQLite, measured: ~170 us a statement). A ``Prepared`` statement is compiled once, its
bind and result processors looked up once, and each run is one ``execute`` on the driver's
cursor of the connection SQLAlchemy checked out.

What ``Connection.execute`` would add and still matters is kept: a driver error is raised
as SQLAlchemy's wrapper (``IntegrityError``, ``OperationalError`` ...) with the statement's
parameters hidden, and an error that means the connection is gone invalidates it, so the
pool replaces it. SQLAlchemy's cursor events do not fire: ``STATEMENT_OBSERVERS`` sees these
statements instead (the benchmarks count statements with both).

Only for statements whose shape is fixed: no ``IN`` list that expands, nothing rendered at
execution time, bind names the driver takes as they are (``Prepared`` refuses the rest).
The engine's ``schema_translate_map`` (``[ledger] schema``) is applied when compiling, as
``Connection.execute`` would apply it when running.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from typing import Any

from sqlalchemy import Column, exc
from sqlalchemy.engine import Connection, Dialect

_Processor = Callable[[Any], Any] | None

_REQUIRED = object()

STATEMENT_OBSERVERS: list[Callable[[Connection, Any, str, Any], None]] = []
"""Called with ``(connection, cursor, statement, parameters)`` before a prepared statement
is sent: the arguments of SQLAlchemy's ``before_cursor_execute`` that matter here."""


class Prepared:
    """``statement`` compiled for ``dialect``; its first row comes back as a dictionary keyed
    by the names of ``columns`` (the statement's result columns, in order), each value
    through its column type's result processor, as ``execute`` would give it."""

    def __init__(self, statement: Any, dialect: Dialect, columns: Sequence[Column[Any]],
                 schema_translate_map: Mapping[str | None, str | None] | None = None) -> None:
        compiled = (statement.compile(dialect=dialect) if not schema_translate_map
                    else statement.compile(dialect=dialect,
                                           schema_translate_map=dict(schema_translate_map),
                                           render_schema_translate=True))
        if (compiled.literal_execute_params or compiled.post_compile_params
                or compiled.escaped_bind_names):
            raise ValueError("a statement with parameters rendered at execution time, or "
                             "with bind names the driver needs escaped, cannot be prepared")
        self.statement = statement
        self.sql: str = compiled.string
        self._dialect = dialect
        self._error: type[Exception] = dialect.loaded_dbapi.Error
        self._positional = compiled.positiontup if compiled.positional else None
        # Per bind name: its processor, and the value it has when the caller gives none
        # (a value compiled into the statement, ``x + 1``); _REQUIRED when it must be given.
        self._binds: tuple[tuple[str, _Processor, Any], ...] = tuple(
            (name, bind.type.dialect_impl(dialect).bind_processor(dialect),
             _REQUIRED if bind.required else bind.effective_value)
            for bind, name in compiled.bind_names.items()
        )
        self._names = tuple(column.name for column in columns)
        self._results: tuple[_Processor, ...] = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in columns
        )

    def parameters(self, values: Mapping[str, Any]) -> Any:
        """The driver's parameters for ``values`` (keyed by bind name): processed as the
        column types say, in the order the dialect's placeholders need."""
        params: dict[str, Any] = {}
        for name, process, default in self._binds:
            value = values[name] if default is _REQUIRED or name in values else default
            params[name] = value if process is None else process(value)
        if self._positional is None:
            return params
        return tuple([params[name] for name in self._positional])

    def first(self, conn: Connection, values: Mapping[str, Any]) -> dict[str, Any] | None:
        """Run on ``conn``'s driver connection, as one statement; the first row (processed),
        or None when there is none. Driver errors come out as SQLAlchemy's."""
        params = self.parameters(values)
        driver = conn.connection.driver_connection
        assert driver is not None  # a checked-out connection has one
        cursor = None
        try:
            cursor = driver.cursor()
            for observe in STATEMENT_OBSERVERS:
                observe(conn, cursor, self.sql, params)
            cursor.execute(self.sql, params)
            row = cursor.fetchone()
        except self._error as e:
            gone = self._dialect.is_disconnect(e, driver, cursor)  # type: ignore[arg-type]
            if gone:
                conn.invalidate(e)
            # Parameters hidden: they carry advocates' addresses and messages.
            raise exc.DBAPIError.instance(
                self.sql, None, e, self._error, hide_parameters=True,
                connection_invalidated=gone, dialect=self._dialect) from e
        finally:
            if cursor is not None:
                with suppress(self._error):  # a broken connection: the error above says so
                    cursor.close()
        if row is None:
            return None
        return {
            name: value if process is None else process(value)
            for name, process, value in zip(self._names, self._results, row, strict=True)
        }

    def first_in(self, conn: Connection, values: Mapping[str, Any]) -> dict[str, Any] | None:
        """As ``first``, through ``conn.execute``: for a statement inside a transaction
        SQLAlchemy began (its BEGIN, its events), where the saving does not matter."""
        row = conn.execute(self.statement, values).first()
        return None if row is None else dict(row._mapping)
