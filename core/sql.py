"""Plain SQL where it earns its speed, written one way.

A hot path may run a hand-written statement on PostgreSQL (a request's ORM query
compilation can cost more than the query). It then keeps a portable twin, through the
ORM, which every other database runs: the embedded default's SQLite. Both live side by
side in the app's ``sql.py``::

    def _token_by_hash_portable(digest: str) -> ApiToken | None:
        return ApiToken.objects.select_related("tenant").filter(token_hash=digest).first()

    @plain(portable=_token_by_hash_portable)
    def token_by_hash(digest: str) -> ApiToken | None:
        row = fetch_one(TOKEN_SQL, [digest])
        ...

Calling ``token_by_hash(...)`` runs the path of the connection's database. Every
statement has a parity test (``tests/<app>/test_sql.py``) that runs both paths on the
same PostgreSQL data and requires the same result; ``tests/test_sql_parity.py`` fails
for a statement without one. Rows become model instances with ``load()``, which decodes
each column as the ORM would (JSON, and times on SQLite), and parameters are prepared
with ``prep()``, as the ORM would write them. See docs/architecture.md, "Plain SQL".
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, ParamSpec, TypeVar

import psycopg
from django.db import connection
from django.db.models import Field, Model

P = ParamSpec("P")
R = TypeVar("R")
M = TypeVar("M", bound=Model)

# Every statement by its dotted name ("fleet.sql.heartbeat"), for the parity check.
STATEMENTS: dict[str, Statement[Any, Any]] = {}


class Statement(Generic[P, R]):
    """A plain-SQL path for PostgreSQL and its portable (ORM) twin, called as one."""

    def __init__(self, plain: Callable[P, R], portable: Callable[P, R]) -> None:
        self.plain = plain
        self.portable = portable
        self.name = f"{plain.__module__}.{plain.__name__}"
        functools.update_wrapper(self, plain)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if connection.vendor == "postgresql":
            return self.plain(*args, **kwargs)
        return self.portable(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<statement {self.name}>"


def plain(*, portable: Callable[P, R]) -> Callable[[Callable[P, R]], Statement[P, R]]:
    """Declare ``fn`` the PostgreSQL path of a statement whose portable twin is ``portable``."""

    def declare(fn: Callable[P, R]) -> Statement[P, R]:
        statement = Statement(fn, portable)
        STATEMENTS[statement.name] = statement
        return statement

    return declare


def fetch_one(sql: str, params: Sequence[Any] | Mapping[str, Any]) -> tuple[Any, ...] | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return None if row is None else tuple(row)


def fetch_all(sql: str, params: Sequence[Any] | Mapping[str, Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [tuple(row) for row in cursor.fetchall()]


def _server_bound(sql: str, params: Sequence[Any] | Mapping[str, Any], fetch: Callable[[Any], R], **options: Any) -> R:
    """Run ``sql`` on a server-binding cursor of the request's own connection (Django's
    cursors bind on the client), in its transaction, and log it as Django logs a query
    (``connection.queries``, ``CaptureQueriesContext``); ``fetch(cursor)`` is the answer."""
    connection.ensure_connection()
    started = time.monotonic()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, **options)
        found = fetch(cursor)
    _logged(sql, started)
    return found


def fetch_binary(sql: str, params: Sequence[Any] | Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """``fetch_all`` in PostgreSQL's binary format, for wide numeric results: a float or a
    UUID arrives as its bytes, not as text to parse (docs/alerts.md, "Evaluation"), which
    only a server-binding cursor allows."""
    rows: list[tuple[Any, ...]] = _server_bound(sql, params, lambda cursor: cursor.fetchall(), binary=True)
    return rows


def fetch_prepared(sql: str, params: Sequence[Any] | Mapping[str, Any]) -> tuple[Any, ...] | None:
    """``fetch_one`` as a prepared statement: parsed and planned once per connection, then
    sent as its name and the values, for a statement on the path of every control
    operation (docs/performance.md, "The audit trail")."""
    row = _server_bound(sql, params, lambda cursor: cursor.fetchone(), prepare=True)
    return None if row is None else tuple(row)


def fetch_all_prepared(sql: str, params: Sequence[Any] | Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """``fetch_all`` as a prepared statement, as ``fetch_prepared``: for a long statement
    run many times a second with arrays of values (docs/performance.md, "Heartbeat
    capacity"), whose text a client-binding cursor would rebuild with every value quoted."""
    rows = _server_bound(sql, params, lambda cursor: cursor.fetchall(), prepare=True)
    return [tuple(row) for row in rows]


def _logged(sql: str, started: float) -> None:
    if connection.queries_logged:
        connection.queries_log.append({"sql": sql, "time": f"{time.monotonic() - started:.3f}"})


def execute(sql: str, params: Sequence[Any] | Mapping[str, Any]) -> int:
    """Run a statement; returns the rows it changed."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


def _field(model: type[Model], name: str) -> Field[Any, Any]:
    field = model._meta.get_field(name)  # a field's name or attname ("tenant_id")
    if not isinstance(field, Field):
        raise TypeError(f"{model.__name__}.{name} is not a concrete field")
    return field


@functools.cache
def _decoder(model: type[Model], name: str, vendor: str) -> tuple[str, Any, tuple[Callable[..., Any], ...]]:
    """(attname, column expression, converters) of a field on this database."""
    field = _field(model, name)
    column = field.get_col(model._meta.db_table)
    converters = tuple(connection.ops.get_db_converters(column) + field.get_db_converters(connection))
    return field.attname, column, converters


def load(model: type[M], names: Sequence[str], values: Sequence[Any]) -> M:
    """A model instance from a row's values for ``names`` (fields' names or attnames),
    decoded as the ORM decodes them and marked as loaded from the database. Fields not
    named are deferred, as with ``QuerySet.only()``."""
    decoded: dict[str, Any] = {}
    for name, value in zip(names, values, strict=True):
        attname, column, converters = _decoder(model, name, connection.vendor)
        for convert in converters:
            value = convert(value, column, connection)
        decoded[attname] = value
    # from_db takes the values in the order of the model's fields.
    present = [f.attname for f in model._meta.concrete_fields if f.attname in decoded]
    return model.from_db(connection.alias, present, [decoded[a] for a in present])


def prep(model: type[Model], values: Mapping[str, Any]) -> list[Any]:
    """Each value as the ORM would write it to its column (by field name or attname)."""
    return [_field(model, name).get_db_prep_save(value, connection) for name, value in values.items()]


def column(model: type[Model], name: str) -> str:
    """The database column of a field (by name or attname)."""
    return str(_field(model, name).column)


def table(model: type[Model]) -> str:
    return str(model._meta.db_table)
