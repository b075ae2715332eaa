"""Reads of the audit log: each change an admin action made to a project's audited rows, who made it, when,
and each field's value before and after.

The log is django-simple-history's tables (`history = HistoricalRecords()` on the models): every model with
history that is a Project or has a `project` is in a project's log, training's deployments included,
without this module naming them (annotate never imports training).
"""

from datetime import date, datetime
from decimal import Decimal

from django.apps import apps
from django.contrib.auth import get_user_model
from django.db.models import CharField, F, QuerySet, Value

from annotate.models import Project

ACTIONS = {"+": "created", "~": "changed", "-": "deleted"}
# Bumped by every save: they would make every change look like one, and `at` says when anyway.
UNLOGGED_FIELDS = {"created_at", "updated_at"}


def audited_history_models() -> list[tuple[str, type]]:
    """Return (kind, historical model) for every history table a project's log reads, by kind."""
    found = []
    for model in apps.get_models():
        original = getattr(model, "instance_type", None)  # simple-history's link from a history model to its own
        if original is None or not hasattr(model, "history_id"):
            continue
        if original is Project or any(field.name == "project" for field in original._meta.concrete_fields):
            found.append((str(original._meta.verbose_name), model))
    return sorted(found, key=lambda pair: pair[0])


def audit_rows(*, project_id: int | None = None) -> QuerySet:
    """Return the log's rows, newest first, of one project or (None) of every project, deleted ones included:
    one union over the history tables, so that a page of it is one query however many tables there are."""
    parts = []
    for kind, model in audited_history_models():
        project_column = "id" if model.instance_type is Project else "project_id"
        rows = model.objects.all()
        if project_id is not None:
            rows = rows.filter(**{project_column: project_id})
        # Annotations only, in one order: a union lines its columns up by position.
        parts.append(rows.annotate(
            entry_kind=Value(kind, output_field=CharField()), entry_id=F("history_id"), entry_at=F("history_date"),
            entry_action=F("history_type"), entry_user=F("history_user_id"), entry_object=F("id"),
            entry_project=F(project_column),
        ).values("entry_kind", "entry_id", "entry_at", "entry_action", "entry_user", "entry_object", "entry_project"))
    first, *others = parts
    return first.union(*others, all=True).order_by("-entry_at", "-entry_id", "entry_kind")


def audit_entries(*, rows) -> list[dict]:
    """Return the log entries of `rows` (a page of audit_rows()): who, when, what, and each field before and
    after (a creation has nothing before, a deletion nothing after)."""
    rows = list(rows)
    models = dict(audited_history_models())
    records = {}
    for kind in {row["entry_kind"] for row in rows}:
        ids = [row["entry_id"] for row in rows if row["entry_kind"] == kind]
        records.update({(kind, record.history_id): record for record in models[kind].objects.filter(history_id__in=ids)})
    changes = {key: _changes(record) for key, record in records.items()}
    # Users by name, in one query: who acted, and who a change is about (a member, an invite's creator).
    about_users = [change for found in changes.values() for change in found if change.pop("is_user")]
    usernames = _usernames({row["entry_user"] for row in rows}
                           | {change[side] for change in about_users for side in ("before", "after")})
    for change in about_users:
        change["before"] = usernames.get(change["before"], change["before"])
        change["after"] = usernames.get(change["after"], change["after"])
    return [
        {
            "at": row["entry_at"],
            "user_id": row["entry_user"],
            "username": usernames.get(row["entry_user"]),
            "action": ACTIONS[row["entry_action"]],
            "kind": row["entry_kind"],
            "object_id": row["entry_object"],
            "project_id": row["entry_project"],
            "changes": changes[(row["entry_kind"], row["entry_id"])],
        }
        for row in rows
    ]


def _changes(record) -> list[dict]:
    """Each logged field that the record's change set: against the object's previous record for a change."""
    user_model = get_user_model()
    fields = [record._meta.get_field(field.name) for field in record.tracked_fields if field.name not in UNLOGGED_FIELDS]
    after = {field.name: getattr(record, field.attname) for field in fields}
    before = dict.fromkeys(after)
    if record.history_type == "~":
        previous = record.prev_record
        if previous is not None:
            before = {field.name: getattr(previous, field.attname) for field in fields}
    elif record.history_type == "-":
        before, after = after, dict.fromkeys(after)
    found = []
    for field in fields:
        if before[field.name] == after[field.name]:
            continue
        found.append({
            "field": field.name, "before": _plain(before[field.name]), "after": _plain(after[field.name]),
            "is_user": field.is_relation and field.related_model is user_model,
        })
    return found


def _plain(value):
    """The value as JSON has it: times as ISO 8601 text."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _usernames(user_ids: set) -> dict:
    user_ids = {user_id for user_id in user_ids if user_id is not None}
    if not user_ids:
        return {}
    return dict(get_user_model().objects.filter(pk__in=user_ids).values_list("pk", "username"))
