"""Gold items: marking an item's known answer, promoting a consensus to one, unmarking, resuming.

A gold item stays the work item it was, with `gold` set and GOLD_NEEDED slots, so the one lease
statement (annotate.services.queue) hands it to every annotator once, mixed in at the project's
rate. Judgements of it are scored by annotate.selectors.gold.
"""

from collections import Counter
from statistics import median

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models.expressions import RawSQL

from annotate import agreement
from annotate.models import (
    GOLD_NEEDED,
    Flag,
    GoldAnswer,
    GoldResume,
    GoldSource,
    Label,
    MessageRole,
    MessageSource,
    Project,
    Ranking,
    Review,
    Task,
    TaskKind,
    TaskState,
    WorkItem,
)

GOLD_KINDS = (TaskKind.RANKING, TaskKind.COMPARE, TaskKind.LABEL, TaskKind.REVIEW)
# A consensus needs this many judgements before it can stand as a known answer.
PROMOTE_MIN_JUDGEMENTS = 2


def gold_answer_clean(*, item: WorkItem, answer: dict) -> dict:
    """Return the known answer in its stored form, or refuse one that does not fit the item."""
    if not isinstance(answer, dict):
        raise ValidationError({"answer": "the answer is an object"})
    if item.kind in (TaskKind.RANKING, TaskKind.COMPARE):
        if answer.get("all_bad") is True:
            return {"all_bad": True}
        tiers = answer.get("tiers")
        expected = set(item.candidate_set.message_ids)
        if not isinstance(tiers, list) or not all(isinstance(tier, list) and tier for tier in tiers):
            raise ValidationError({"answer": "give `tiers` (best first, ties in one list) or `all_bad: true`"})
        try:
            tiers = [[int(message_id) for message_id in tier] for tier in tiers]
        except (TypeError, ValueError):
            raise ValidationError({"answer": "every entry of a tier must be a message id"}) from None
        flat = [message_id for tier in tiers for message_id in tier]
        if len(flat) != len(set(flat)) or set(flat) != expected:
            raise ValidationError({"answer": f"order every reply of the set exactly once: {sorted(expected)}"})
        # A ranking's known order that ties everything says nothing; a comparison may be a known tie.
        if len(tiers) == 1 and item.kind == TaskKind.RANKING:
            raise ValidationError({"answer": "all replies tied says nothing; use all_bad if none is acceptable"})
        return {"tiers": tiers}
    if item.kind == TaskKind.LABEL:
        quality, flags = answer.get("quality"), answer.get("flags") or []
        if quality is not None and (not isinstance(quality, int) or not 1 <= quality <= 5):
            raise ValidationError({"answer": "quality is a whole number from 1 to 5, or null"})
        if not isinstance(flags, list) or any(flag not in Flag.values for flag in flags):
            raise ValidationError({"answer": f"flags are a list of {', '.join(Flag.values)}"})
        if quality is None and not flags:
            raise ValidationError({"answer": "give a quality score, flags, or both"})
        return {"quality": quality, "flags": sorted(set(flags))}
    if item.kind == TaskKind.REVIEW:
        if not isinstance(answer.get("accepted"), bool):
            raise ValidationError({"answer": "give the known verdict: `accepted` true or false"})
        message = item.message
        if message.role != MessageRole.ASSISTANT or message.source != MessageSource.ANNOTATOR:
            raise ValidationError({"answer": "only demonstrations written by annotators are reviewed"})
        return {"accepted": answer["accepted"]}
    raise ValidationError({"item": f"{item.kind} items cannot be gold; gold items are {', '.join(GOLD_KINDS)}"})


def _item_for_gold(project: Project, item_id: int) -> WorkItem:
    # Locked: a lease taking a slot, or another admin marking it, waits for this one.
    item = (
        WorkItem.objects.select_for_update(of=("self",)).select_related("candidate_set", "message")
        .filter(pk=item_id, project=project).first()
    )
    if item is None:
        raise ValidationError({"item_id": "no such work item in this project"})
    if item.kind not in GOLD_KINDS:
        raise ValidationError({"item_id": f"{item.kind} items cannot be gold; gold items are {', '.join(GOLD_KINDS)}"})
    if item.closed_reason:
        raise ValidationError({"item_id": f"this item is closed ({item.closed_reason}); it cannot be gold"})
    return item


def _make_gold(item: WorkItem, *, answer: dict, source: str, by) -> GoldAnswer:
    existing = GoldAnswer.objects.filter(item=item).first()
    if existing is not None:
        existing.answer, existing.source, existing.created_by = answer, source, by
        existing.save(update_fields=["answer", "source", "created_by", "updated_at"])
        return existing
    gold = GoldAnswer.objects.create(
        project_id=item.project_id, item=item, answer=answer, source=source, needed_before=item.needed, created_by=by
    )
    # Scoring counts the tasks leased from now on (annotate.selectors.gold), and a lease stamps its
    # task with the database's clock: stamp this with the same clock, or the app server's skew would
    # count judgements from before (or miss some after).
    # (now(), the transaction's start, as the lease writes it: Django's Now() is the statement's.)
    GoldAnswer.objects.filter(pk=gold.pk).update(created_at=RawSQL("now()", []))
    # Every annotator once: the slots open up to GOLD_NEEDED, the live leases still counted.
    held = Task.objects.filter(item=item, state=TaskState.LEASED).count()
    item.gold = True
    item.needed = GOLD_NEEDED
    item.open_slots = max(0, GOLD_NEEDED - item.done - held)
    item.save(update_fields=["gold", "needed", "open_slots", "updated_at"])
    return gold


@transaction.atomic
def gold_mark(*, project: Project, item_id: int, answer: dict, by) -> GoldAnswer:
    """Make the item gold with its known answer (or change the answer of a gold item)."""
    item = _item_for_gold(project, item_id)
    return _make_gold(item, answer=gold_answer_clean(item=item, answer=answer), source=GoldSource.MARKED, by=by)


def consensus_answer(*, item: WorkItem) -> dict:
    """Return what the item's judgements so far agree on, as a known answer, or refuse if too few."""
    if item.kind in (TaskKind.RANKING, TaskKind.COMPARE):
        rows = list(Ranking.objects.filter(candidate_set=item.candidate_set).values_list("tiers", "all_bad"))
        if len(rows) < PROMOTE_MIN_JUDGEMENTS:
            raise ValidationError({"item_id": f"{len(rows)} judgements: a consensus needs {PROMOTE_MIN_JUDGEMENTS}"})
        ordered = [tiers for tiers, all_bad in rows if not all_bad]
        if len(ordered) * 2 <= len(rows):
            return {"all_bad": True}
        order = agreement.ranked_pairs(list(item.candidate_set.message_ids), ordered)
        return {"tiers": [[message_id] for message_id in order]}
    if item.kind == TaskKind.LABEL:
        rows = list(Label.objects.filter(message=item.message).values_list("quality", "flags"))
        if len(rows) < PROMOTE_MIN_JUDGEMENTS:
            raise ValidationError({"item_id": f"{len(rows)} labels: a consensus needs {PROMOTE_MIN_JUDGEMENTS}"})
        # Each flag that most labellers gave; the median score (rounded down) of those who scored.
        flag_counts = Counter(flag for _, flags in rows for flag in flags)
        flags = sorted(flag for flag, n in flag_counts.items() if n * 2 > len(rows))
        scores = [quality for quality, _ in rows if quality is not None]
        quality = int(median(scores)) if scores else None
        if quality is None and not flags:
            raise ValidationError({"item_id": "the labels agree on neither a score nor a flag"})
        return {"quality": quality, "flags": flags}
    if item.kind == TaskKind.REVIEW:
        verdicts = Counter(Review.objects.filter(message=item.message).values_list("accepted", flat=True))
        if sum(verdicts.values()) < PROMOTE_MIN_JUDGEMENTS:
            raise ValidationError({"item_id": f"{sum(verdicts.values())} reviews: a consensus needs {PROMOTE_MIN_JUDGEMENTS}"})
        if verdicts[True] == verdicts[False]:
            raise ValidationError({"item_id": "the reviewers are split evenly; mark the verdict yourself"})
        return {"accepted": verdicts[True] > verdicts[False]}
    raise ValidationError({"item_id": f"{item.kind} items cannot be gold"})


@transaction.atomic
def gold_promote(*, project: Project, item_id: int, by) -> GoldAnswer:
    """Make the item gold with the consensus of its judgements so far as the known answer.

    Those judgements do not count as gold answers (they made the answer): scoring starts with
    the tasks leased after this.
    """
    item = _item_for_gold(project, item_id)
    return _make_gold(item, answer=consensus_answer(item=item), source=GoldSource.CONSENSUS, by=by)


@transaction.atomic
def gold_unmark(*, project: Project, item_id: int) -> WorkItem:
    """Make a gold item ordinary work again, needing what it needed before (or what it has)."""
    item = WorkItem.objects.select_for_update().filter(pk=item_id, project=project, gold=True).first()
    if item is None:
        raise ValidationError({"item_id": "no such gold item in this project"})
    gold = GoldAnswer.objects.get(item=item)
    held = Task.objects.filter(item=item, state=TaskState.LEASED).count()
    item.gold = False
    item.needed = max(gold.needed_before, item.done)
    item.open_slots = 0 if item.closed_reason else max(0, item.needed - item.done - held)
    item.save(update_fields=["gold", "needed", "open_slots", "updated_at"])
    gold.delete()
    return item


def gold_resume(*, project: Project, annotator, by) -> GoldResume:
    """Let a paused annotator work again: their gold answers until now no longer count for pausing."""
    if not project.memberships.filter(user=annotator).exists():
        raise ValidationError({"annotator_id": "not a member of this project"})
    return GoldResume.objects.create(project=project, annotator=annotator, resumed_by=by)
