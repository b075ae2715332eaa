"""Handing out work: leases, expiry, skips. Race-free under many annotators at once.

The pool is WorkItem rows with open slots. Leasing locks one row with FOR UPDATE SKIP LOCKED
(so concurrent annotators pass over each other's rows instead of queueing behind them) and
decrements its open_slots in the same statement; a unique (item, annotator) constraint makes
"never the same item twice to one person" hold even if two of one person's requests race.
The highest priority comes first (annotate.services.priority computes it), the oldest first
among equal priorities; gold items (annotate.services.gold) come first when the annotator's share
of gold is under the project's rate, and are the only work during a qualification set. An annotator holds at most one lease per project: the statement that
takes a new one releases the old (its slot goes back), and a unique index on the leased rows
holds it under races. No table lock, no global mutex.
"""

import random
import time
from contextlib import nullcontext

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from annotate.models import Project, SkipReason, Task, TaskKind, TaskState, WorkItem
from annotate.rules import KIND_ROLE, allowed_kinds, role_may_do
from annotate.selectors import gold as gold_selectors
from annotate.services import priority
from platform_common.errors import Conflict, NotYours
from platform_common.raw_sql import columns, fetch_one, prepared_cursor

# Release the lease the annotator holds in the project (of another kind than asked for, or run
# out) and give its slot back, when a new one is taken (`{when}`). A live lease of the kind asked
# for is not released: task_next returns it, and one appearing since (the same person's other
# request) makes the INSERT fail on the one-lease index, and _lease returns it. A lease being
# submitted right now is waited for, and is then no longer 'leased': it is not released twice.
RELEASE_HELD = """released AS (
    UPDATE annotate_task SET state = 'expired', finished_at = now(), updated_at = now()
    WHERE annotator_id = %(user)s AND project_id = %(project)s AND state = 'leased'
      AND (kind <> %(kind)s OR lease_expires_at <= now()) {when}
    RETURNING item_id
), returned AS (
    UPDATE annotate_workitem w SET open_slots = w.open_slots + 1, updated_at = now()
    FROM released WHERE w.id = released.item_id AND w.closed_reason = ''
)"""

# Whether this lease takes a gold item (annotate.services.gold): always while the annotator does
# the qualification set (`gold_only`), else when gold is due: with the rate r, the annotator's gold
# tasks g of n item tasks (live or submitted, every kind), and a draw d in [0, 1), when
# g + d <= r * (n + 1). Their share of gold so stays within one task of r, and the draw moves
# where in the run each gold item falls, so its position does not give it away. Off (no count)
# when the rate is 0.
GOLD_DUE = """gold_due AS (
    SELECT %(gold_only)s OR (
        %(gold_rate)s > 0 AND (
            SELECT count(*) FILTER (WHERE gw.gold) + %(gold_draw)s <= %(gold_rate)s * (count(*) + 1)
            FROM annotate_task gt JOIN annotate_workitem gw ON gw.id = gt.item_id
            WHERE gt.annotator_id = %(user)s AND gt.project_id = %(project)s AND gt.state IN ('leased', 'submitted')
              AND %(gold_rate)s > 0)
    ) AS due
)"""

# What an item must be for this annotator whatever its kind of work: open, not about their own
# message, assigned to nobody or to them, not one they already had (gold included: never the same gold item twice).
# OFFSET 0 keeps the NOT EXISTS a per-row probe of the (annotator, item) index: as a join, the
# planner (misled by young statistics) scanned all the annotator's tasks per item.
MAY_HAVE = """w.project_id = %(project)s AND w.kind = %(kind)s AND w.open_slots > 0
          AND NOT (%(user)s = ANY (w.excluded_user_ids))
          AND (w.assignee_ids = '{}' OR %(user)s = ANY (w.assignee_ids))
          AND NOT EXISTS (
              SELECT 1 FROM annotate_task t WHERE t.annotator_id = %(user)s AND t.item_id = w.id OFFSET 0)"""

# Take one slot of the first item this annotator may have, release the lease they held (only if
# a slot was found), and record the new lease, in one statement: it is its own transaction, one
# round trip to the server. The INSERT reads `released`, and `released` reads `slot`, so they run
# in that order and the old lease has left the one-lease index before the new row enters it.
# Where gold sits in the order: when gold is due, a gold item comes before every real one (in
# random order, so annotators do not meet gold in the same sequence); when it is not due, gold
# is not offered at all, and real work goes highest priority first. COALESCE evaluates the real
# half only when the gold half found nothing (none due, none left for this person, all locked).
LEASE_ONE_ITEM = "WITH " + GOLD_DUE + """, slot AS (
    UPDATE annotate_workitem SET open_slots = open_slots - 1, updated_at = now()
    WHERE id = COALESCE((
        SELECT w.id FROM annotate_workitem w
        WHERE (SELECT due FROM gold_due) AND w.gold AND """ + MAY_HAVE + """
        ORDER BY random()
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    ), (
        SELECT w.id FROM annotate_workitem w
        WHERE NOT %(gold_only)s AND NOT w.gold AND """ + MAY_HAVE + """
        ORDER BY w.priority DESC, w.created_at, w.id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    ))
    RETURNING id
), """ + RELEASE_HELD.format(when="AND EXISTS (SELECT 1 FROM slot)") + """
INSERT INTO annotate_task (
    created_at, updated_at, project_id, kind, item_id, annotator_id, state, lease_expires_at,
    submit_key, guideline_version, result)
SELECT now(), now(), %(project)s, %(kind)s, slot.id, %(user)s, 'leased',
       now() + make_interval(secs => %(lease)s), '', %(guideline)s, '{}'::jsonb
FROM slot WHERE (SELECT count(*) FROM released) >= 0
RETURNING id, created_at, updated_at, item_id, lease_expires_at
"""

# A new conversation's first prompt needs no item: only the release and the lease.
LEASE_NEW_PROMPT = "WITH " + RELEASE_HELD.format(when="") + """
INSERT INTO annotate_task (
    created_at, updated_at, project_id, kind, item_id, annotator_id, state, lease_expires_at,
    submit_key, guideline_version, result)
SELECT now(), now(), %(project)s, 'prompt', NULL, %(user)s, 'leased',
       now() + make_interval(secs => %(lease)s), '', %(guideline)s, '{}'::jsonb
WHERE (SELECT count(*) FROM released) >= 0
RETURNING id, created_at, updated_at, item_id, lease_expires_at
"""

# Whether an item is open to the annotator at all, locked or not: when the lease found none,
# SKIP LOCKED may only have passed over rows that a recompute or another lease held a moment.
# Gold rows count here only in the qualification, where gold is all there is: elsewhere a gold
# row locked a moment is passed over for real work, and with none left, one gold task less is no loss.
OPEN_FOR_ME = """
SELECT EXISTS (
    SELECT 1 FROM annotate_workitem w
    WHERE w.gold = %(gold_only)s AND """ + MAY_HAVE + """)
"""
LOCKED_RETRIES = 3
LOCKED_WAIT_SECONDS = 0.01

# The lease the annotator already holds, if any (served by the one-lease-per-annotator index).
HELD_LEASE = f"""
SELECT {columns(Task, "t")} FROM annotate_task t
WHERE t.annotator_id = %(user)s AND t.project_id = %(project)s AND t.state = 'leased'
  AND t.lease_expires_at > now() AND t.kind = ANY(%(kinds)s)
ORDER BY t.created_at
LIMIT 1
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


# Per process: when each project's expired leases were last reclaimed. Leases expire after
# minutes, so reclaiming at most once a second costs nothing in accuracy and saves a statement
# on almost every request. A late submit is refused by its own timestamp check regardless.
_last_reclaim: dict[int, float] = {}
RECLAIM_EVERY_SECONDS = 1.0


def leases_reclaim(*, project: Project, force: bool = False) -> None:
    now = time.monotonic()
    if not force and now - _last_reclaim.get(project.id, float("-inf")) < RECLAIM_EVERY_SECONDS:
        return
    _last_reclaim[project.id] = now
    with connection.cursor() as cursor:
        cursor.execute(RECLAIM_EXPIRED, {"project": project.id})


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
    within a kind, the item of highest priority that still needs people comes first, the
    oldest among equals. A held lease of another kind (or run out) is released when the new
    one is taken: one lease per annotator per project.
    """
    settings = project.settings
    weights = settings.weights()
    kinds = allowed_kinds(role=role, weights=weights) if kind is None else [kind]
    if kind is not None and not role_may_do(role=role, kind=kind):
        raise PermissionDenied(f"{kind} tasks need the {KIND_ROLE[kind]} role")
    if kind is not None and weights.get(kind, 0) <= 0:
        raise ValidationError({"kind": f"this project hands out no {kind} tasks (its task mix gives them weight 0)"})
    leases_reclaim(project=project)
    if settings.adaptive_overlap_cap:
        priority.overlap_adapt_due(project=project)
    held = fetch_one(HELD_LEASE, {"user": annotator.id, "project": project.id, "kinds": kinds}, [Task])
    if held is not None:
        return held[0]
    rng = rng or random
    gold_only = False
    if gold_selectors.quality_control_on(settings):
        # Paused (failed the qualification, or gold accuracy under the threshold): no new work;
        # the lease they hold above may still be finished. gold_selectors says why to the pages.
        standing = gold_selectors.gold_standing(project=project, annotator=annotator)
        if standing.paused_reason:
            return None
        gold_only = standing.qualification_left > 0
    order = kinds if kind is not None else kinds_in_order(kinds=kinds, weights=weights, rng=rng)
    for candidate_kind in order:
        task = _lease(
            project=project, annotator=annotator, kind=candidate_kind, settings=settings,
            gold_only=gold_only, gold_draw=rng.random(),
        )
        if task is not None:
            return task
    return None


def _lease(*, project, annotator, kind, settings, gold_only=False, gold_draw=0.5) -> Task | None:
    params = {
        "project": project.id,
        "kind": kind,
        "user": annotator.id,
        "lease": settings.lease_seconds,
        "guideline": project.guideline_version,
        "gold_only": gold_only,
        "gold_rate": settings.gold_rate,
        "gold_draw": gold_draw,
    }
    locked_retries = LOCKED_RETRIES
    for _attempt in range(3 + LOCKED_RETRIES):
        try:
            row = _run_one_statement(LEASE_ONE_ITEM, params)
            if row is None and kind == TaskKind.PROMPT and not gold_only:
                # No chat waits for its next turn: write a new conversation's first prompt.
                row = _run_one_statement(LEASE_NEW_PROMPT, params)
        except IntegrityError:
            # The same annotator's other request (a double click) took a lease or this item a
            # moment ago; this statement rolled back whole (slot and release). That lease stands:
            # return it rather than release it, or try again.
            held = fetch_one(HELD_LEASE, {"user": annotator.id, "project": project.id, "kinds": [kind]}, [Task])
            if held is not None:
                return held[0]
            continue
        if row is not None:
            task_id, created_at, updated_at, item_id, lease_expires_at = row
            return Task(
                id=task_id, created_at=created_at, updated_at=updated_at, project=project,
                kind=TaskKind.PROMPT if item_id is None else kind, item_id=item_id, annotator=annotator,
                state=TaskState.LEASED, lease_expires_at=lease_expires_at, submit_key="",
                guideline_version=project.guideline_version, result={},
            )
        if locked_retries and _run_one_statement(OPEN_FOR_ME, params)[0]:
            # Every open item was locked a moment (a priority recompute writing, others leasing):
            # "nothing for you" would be wrong, so look again shortly.
            locked_retries -= 1
            time.sleep(LOCKED_WAIT_SECONDS)
            continue
        return None
    return None


def _run_one_statement(sql: str, params: dict):
    """Run one statement and return its first row. In autocommit it is its own transaction;
    inside a caller's transaction a savepoint keeps a failure from spoiling the caller's."""
    with transaction.atomic() if connection.in_atomic_block else nullcontext():
        with prepared_cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()


@transaction.atomic
def task_skip(*, task: Task, annotator, reason: str = "", note: str = "") -> Task:
    """Give the task back; the annotator will not be offered this item again. `reason` (SkipReason, optional)
    and `note` (their words; needed for `other`, which words alone imply) are counted on Progress."""
    note = " ".join(note.split())
    if note and not reason:
        reason = SkipReason.OTHER
    if reason and reason not in SkipReason.values:
        raise ValidationError({"reason": f"{reason[:40]!r} is not a reason: use one of {', '.join(SkipReason.values)}"})
    if reason == SkipReason.OTHER and not note:
        raise ValidationError({"note": "say in a few words why you skip it"})
    if len(note) > 300:
        raise ValidationError({"note": f"at most 300 characters, not {len(note)}"})
    task = Task.objects.select_for_update().get(pk=task.pk)
    if task.annotator_id != annotator.id:
        raise NotYours({"task": "this task is leased to someone else"})
    if task.state == TaskState.SKIPPED:
        return task
    if task.state != TaskState.LEASED:
        raise Conflict({"task": f"this task is already {task.state}; it cannot be skipped"})
    task.skip_reason, task.skip_note = reason, note
    _lease_close(task, TaskState.SKIPPED, "skip_reason", "skip_note")
    return task


def task_expire(task: Task) -> None:
    """Mark a lease that ran out as expired and give its slot back (caller holds the row lock)."""
    _lease_close(task, TaskState.EXPIRED)


def _lease_close(task: Task, state: str, *fields: str) -> None:
    task.state = state
    task.finished_at = timezone.now()
    task.save(update_fields=["state", "finished_at", "updated_at", *fields])
    if task.item_id:
        # A closed item (its message was excluded) keeps the slot closed.
        WorkItem.objects.filter(pk=task.item_id, closed_reason="").update(open_slots=F("open_slots") + 1)
