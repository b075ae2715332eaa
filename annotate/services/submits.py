"""Submitting a task: one service per kind behind one idempotent entry point.

A submit carries an idempotency key. A retry with the same key returns what the first submit
produced and writes nothing; a different key on a submitted task is refused. The task row is
locked first, so two copies of one submit arriving at once are serialised.
"""

import json

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from annotate.models import (
    CandidateSet,
    CandidateSetKind,
    Flag,
    Label,
    Membership,
    Message,
    MessageRole,
    MessageSource,
    Ranking,
    ReviewState,
    Review,
    Role,
    Task,
    TaskKind,
    TaskState,
    Verdict,
    WorkItem,
)
from annotate.rules import compare_order
from annotate.services import queue, tree
from platform_common.errors import Conflict, NotYours
from platform_common.raw_sql import columns, fetch_one, prepared_cursor
from platform_common.serializers import whole_number

MAX_TIME_SPENT_MS = 24 * 3600 * 1000
COMPARE_CHOICES = ("A", "B", "tie", "both_bad")


TASK_WITH_ITEM = f"""
SELECT {columns(Task, "t")}, {columns(WorkItem, "w")}, {columns(CandidateSet, "cs")}
FROM annotate_task t
LEFT JOIN annotate_workitem w ON w.id = t.item_id
LEFT JOIN annotate_candidateset cs ON cs.id = w.candidate_set_id
WHERE t.id = %s
"""


def task_with_item(task_id: int) -> Task | None:
    """Return the task with its item and candidate set attached, in one query."""
    found = fetch_one(TASK_WITH_ITEM, [task_id], [Task, WorkItem, CandidateSet])
    if found is None:
        return None
    task, item, candidate_set = found
    if item is not None:
        item.candidate_set = candidate_set
        task.item = item
    return task


def _check_time_spent(time_spent_ms) -> None:
    if time_spent_ms is not None and not 0 <= time_spent_ms <= MAX_TIME_SPENT_MS:
        raise ValidationError({"time_spent_ms": "time spent must be between 0 and 24 hours, in ms"})


def task_submit(*, task_id: int, annotator, submit_key: str, payload: dict, time_spent_ms: int | None = None) -> dict:
    """Submit the annotator's work on a leased task and return what it produced."""
    submit_key = (submit_key or "").strip()
    if not submit_key or len(submit_key) > 100:
        raise ValidationError({"submit_key": "send an idempotency key of 1 to 100 characters"})
    _check_time_spent(time_spent_ms)
    task = task_with_item(task_id)
    if task is None:
        raise ValidationError({"task": "no such task"})
    if (
        task.kind in (TaskKind.RANKING, TaskKind.COMPARE)
        and task.annotator_id == annotator.id
        and task.state == TaskState.LEASED
        and not task.is_expired()
    ):
        result = _ranking_submit_at_once(task, annotator=annotator, payload=payload or {}, submit_key=submit_key, time_spent_ms=time_spent_ms)
        if result is not None:
            return result
        # The lease changed under us (expired, or a copy of this submit won): settle it below.
    with transaction.atomic():
        task = Task.objects.select_for_update(of=("self",)).select_related("item__candidate_set").get(pk=task_id)
        if task.annotator_id != annotator.id:
            raise NotYours({"task": "this task is leased to someone else"})
        if task.state == TaskState.SUBMITTED:
            if task.submit_key == submit_key:
                return task.result  # a replay: nothing new is written
            raise Conflict({"task": "this task was already submitted (with another idempotency key)"})
        if task.state != TaskState.LEASED:
            raise Conflict({"task": f"this task was {task.state}; ask for the next task"})
        expired = task.is_expired()
        if expired:
            queue.task_expire(task)
        else:
            result = _submit(task, annotator=annotator, payload=payload or {}, time_spent_ms=time_spent_ms)
            task.state = TaskState.SUBMITTED
            task.submit_key = submit_key
            task.finished_at = timezone.now()
            task.result = result
            task.save(update_fields=["state", "submit_key", "finished_at", "result", "updated_at"])
            if task.item_id:
                tree.work_item_finish_one(task.item)
            return result
    # Outside the atomic block, so that marking the lease expired is kept.
    raise Conflict({"task": f"the lease expired at {task.lease_expires_at.isoformat()}; ask for the next task"})


# The hot path of the queue: judging a candidate set. Close the lease, write the ranking and
# count it on the item in one statement (one round trip, no explicit transaction). The UPDATE's
# conditions re-check the lease under its row lock: if the lease expired or a concurrent copy
# of this submit got there first, nothing is written and the caller takes the slow path.
RANKING_SUBMIT = """
WITH new AS (
    SELECT nextval(pg_get_serial_sequence('annotate_ranking', 'id')) AS ranking_id
), closed AS (
    UPDATE annotate_task
    SET state = 'submitted', submit_key = %(key)s, finished_at = now(), updated_at = now(),
        result = jsonb_build_object('ranking_id', (SELECT ranking_id FROM new))
    WHERE id = %(task)s AND annotator_id = %(user)s AND state = 'leased' AND lease_expires_at > now()
    RETURNING id, item_id, guideline_version
), ranking AS (
    INSERT INTO annotate_ranking (
        id, created_at, updated_at, candidate_set_id, task_id, annotator_id, external_annotator,
        origin, tiers, all_bad, guideline_version, time_spent_ms)
    SELECT new.ranking_id, now(), now(), %(set)s, closed.id, %(user)s, '', '{}'::jsonb,
           %(tiers)s::jsonb, %(all_bad)s, closed.guideline_version, %(spent)s
    FROM closed, new
    RETURNING id
), counted AS (
    UPDATE annotate_workitem SET done = annotate_workitem.done + 1, updated_at = now()
    FROM closed WHERE annotate_workitem.id = closed.item_id
)
SELECT id FROM ranking
"""


def _ranking_submit_at_once(task: Task, *, annotator, payload, submit_key, time_spent_ms) -> dict | None:
    candidate_set = task.item.candidate_set
    tiers, all_bad = judged_tiers(task, payload)
    with prepared_cursor() as cursor:
        cursor.execute(
            RANKING_SUBMIT,
            {
                "key": submit_key,
                "task": task.id,
                "user": annotator.id,
                "set": candidate_set.id,
                "tiers": json.dumps(tiers),
                "all_bad": all_bad,
                "spent": time_spent_ms,
            },
        )
        row = cursor.fetchone()
    return {"ranking_id": row[0]} if row else None


def _submit(task: Task, *, annotator, payload: dict, time_spent_ms) -> dict:
    """Write what the task's kind makes of the payload, through its named submit service (annotate.kinds)."""
    from annotate.kinds import KINDS  # the table names the services of this module

    kind = KINDS.get(task.kind)
    if kind is None:
        raise ValidationError({"kind": f"unknown task kind {task.kind}"})
    return kind.submit_service()(task, annotator=annotator, payload=payload,
                                 guideline_version=task.guideline_version, time_spent_ms=time_spent_ms)


def _message_submit(task: Task, *, annotator, payload: dict, role: str, guideline_version, time_spent_ms) -> dict:
    message = tree.message_create(
        project=task.project, parent=task.item.message if task.item_id else None, role=role,
        text=payload.get("text", ""), source=MessageSource.ANNOTATOR, author=annotator,
        guideline_version=guideline_version, time_spent_ms=time_spent_ms,
    )
    return {"message_id": message.id}


def prompt_submit(task: Task, *, annotator, payload: dict, **common) -> dict:
    """A new prompt (a conversation's first turn, or the user's next turn of a chat)."""
    return _message_submit(task, annotator=annotator, payload=payload, role=MessageRole.USER, **common)


def demonstration_submit(task: Task, *, annotator, payload: dict, **common) -> dict:
    """The reply the annotator would want, waiting for review."""
    return _message_submit(task, annotator=annotator, payload=payload, role=MessageRole.ASSISTANT, **common)


def ranking_submit(task: Task, *, annotator, payload: dict, **common) -> dict:
    """An order of the candidate set, best first (ties in one tier), or all bad. The queue's hot path writes most
    rankings in one statement (RANKING_SUBMIT); this is the path when that one could not."""
    tiers, all_bad = judged_tiers(task, payload)
    ranking = Ranking.objects.create(candidate_set=task.item.candidate_set, task=task, annotator=annotator,
                                     tiers=tiers, all_bad=all_bad, **common)
    return {"ranking_id": ranking.id}


compare_submit = ranking_submit  # a blind A/B vote is a ranking of a set of two (judged_tiers reads the choice)


def label_task_submit(task: Task, *, annotator, payload: dict, **common) -> dict:
    """A quality score, flags and rubric scores on the item's message. A gold item's judgement is scored against
    its known answer (annotate.selectors.gold) and does nothing else: a wrong flag must not exclude the message,
    and the exports leave it out."""
    label = label_save(message=task.item.message, annotator=annotator, quality=payload.get("quality"),
                       flags=payload.get("flags") or [], rubrics=payload.get("rubrics"), task=task,
                       applied=not task.item.gold, **common)
    return {"label_id": label.id}


def review_task_submit(task: Task, *, annotator, payload: dict, **common) -> dict:
    """A reviewer's verdict on a demonstration (a gold one's is scored only, as a label's)."""
    membership = Membership.objects.filter(project=task.project, user=annotator, is_active=True).first()
    if membership is None or not membership.has_role(Role.REVIEWER):
        raise PermissionDenied("reviews need the reviewer role")
    review = review_save(message=task.item.message, reviewer=annotator, accepted=payload.get("accepted"),
                         comment=payload.get("comment", ""), task=task, applied=not task.item.gold, **common)
    return {"review_id": review.id}


def edit_submit(task: Task, *, annotator, payload: dict, guideline_version: int, time_spent_ms) -> dict:
    """An annotator mended a reply: their text becomes a demonstration beside it (the same parent, waiting for
    review like any other) and a judged pair, the edit over the reply it mended (a two-reply set no one is asked
    to judge again, with the editor's ranking), so the exports carry both: SFT the edit once accepted, preference
    the pair. An unchanged text is refused: it would teach nothing."""
    original, text = task.item.message, payload.get("text", "")
    if " ".join(text.split()) == " ".join(original.text.split()):
        raise ValidationError({"text": "the reply is unchanged: edit it, or skip the task if it needs no edit"})
    edited = tree.message_create(
        project=task.project, parent=original.parent, role=MessageRole.ASSISTANT, text=text,
        source=MessageSource.ANNOTATOR, author=annotator, guideline_version=guideline_version,
        time_spent_ms=time_spent_ms, origin={"edited_from": original.id},
    )
    pair = CandidateSet.objects.create(project=task.project, parent=original.parent, kind=CandidateSetKind.COMPARE,
                                       message_ids=[edited.id, original.id], origin={"edit": edited.id})
    ranking = Ranking.objects.create(candidate_set=pair, task=task, annotator=annotator, tiers=[[edited.id], [original.id]],
                                     guideline_version=guideline_version, time_spent_ms=time_spent_ms)
    return {"message_id": edited.id, "ranking_id": ranking.id}


def judged_tiers(task: Task, payload: dict) -> tuple[list, bool]:
    """Return the tiers (and all-bad) that a ranking or comparison submit stands for."""
    candidate_set = task.item.candidate_set
    if task.kind == TaskKind.COMPARE:
        shown = compare_order(task.id, candidate_set.message_ids)
        return compare_tiers(candidate_set, shown=shown, choice=payload.get("choice"))
    return ranking_tiers(candidate_set, payload)


def compare_tiers(candidate_set: CandidateSet, *, shown: list[int], choice) -> tuple[list, bool]:
    if choice not in COMPARE_CHOICES:
        raise ValidationError({"choice": f"choice must be one of {', '.join(COMPARE_CHOICES)}"})
    a, b = shown
    if choice == "A":
        return [[a], [b]], False
    if choice == "B":
        return [[b], [a]], False
    if choice == "tie":
        return [[a, b]], False
    return [], True


def ranking_tiers(candidate_set: CandidateSet, payload: dict) -> tuple[list, bool]:
    """Validate a ranking: tiers best first that hold every candidate exactly once, or all bad."""
    if payload.get("all_bad"):
        if payload.get("tiers"):
            raise ValidationError({"tiers": "send either tiers or all_bad, not both"})
        return [], True
    tiers = payload.get("tiers")
    if not isinstance(tiers, list) or not tiers or not all(isinstance(tier, list) and tier for tier in tiers):
        raise ValidationError({"tiers": "tiers must be a non-empty list of non-empty lists of message ids"})
    try:
        flat = [int(message_id) for tier in tiers for message_id in tier]
    except (TypeError, ValueError):
        raise ValidationError({"tiers": "every entry of a tier must be a message id"}) from None
    expected = set(candidate_set.message_ids)
    if len(flat) != len(set(flat)):
        raise ValidationError({"tiers": "a reply appears more than once"})
    if set(flat) != expected:
        missing = sorted(expected - set(flat))
        extra = sorted(set(flat) - expected)
        raise ValidationError({"tiers": f"rank every reply of the set exactly once; missing {missing}, not in the set {extra}"})
    if len(tiers) == 1:
        raise ValidationError({"tiers": "all replies tied says nothing; use all_bad if none is acceptable"})
    return [[int(message_id) for message_id in tier] for tier in tiers], False


def rubric_scores_clean(*, project, scores) -> dict:
    """The scores given on the project's rubrics (key -> 1-5), or a refusal naming the rubric or the score."""
    if scores in (None, ""):
        return {}
    if not isinstance(scores, dict):
        raise ValidationError({"rubrics": "an object of rubric key -> score 1-5"})
    known = {rubric["key"] for rubric in project.settings.rubrics}
    unknown = sorted(set(scores) - known)
    if unknown:
        raise ValidationError({"rubrics": f"not rubrics of this project: {unknown}; it has {sorted(known) or 'none'}"})
    cleaned = {}
    for key, value in scores.items():
        if value in (None, ""):
            continue
        if isinstance(value, bool) or not whole_number(str(value)) or not 1 <= int(value) <= 5:
            raise ValidationError({"rubrics": f"{key}: a score is a whole number from 1 to 5, not {str(value)[:20]!r}"})
        cleaned[key] = int(value)
    return cleaned


def label_save(*, message: Message, annotator, quality, flags, task=None, guideline_version=None, time_spent_ms=None,
               applied: bool = True, rubrics=None) -> Label:
    """Record (or update) the annotator's quality score and flags on a message; `applied=False` (a gold item's
    label) records it without counting its flags towards excluding the message."""
    if quality is not None:
        try:
            quality = int(quality)
        except (TypeError, ValueError):
            raise ValidationError({"quality": "quality is a whole number from 1 to 5"}) from None
        if not 1 <= quality <= 5:
            raise ValidationError({"quality": "quality is a whole number from 1 to 5"})
    if not isinstance(flags, list):
        raise ValidationError({"flags": "flags must be a list"})
    unknown = [flag for flag in flags if flag not in Flag.values]
    if unknown:
        raise ValidationError({"flags": f"unknown flags {unknown}; use {', '.join(Flag.values)}"})
    rubric_scores = rubric_scores_clean(project=message.project, scores=rubrics)
    if quality is None and not flags and not rubric_scores:
        raise ValidationError({"quality": "give a quality score, a flag, or both"})
    if message.author_id is not None and message.author_id == annotator.id:
        raise ValidationError({"message": "you cannot label or flag your own message"})
    _check_time_spent(time_spent_ms)
    # Lock the message (after its parent: the order message_exclude and candidate_sets_form
    # lock in): flaggers arriving at once are counted one after the other, so the threshold
    # cannot be missed by each seeing only their own flag.
    if message.parent_id:
        Message.objects.select_for_update().filter(pk=message.parent_id).first()
    message = Message.objects.select_for_update(of=("self",)).select_related("project__settings").get(pk=message.pk)
    label, _ = Label.objects.update_or_create(
        message=message,
        annotator=annotator,
        defaults={
            "quality": quality,
            "flags": sorted(set(flags)),
            "rubric_scores": rubric_scores,
            "task": task,
            "guideline_version": guideline_version if guideline_version is not None else message.project.guideline_version,
            "time_spent_ms": time_spent_ms,
        },
    )
    if applied:
        flags_apply(message=message)
    return label


def flags_apply(*, message: Message) -> None:
    """Exclude the message once the project's threshold of annotators have flagged it."""
    if message.excluded:
        return
    # A gold item's label is scored only; an overruled one counts for nothing.
    labels = (Label.objects.filter(message=message).exclude(flags=[]).exclude(task__item__gold=True)
              .exclude(verdict=Verdict.OVERRULED))
    if message.cleared_at:
        labels = labels.filter(updated_at__gt=message.cleared_at)  # flags an admin already overruled
    flaggers = labels.values("annotator").distinct().count()
    if flaggers >= message.project.settings.flag_threshold:
        tree.message_exclude(message=message, reason=f"flagged by {flaggers}")


@transaction.atomic
def label_submit(*, message: Message, annotator, quality=None, flags=(), time_spent_ms=None, rubrics=None) -> Label:
    """Flag or score any message the annotator can see, outside the queue."""
    return label_save(message=message, annotator=annotator, quality=quality, flags=list(flags), time_spent_ms=time_spent_ms,
                      rubrics=rubrics)


def review_save(*, message: Message, reviewer, accepted, comment="", task=None, guideline_version=None, time_spent_ms=None,
                applied: bool = True) -> Review:
    """Record a review; applied (all but a gold item's), it accepts the demonstration or rejects and excludes it."""
    if not isinstance(accepted, bool):
        raise ValidationError({"accepted": "accepted must be true or false"})
    if message.role != MessageRole.ASSISTANT or message.source != MessageSource.ANNOTATOR:
        raise ValidationError({"message": "only demonstrations written by annotators are reviewed"})
    if message.author_id == reviewer.id:
        raise ValidationError({"message": "you cannot review your own demonstration"})
    comment = (comment or "").strip()
    if not accepted and not comment:
        raise ValidationError({"comment": "say why you reject it, so the author can learn"})
    review = Review.objects.create(
        message=message,
        reviewer=reviewer,
        accepted=accepted,
        comment=comment,
        task=task,
        guideline_version=guideline_version,
        time_spent_ms=time_spent_ms,
    )
    if not applied:
        return review
    # With several reviewers, one rejection is enough to exclude; acceptance never undoes it.
    if accepted:
        Message.objects.filter(pk=message.pk).exclude(review_state=ReviewState.REJECTED).update(
            review_state=ReviewState.ACCEPTED
        )
    else:
        Message.objects.filter(pk=message.pk).update(review_state=ReviewState.REJECTED)
    if not accepted:
        tree.message_exclude(message=message, reason="rejected by a reviewer")
    return review
