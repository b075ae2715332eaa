"""Active learning in the queue: each work item's priority, adaptive overlap, admins' holds.

An item's priority is the weighted sum of three sources, each in [0, 1], plus an admin's boost:
- uncertainty: how unsure the reward model is of the set's order (measured on the training side,
  training.services.priorities, and written here through `priority_signals_write`: annotate
  never loads a model);
- disagreement: 1 - Kendall's W of the judgements the set already has;
- coverage: prompts (and, measured by training, model versions) with few judgements so far.
Each item keeps the breakdown in `priority_why`, so an admin can see why it is first. Pinned and
frozen items keep the priority an admin gave them; the lease (annotate.services.queue) takes the
highest first, the oldest among equals.

Adaptive overlap: a ranking or comparison whose `needed` judgements are in and disagree (W
below the project's `disputed_below`) earns one more annotator, up to the project's cap; one
whose judgements agree closes at the overlap.

Writes never wait for the queue: they lock rows with SKIP LOCKED, so a row being leased this
instant keeps its old priority until the next recompute, and batches are short transactions,
so a lease passes over few rows at a time.
"""

import time
from collections import defaultdict
from datetime import datetime, timezone as dt_timezone

import orjson
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from annotate import agreement
from annotate.models import Membership, PriorityHold, Project, Ranking, Task, TaskKind, WorkItem
from annotate.rules import role_may_do

JUDGED_KINDS = (TaskKind.RANKING, TaskKind.COMPARE)
# Pinned items sit above every computed priority (the sources' weights are small numbers).
PIN_FLOOR = 1_000_000.0
BATCH = 500


def set_agreement(rows: list[tuple[list, bool]]) -> float | None:
    """Return Kendall's W of one set's judgements (tiers, all_bad); None below two.

    "All bad" beside an order is disagreement about whether any reply is good (W 0);
    judgements that all say "all bad" agree (W 1).
    """
    if len(rows) < 2:
        return None
    ordered = [tiers for tiers, all_bad in rows if not all_bad]
    if len(ordered) < len(rows):
        return 0.0 if ordered else 1.0
    return agreement.kendall_w(ordered)


def _judgements_by_set(set_ids) -> dict[int, list[tuple[list, bool]]]:
    """The project's own annotators' judgements per set (imported ones are not a person's to add to)."""
    by_set = defaultdict(list)
    rows = Ranking.objects.filter(candidate_set_id__in=set_ids, annotator__isnull=False).values_list(
        "candidate_set_id", "tiers", "all_bad"
    )
    for set_id, tiers, all_bad in rows:
        by_set[set_id].append((tiers, all_bad))
    return by_set


# ---------------------------------------------------------------------------------------------
# Adaptive overlap

# Judged sets whose agreement nobody has looked at since their last judgement (a partial index).
UNCHECKED = """
SELECT id, candidate_set_id, done, needed FROM annotate_workitem
WHERE project_id = %(project)s AND done >= needed AND overlap_checked < done AND done >= 2
  AND kind = ANY(%(kinds)s) AND closed_reason = '' AND candidate_set_id IS NOT NULL
ORDER BY id
LIMIT %(limit)s
"""

# One more annotator for a disputed set, if nobody changed it since it was read (another
# process adapting it too, or a judgement since): the conditions make the step happen once.
EXTEND = """
UPDATE annotate_workitem
SET needed = needed + 1, open_slots = open_slots + 1, overlap_checked = done, updated_at = now()
WHERE id = %(id)s AND done = %(done)s AND needed = %(needed)s AND needed < %(cap)s
"""
CLOSE = """
UPDATE annotate_workitem SET overlap_checked = done, updated_at = now()
WHERE id = ANY(%(ids)s) AND overlap_checked < done
"""

# Per process: when adaptive overlap last looked at each project from the lease path (as
# leases_reclaim does: at most once a second, so the lease pays nothing on almost every call).
_last_adapt: dict[int, float] = {}
ADAPT_EVERY_SECONDS = 1.0


def overlap_adapt_due(*, project: Project) -> None:
    """Run `overlap_adapt` for the project if this process has not in the last second."""
    now = time.monotonic()
    if now - _last_adapt.get(project.id, float("-inf")) < ADAPT_EVERY_SECONDS:
        return
    _last_adapt[project.id] = now
    overlap_adapt(project=project)


def overlap_adapt(*, project: Project, limit: int = 1000) -> dict:
    """Give each disputed judged set one more annotator (up to the cap); close the others.

    Returns how many sets were extended and closed. With the cap at 0 (off) nothing changes.
    """
    settings = project.settings
    cap = settings.adaptive_overlap_cap
    if not cap:
        return {"extended": 0, "closed": 0}
    with connection.cursor() as cursor:
        cursor.execute(UNCHECKED, {"project": project.id, "kinds": list(JUDGED_KINDS), "limit": limit})
        items = cursor.fetchall()
    if not items:
        return {"extended": 0, "closed": 0}
    judged = _judgements_by_set([set_id for _, set_id, _, _ in items])
    extended, closed = 0, []
    with connection.cursor() as cursor:
        for item_id, set_id, done, needed in items:
            w = set_agreement(judged.get(set_id, []))
            if w is not None and w < settings.disputed_below and needed < cap:
                cursor.execute(EXTEND, {"id": item_id, "done": done, "needed": needed, "cap": cap})
                extended += cursor.rowcount
            else:
                closed.append(item_id)
        if closed:
            cursor.execute(CLOSE, {"ids": closed})
    return {"extended": extended, "closed": len(closed)}


# ---------------------------------------------------------------------------------------------
# Signals from the training side


SIGNALS_WRITE = """
UPDATE annotate_workitem w SET signals = w.signals || given.signals, updated_at = now()
FROM (SELECT unnest(%(ids)s::bigint[]) AS id, unnest(%(signals)s::jsonb[]) AS signals) given
WHERE w.id = given.id AND w.project_id = %(project)s
"""


def priority_signals_write(*, project: Project, signals: dict[int, dict]) -> int:
    """Store what the training side measured per item (merged into `signals`); return rows written.

    Known keys: `uncertainty` (0-1, the reward model's doubt about the set's order) and
    `version_coverage` (0-1, how little the set's model versions have been judged), each with
    any detail beside it. Items of other projects are left alone.
    """
    for item_id, values in signals.items():
        for key in ("uncertainty", "version_coverage"):
            if key in values and values[key] is not None and not 0 <= values[key] <= 1:
                raise ValidationError({"signals": f"item {item_id}: {key} must be between 0 and 1"})
    written = 0
    pairs = list(signals.items())
    for start in range(0, len(pairs), BATCH):
        chunk = pairs[start : start + BATCH]
        with connection.cursor() as cursor:
            cursor.execute(
                SIGNALS_WRITE,
                {
                    "project": project.id,
                    "ids": [item_id for item_id, _ in chunk],
                    "signals": [orjson.dumps(values).decode() for _, values in chunk],
                },
            )
            written += cursor.rowcount
    return written


# ---------------------------------------------------------------------------------------------
# The recompute

# The items that still need people, in id order from `after`, with what their priority needs:
# the set (for its judgements), the prompt they are about (for its coverage), what training
# measured, and the admin's boost and hold.
ITEMS_TO_SCORE = """
SELECT w.id, w.kind, w.candidate_set_id, coalesce(parent.root_id, m.root_id, parent.id, m.id),
       w.signals, w.priority_boost, w.priority_hold, w.done
FROM annotate_workitem w
LEFT JOIN annotate_candidateset cs ON cs.id = w.candidate_set_id
LEFT JOIN annotate_message parent ON parent.id = cs.parent_id
LEFT JOIN annotate_message m ON m.id = w.message_id
WHERE w.project_id = %(project)s AND w.done < w.needed AND w.closed_reason = '' AND w.id > %(after)s
  AND (%(ids)s::bigint[] IS NULL OR w.id = ANY(%(ids)s::bigint[]))
ORDER BY w.id
LIMIT %(limit)s
"""

# Judgements submitted so far per prompt (conversation root), over every kind of item about it.
JUDGEMENTS_PER_PROMPT = """
SELECT coalesce(parent.root_id, m.root_id, parent.id, m.id), count(*)
FROM annotate_task t
JOIN annotate_workitem w ON w.id = t.item_id
LEFT JOIN annotate_candidateset cs ON cs.id = w.candidate_set_id
LEFT JOIN annotate_message parent ON parent.id = cs.parent_id
LEFT JOIN annotate_message m ON m.id = w.message_id
WHERE t.project_id = %(project)s AND t.state = 'submitted'
GROUP BY 1
"""

# Write a batch of priorities. The rows are locked with SKIP LOCKED first: one being leased this
# instant keeps its old priority until the next recompute rather than making either side wait.
# Held rows get only their breakdown (an admin fixed their priority).
PRIORITIES_WRITE = """
WITH given AS (
    SELECT unnest(%(ids)s::bigint[]) AS id, unnest(%(priorities)s::float8[]) AS priority,
           unnest(%(whys)s::jsonb[]) AS why
), free AS (
    SELECT id FROM annotate_workitem WHERE id = ANY(%(ids)s::bigint[]) FOR NO KEY UPDATE SKIP LOCKED
)
UPDATE annotate_workitem w
SET priority = CASE WHEN w.priority_hold = '' THEN given.priority ELSE w.priority END,
    priority_why = given.why
FROM given JOIN free ON free.id = given.id
WHERE w.id = given.id
"""


def priority_of(*, weights: dict[str, float], values: dict[str, float], boost: float) -> tuple[float, dict]:
    """Return an item's priority from its sources' values, and the breakdown that explains it."""
    sources = {
        source: {"value": round(values[source], 4), "weight": weight, "points": round(weight * values[source], 4)}
        for source, weight in weights.items()
    }
    total = sum(part["points"] for part in sources.values()) + boost
    return round(total, 4), {"sources": sources, "boost": boost, "total": round(total, 4)}


def priorities_recompute(*, project: Project, seconds: float = 60.0, item_ids: list[int] | None = None) -> dict:
    """Recompute the priority of every item that still needs people (or of `item_ids`), within `seconds`.

    Runs adaptive overlap first (so a set reopened for one more annotator is scored too).
    Returns what it did: items scored, rows skipped because they were being leased, and
    whether it finished before the time cap (a capped run leaves the rest as they were).
    """
    started = time.monotonic()
    adapted = overlap_adapt(project=project)
    weights = project.settings.source_weights()
    with connection.cursor() as cursor:
        cursor.execute(JUDGEMENTS_PER_PROMPT, {"project": project.id})
        per_prompt = dict(cursor.fetchall())
    computed_at = datetime.now(dt_timezone.utc).isoformat(timespec="seconds")
    scored = skipped = 0
    after, complete = 0, True
    while True:
        if time.monotonic() - started > seconds:
            complete = False
            break
        with connection.cursor() as cursor:
            cursor.execute(ITEMS_TO_SCORE, {"project": project.id, "after": after, "ids": item_ids, "limit": BATCH})
            rows = cursor.fetchall()
        if not rows:
            break
        after = rows[-1][0]
        judged = _judgements_by_set([row[2] for row in rows if row[2] is not None])
        ids, priorities, whys = [], [], []
        for item_id, _kind, set_id, root_id, signals, boost, hold, done in rows:
            if isinstance(signals, str):
                signals = orjson.loads(signals)
            w = set_agreement(judged.get(set_id, [])) if set_id is not None else None
            prompt_judgements = per_prompt.get(root_id, 0)
            coverage_parts = [1.0 / (1.0 + prompt_judgements)]
            if signals.get("version_coverage") is not None:
                coverage_parts.append(float(signals["version_coverage"]))
            values = {
                "uncertainty": float(signals.get("uncertainty") or 0.0),
                "disagreement": 0.0 if w is None else min(1.0, max(0.0, 1.0 - w)),
                "coverage": sum(coverage_parts) / len(coverage_parts),
            }
            total, why = priority_of(weights=weights, values=values, boost=boost)
            why.update(
                {
                    "kendall_w": None if w is None else round(w, 4),
                    "judgements": done,
                    "judgements_of_prompt": prompt_judgements,
                    "measured": {key: value for key, value in signals.items() if key not in values},
                    "hold": hold,
                    "computed_at": computed_at,
                }
            )
            ids.append(item_id)
            priorities.append(total)
            whys.append(orjson.dumps(why).decode())
        # Each batch its own short transaction: leases pass over only these rows, only briefly.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(PRIORITIES_WRITE, {"ids": ids, "priorities": priorities, "whys": whys})
            scored += cursor.rowcount
            skipped += len(ids) - cursor.rowcount
    return {
        "scored": scored,
        "skipped_locked": skipped,
        "complete": complete,
        "seconds": round(time.monotonic() - started, 3),
        **adapted,
    }


# ---------------------------------------------------------------------------------------------
# Admins' holds: pin, boost, freeze, release


def _project_items(project: Project, item_ids: list[int]):
    """Return the project's items among `item_ids`, refusing (writing nothing) if any is not one."""
    if not item_ids:
        raise ValidationError({"item_ids": "name at least one work item"})
    found = set(WorkItem.objects.filter(project=project, pk__in=item_ids).values_list("pk", flat=True))
    unknown = sorted(set(item_ids) - found)
    if unknown:
        raise ValidationError({"item_ids": f"not work items of this project: {unknown[:20]}"})
    return WorkItem.objects.filter(project=project, pk__in=item_ids)


@transaction.atomic
def items_assign(*, project: Project, item_ids: list[int], usernames: list[str]) -> int:
    """Hand these items only to the named annotators (active members whose role may do each item's kind), or,
    with no names, to anyone again. A lease already taken runs out as it is; an item an assignee did stays done."""
    items = _project_items(project, item_ids)
    members = {m.user.username: m for m in Membership.objects.filter(project=project, is_active=True,
                                                                     user__username__in=usernames).select_related("user")}
    unknown = sorted(set(usernames) - set(members))
    if unknown:
        raise ValidationError({"annotators": f"not active members of this project: {unknown[:20]}"})
    kinds = set(items.values_list("kind", flat=True))
    unable = sorted(name for name, m in members.items() if any(not role_may_do(role=m.role, kind=k) for k in kinds))
    if unable:
        raise ValidationError({"annotators": f"their role may not do {', '.join(sorted(kinds))} tasks: {unable}"})
    ids = {m.user_id: name for name, m in members.items()}
    for item in items.only("id", "excluded_user_ids"):
        # An item no assignee may have would wait for ever: its authors, or someone who already had it.
        barred = {ids[u] for u in set(item.excluded_user_ids) & set(ids)}
        barred |= {ids[u] for u in Task.objects.filter(item=item, annotator_id__in=ids).values_list("annotator_id", flat=True)}
        if barred:
            raise ValidationError({"annotators": f"item {item.id} cannot go to {sorted(barred)}: they wrote what it "
                                                 "judges or had it already"})
    return items.update(assignee_ids=sorted(ids), updated_at=timezone.now())


@transaction.atomic
def priority_pin(*, project: Project, item_ids: list[int], by=None) -> int:
    """Put these items first in the queue, in the order given, ahead of anything pinned before."""
    items = _project_items(project, item_ids)
    highest = WorkItem.objects.filter(project=project).aggregate(highest=Max("priority"))["highest"] or 0.0
    top = max(PIN_FLOOR, highest)
    ordered = list(dict.fromkeys(item_ids))
    by_id = {item.pk: item for item in items.order_by("id").select_for_update()}
    for index, item_id in enumerate(ordered):
        item = by_id[item_id]
        item.priority = top + len(ordered) - index
        item.priority_hold = PriorityHold.PINNED
        item.priority_why = {**item.priority_why, "hold": PriorityHold.PINNED, "held_by": getattr(by, "pk", None),
                             "total": item.priority}
    WorkItem.objects.bulk_update(by_id.values(), ["priority", "priority_hold", "priority_why"])
    return len(ordered)


@transaction.atomic
def priority_boost(*, project: Project, item_ids: list[int], amount: float, by=None) -> int:
    """Set the admin's boost of these items (negative to hold them back); applied at once."""
    items = list(_project_items(project, item_ids).order_by("id").select_for_update())
    for item in items:
        if item.priority_hold == PriorityHold.NONE:
            item.priority = round(item.priority - item.priority_boost + amount, 4)
        item.priority_boost = amount
        item.priority_why = {**item.priority_why, "boost": amount, "boosted_by": getattr(by, "pk", None)}
    WorkItem.objects.bulk_update(items, ["priority", "priority_boost", "priority_why"])
    return len(items)


@transaction.atomic
def priority_freeze(*, project: Project, item_ids: list[int], by=None) -> int:
    """Keep these items' priorities (and so their order) as they are now, whatever recomputes say."""
    items = _project_items(project, item_ids).exclude(priority_hold=PriorityHold.PINNED)
    changed = items.update(priority_hold=PriorityHold.FROZEN)
    return changed


def priority_release(*, project: Project, item_ids: list[int], by=None) -> int:
    """End an admin's pin or freeze: the items get their computed priority back at once."""
    with transaction.atomic():
        changed = _project_items(project, item_ids).update(priority_hold=PriorityHold.NONE)
    priorities_recompute(project=project, item_ids=list(item_ids))
    return changed
