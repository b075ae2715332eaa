"""Reads for the annotator pages and the queue's order: the task on screen, what is waiting."""

from django.db.models import Count, Exists, F, OuterRef, Q
from django.http import Http404
from django.utils import timezone

from annotate.models import Membership, Message, Ranking, Task, TaskKind, TaskState, WorkItem
from annotate.rules import allowed_kinds
from annotate.selectors import gold as gold_selectors
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
    # Gold is mixed in unmarked: counting it would show gold items as work waiting that never runs out (every
    # annotator answers each), except during a qualification set, where gold is all the work there is.
    qualifying = (gold_selectors.quality_control_on(project.settings)
                  and gold_selectors.gold_standing(project=project, annotator=membership.user).qualification_left > 0)
    counts = dict(
        WorkItem.objects.filter(project=project, open_slots__gt=0, kind__in=kinds, gold=qualifying)
        .exclude(excluded_user_ids__contains=[membership.user_id])
        .filter(Q(assignee_ids=[]) | Q(assignee_ids__contains=[membership.user_id]))
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


def work_items_in_order(*, project, kind: str | None = None):
    """Return the items that still need people, in the order the lease takes them.

    Highest priority first, the oldest among equals (as annotate.services.queue leases).
    """
    items = WorkItem.objects.filter(project=project, open_slots__gt=0)
    if kind:
        items = items.filter(kind=kind)
    return items.order_by("-priority", "created_at", "id")


def candidate_sets_open(*, project, item_ids: list[int] | None = None, limit: int = 100_000) -> list[dict]:
    """Return the ranking and comparison items that still need people, with what a reward model reads.

    Each: the item and set ids, the conversation up to the replies (root first, as `{role,
    content}` turns) and the candidates `{id, text}` in the set's order. Three queries, whatever
    the count: the items, their trees' messages, nothing per item.
    """
    items = WorkItem.objects.filter(
        project=project, kind__in=(TaskKind.RANKING, TaskKind.COMPARE), done__lt=F("needed"), closed_reason="",
        candidate_set__isnull=False,
    ).select_related("candidate_set__parent")
    if item_ids is not None:
        items = items.filter(pk__in=item_ids)
    items = list(items.order_by("id")[:limit])
    roots = {item.candidate_set.parent.root_id or item.candidate_set.parent_id for item in items}
    by_id = {
        message.id: message
        for message in Message.objects.filter(root_id__in=roots).only("id", "parent_id", "role", "text")
    }
    rows = []
    for item in items:
        candidate_set = item.candidate_set
        path, node = [], by_id.get(candidate_set.parent_id)
        while node is not None:
            path.append({"role": node.role, "content": node.text})
            node = by_id.get(node.parent_id)
        rows.append(
            {
                "item_id": item.id,
                "set_id": candidate_set.id,
                "conversation": path[::-1],
                "candidates": [
                    {"id": message_id, "text": by_id[message_id].text}
                    for message_id in candidate_set.message_ids
                    if message_id in by_id
                ],
            }
        )
    return rows


def judgements_per_set(*, project) -> dict[int, int]:
    """Return how many judgements each candidate set of the project has (imported ones too)."""
    return dict(
        Ranking.objects.filter(candidate_set__project=project).values_list("candidate_set_id").annotate(n=Count("id"))
    )
