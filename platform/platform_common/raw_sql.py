"""Load rows of several joined models with one hand-written query.

The queue's hot path (lease, submit, show) runs a handful of queries per request; Django's
select_related spends more time compiling those joins than PostgreSQL spends running them.
These helpers build the column list from the models' own metadata, so the SQL names only
the joins, and return real model instances (Model.from_db), not partial stand-ins.
"""

from django.db import connection


def columns(model, alias: str) -> str:
    return ", ".join(f'{alias}."{field.column}"' for field in model._meta.concrete_fields)


def fetch_one(sql: str, params, models: list) -> list | None:
    """Run `sql` (selecting `columns(model, ...)` for each model, in order) and return one
    instance per model, or None for a model whose columns are all NULL (an outer join)."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
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


def _convert(field, value):
    for converter in field.get_db_converters(connection):
        value = converter(value, field, connection)
    return value
