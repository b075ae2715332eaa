"""Reads for the annotator pages: the task on screen, what is waiting for someone."""

from django.db.models import Count, Exists, OuterRef
from django.http import Http404
from django.utils import timezone

from annotate.models import Membership, Task, TaskKind, TaskState, WorkItem
from annotate.rules import allowed_kinds
from annotate.selectors.accounts import membership_for


def task_for_annotator(*, user, task_id: int) -> tuple[Task, Membership]:
    """Return the user's own task and their membership in its project, or 404.

    Someone else's task is as unknown to the asker as a task that does not exist.
    """
    task = Task.objects.filter(pk=task_id).first()
    if task is None:
        raise Http404("no such task")
    membership = membership_for(user=user, project_id=task.project_id)
    if task.annotator_id != user.id:
        raise Http404("no such task")
    return task, membership


def waiting_for(*, membership: Membership) -> list[dict]:
    """Return, per kind the member may do, how many items still need someone like them.

    Items they already took (done, skipped, expired) and items about their own messages are
    left out. Writing a new prompt is always possible (`always`).
    """
    project = membership.project
    weights = project.settings.weights()
    kinds = allowed_kinds(role=membership.role, weights=weights)
    mine = Task.objects.filter(item_id=OuterRef("pk"), annotator_id=membership.user_id)
    counts = dict(
        WorkItem.objects.filter(project=project, open_slots__gt=0, kind__in=kinds)
        .exclude(excluded_user_ids__contains=[membership.user_id])
        .exclude(Exists(mine))
        .values_list("kind")
        .annotate(n=Count("id"))
    )
    rows = []
    for kind in TaskKind:
        if kind not in kinds:
            continue
        # Prompts: chats waiting for their next turn are counted, and a new conversation can
        # always be started.
        rows.append(
            {"kind": kind.value, "label": kind.label, "count": counts.get(kind.value, 0), "always": kind == TaskKind.PROMPT}
        )
    return rows


def held_task(*, membership: Membership) -> Task | None:
    """Return the lease the member holds in the project and may still submit, if any."""
    return (
        Task.objects.filter(
            project=membership.project, annotator_id=membership.user_id, state=TaskState.LEASED,
            lease_expires_at__gt=timezone.now(),
        )
        .order_by("created_at")
        .first()
    )
