"""Reads for the admin pages: progress over time, imports, excluded messages."""

from datetime import timedelta

from django.db.models import Count, F, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from annotate.models import ImportBatch, ImportJob, Message, Task, TaskKind, TaskState, WorkItem

# Every item is in exactly one of these, checked in this order.
ITEM_STATES = (
    ("complete", "complete"),
    ("closed", "closed (flagged or rejected content)"),
    ("waiting", "waiting for annotators"),
    ("in_progress", "leased, being worked on"),
)


def items_per_state(*, project) -> list[dict]:
    """Return per task kind the number of items complete, closed, waiting and in progress."""
    complete = Q(done__gte=F("needed"))
    closed = ~complete & ~Q(closed_reason="")
    waiting = ~complete & Q(closed_reason="") & Q(open_slots__gt=0)
    in_progress = ~complete & Q(closed_reason="") & Q(open_slots=0)
    rows = {
        row["kind"]: row
        for row in WorkItem.objects.filter(project=project)
        .values("kind")
        .annotate(
            complete=Count("id", filter=complete),
            closed=Count("id", filter=closed),
            waiting=Count("id", filter=waiting),
            in_progress=Count("id", filter=in_progress),
        )
    }
    return [
        {"kind": kind.value, "label": kind.label, **{state: rows.get(kind.value, {}).get(state, 0) for state, _ in ITEM_STATES}}
        for kind in TaskKind
        if kind.value in rows
    ]


def submitted_per_day(*, project, days: int = 14) -> dict:
    """Return {"days": [date, ...], "people": {username: [count per day]}} for the last `days`."""
    today = timezone.localdate()
    first = today - timedelta(days=days - 1)
    rows = (
        Task.objects.filter(project=project, state=TaskState.SUBMITTED, finished_at__date__gte=first)
        .annotate(day=TruncDate("finished_at"))
        .values("day", "annotator__username")
        .annotate(n=Count("id"))
    )
    dates = [first + timedelta(days=offset) for offset in range(days)]
    index = {day: position for position, day in enumerate(dates)}
    people: dict[str, list[int]] = {}
    for row in rows:
        counts = people.setdefault(row["annotator__username"], [0] * days)
        if row["day"] in index:
            counts[index[row["day"]]] += row["n"]
    return {"days": dates, "people": dict(sorted(people.items(), key=lambda item: -sum(item[1])))}


def imports_of(*, project, limit: int = 50):
    return ImportBatch.objects.filter(project=project).select_related("imported_by").order_by("-created_at", "-id")[:limit]


def import_jobs_of(*, project, limit: int = 10):
    """The project's newest import jobs: what is waiting or running, and how the last ones ended."""
    return ImportJob.objects.filter(project=project).select_related("batch", "requested_by").order_by("-created_at", "-id")[:limit]


def excluded_messages(*, project, limit: int = 200):
    """Return the project's flagged or rejected messages, newest first, with their flags."""
    return (
        Message.objects.filter(project=project, excluded=True)
        .select_related("parent")
        .prefetch_related("labels", "reviews")
        .order_by("-updated_at", "-id")[:limit]
    )
