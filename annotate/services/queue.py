"""Handing out work: leases, expiry, skips. Race-free under many annotators at once.

The pool is WorkItem rows with open slots. Leasing locks one row with FOR UPDATE SKIP LOCKED
(so concurrent annotators pass over each other's rows instead of queueing behind them) and
decrements its open_slots in the same statement; a unique (item, annotator) constraint makes
"never the same item twice to one person" hold even if two of one person's requests race.
No table lock, no global mutex.
"""

import random
from datetime import timedelta

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from annotate.errors import Conflict, NotYours
from annotate.models import ROLE_RANK, Project, Role, Task, TaskKind, TaskState, WorkItem

# Kinds that need more than the annotator role.
KIND_ROLE = {TaskKind.REVIEW: Role.REVIEWER}

LEASE_ONE_ITEM = """
UPDATE annotate_workitem SET open_slots = open_slots - 1, updated_at = now()
WHERE id = (
    SELECT w.id FROM annotate_workitem w
    WHERE w.project_id = %(project)s AND w.kind = %(kind)s AND w.open_slots > 0
      AND NOT (%(user)s = ANY (w.excluded_user_ids))
      AND NOT EXISTS (
          SELECT 1 FROM annotate_task t WHERE t.item_id = w.id AND t.annotator_id = %(user)s)
    ORDER BY w.created_at, w.id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING id
"""

# Expire leases that ran out and give their slots back, in one statement. SKIP LOCKED: a lease
# that another transaction is submitting right now is theirs to settle.
RECLAIM_EXPIRED = """
WITH expired AS (
    UPDATE annotate_task SET state = 'expired', finished_at = now(), updated_at = now()
    WHERE id IN (
        SELECT id FROM annotate_task
        WHERE project_id = %(project)s AND state = 'leased' AND lease_expires_at <= now()
        ORDER BY id
        LIMIT 200
        FOR UPDATE SKIP LOCKED)
    RETURNING item_id
), returned AS (
    SELECT item_id, count(*) AS n FROM expired WHERE item_id IS NOT NULL GROUP BY item_id
)
UPDATE annotate_workitem w SET open_slots = w.open_slots + returned.n, updated_at = now()
FROM returned WHERE w.id = returned.item_id AND w.closed_reason = ''
"""


def leases_reclaim(*, project: Project) -> None:
    with connection.cursor() as cursor:
        cursor.execute(RECLAIM_EXPIRED, {"project": project.id})


def allowed_kinds(*, role: str, weights: dict[str, float]) -> list[str]:
    return [
        kind
        for kind, weight in weights.items()
        if weight > 0 and ROLE_RANK[role] >= ROLE_RANK[KIND_ROLE.get(kind, Role.ANNOTATOR)]
    ]


def kinds_in_order(*, kinds: list[str], weights: dict[str, float], rng: random.Random) -> list[str]:
    """Return the kinds in a weighted random order: the first is drawn by weight, and so on."""
    pool = list(kinds)
    order = []
    while pool:
        chosen = rng.choices(pool, weights=[weights[kind] for kind in pool])[0]
        order.append(chosen)
        pool.remove(chosen)
    return order


def task_next(*, project: Project, annotator, role: str, kind: str | None = None, rng=None) -> Task | None:
    """Lease the next task for the annotator, or return the one they already hold.

    Kinds come in a random order weighted by the project's task mix (or just `kind`);
    within a kind, the oldest item that still needs people comes first.
    """
    settings = project.settings
    weights = settings.weights()
    kinds = allowed_kinds(role=role, weights=weights) if kind is None else [kind]
    if kind is not None and ROLE_RANK[role] < ROLE_RANK[KIND_ROLE.get(kind, Role.ANNOTATOR)]:
        raise PermissionDenied(f"{kind} tasks need the {KIND_ROLE[kind]} role")
    leases_reclaim(project=project)
    held = (
        Task.objects.filter(
            project=project, annotator=annotator, state=TaskState.LEASED, lease_expires_at__gt=timezone.now()
        )
        .filter(kind__in=kinds)
        .order_by("created_at")
        .first()
    )
    if held is not None:
        return held
    order = kinds if kind is not None else kinds_in_order(kinds=kinds, weights=weights, rng=rng or random)
    for candidate_kind in order:
        task = _lease(project=project, annotator=annotator, kind=candidate_kind, settings=settings)
        if task is not None:
            return task
    return None


def _lease(*, project, annotator, kind, settings) -> Task | None:
    expires = timezone.now() + timedelta(seconds=settings.lease_seconds)
    for _attempt in range(3):
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute(LEASE_ONE_ITEM, {"project": project.id, "kind": kind, "user": annotator.id})
                    row = cursor.fetchone()
                if row is None:
                    if kind != TaskKind.PROMPT:
                        return None
                    # No chat waits for its next turn: write a new conversation's first prompt.
                    item_id = None
                else:
                    item_id = row[0]
                return Task.objects.create(
                    project=project,
                    kind=kind,
                    item_id=item_id,
                    annotator=annotator,
                    lease_expires_at=expires,
                    guideline_version=project.guideline_version,
                )
        except IntegrityError:
            # The same annotator's other request leased this item a moment ago; the slot
            # decrement rolled back with it. Try the next item.
            continue
    return None


@transaction.atomic
def task_skip(*, task: Task, annotator) -> Task:
    """Give the task back; the annotator will not be offered this item again."""
    task = Task.objects.select_for_update().get(pk=task.pk)
    if task.annotator_id != annotator.id:
        raise NotYours({"task": "this task is leased to someone else"})
    if task.state == TaskState.SKIPPED:
        return task
    if task.state != TaskState.LEASED:
        raise Conflict({"task": f"this task is already {task.state}; it cannot be skipped"})
    task.state = TaskState.SKIPPED
    task.finished_at = timezone.now()
    task.save(update_fields=["state", "finished_at", "updated_at"])
    if task.item_id:
        _return_slot(task.item_id)
    return task


def _return_slot(item_id: int) -> None:
    WorkItem.objects.filter(pk=item_id, closed_reason="").update(open_slots=F("open_slots") + 1)


def task_expire(task: Task) -> None:
    """Mark a lease that ran out as expired and give its slot back (caller holds the row lock)."""
    task.state = TaskState.EXPIRED
    task.finished_at = timezone.now()
    task.save(update_fields=["state", "finished_at", "updated_at"])
    if task.item_id:
        _return_slot(task.item_id)
