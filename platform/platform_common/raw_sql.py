"""Load rows of several joined models with one hand-written query.

The queue's hot path (lease, submit, show) runs a handful of queries per request; Django's
select_related spends more time compiling those joins than PostgreSQL spends running them.
These helpers build the column list from the models' own metadata, so the SQL names only
the joins, and return real model instances (Model.from_db), not partial stand-ins.

They run on `prepared_cursor()`: PostgreSQL plans each of these statements once per connection
rather than on every request (planning a primary-key lookup costs it about four times what running
it does; the lease statement's plan about half a millisecond).
"""

from contextlib import contextmanager

from django.db import OperationalError, connection
from django.db.backends.postgresql.base import ServerBindingCursor


@contextmanager
def prepared_cursor():
    """A cursor whose statements the server keeps planned, as Django's own cursor() in every other way
    (errors, debug logging, execute wrappers).

    Django's cursors merge parameters into the SQL text (client-side binding), which psycopg never
    prepares. This one binds them on the server, so psycopg prepares a statement once it has run
    `prepare_threshold` times on the connection (settings: DATABASE_PREPARED_STATEMENTS; off for a
    transaction-mode pooler that cannot keep them). Parameters are typed by their Python values (an int
    is a number, None is a NULL of unknown type: cast it in the SQL where the type matters).
    """
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        cursor = connection._prepare_cursor(ServerBindingCursor(connection.connection))
    with cursor:
        yield cursor


def columns(model, alias: str) -> str:
    return ", ".join(f'{alias}."{field.column}"' for field in model._meta.concrete_fields)


def fetch_one(sql: str, params, models: list) -> list | None:
    """Run `sql` (selecting `columns(model, ...)` for each model, in order) and return one
    instance per model, or None for a model whose columns are all NULL (an outer join)."""
    try:
        row = _fetch_row(sql, params)
    except OperationalError:
        # The connection died while idle (the database restarted since this process last asked):
        # outside a transaction a read can simply be asked again on a new connection.
        if connection.in_atomic_block or connection.is_usable():
            raise
        connection.close()
        row = _fetch_row(sql, params)
    if row is None:
        return None
    instances, start = [], 0
    for model in models:
        fields = model._meta.concrete_fields
        values = row[start : start + len(fields)]
        start += len(fields)
        if values[0] is None:
            instances.append(None)
            continue
        # Apply the fields' own converters (JSONField parses its text), as the ORM would.
        values = [_convert(field, value) for field, value in zip(fields, values)]
        instances.append(model.from_db(connection.alias, [f.attname for f in fields], values))
    return instances


def _fetch_row(sql: str, params):
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _convert(field, value):
    for converter in field.get_db_converters(connection):
        value = converter(value, field, connection)
    return value
