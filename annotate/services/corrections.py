"""Correcting judgements after they were made: an annotator changes or withdraws their own ranking or label within
the project's `correction_minutes`; a project admin may withdraw anyone's at any time. Exports read the rows as
they are now, so a withdrawn judgement leaves them and a changed one goes out changed.

Every change and withdrawal is kept by django-simple-history (Ranking.history, Label.history) with who made it and
when, and the message's page shows the trail (annotate.selectors.corrections). A ranking the queue's own SQL wrote
has no history record until its first change: that change first records the state it had, so the trail always
has the before and the after.
"""

from datetime import timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotate.models import Label, Membership, Ranking, Role, Task, TaskState, Verdict, WorkItem
from annotate.services import submits


def _may_correct(*, judgement, author_id: int | None, by, project, withdrawing: bool) -> None:
    """Refuse (PermissionDenied, with why) a correction `by` may not make."""
    membership = Membership.objects.filter(project=project, user=by, is_active=True).first()
    if membership is None:
        raise PermissionDenied("you are not a member of this project")
    if author_id != by.id:
        if withdrawing and membership.has_role(Role.ADMIN):
            return  # admins withdraw anyone's, at any time
        raise PermissionDenied("only its annotator may change it, and only a project admin withdraw someone else's")
    minutes = project.settings.correction_minutes
    if timezone.now() - judgement.created_at > timedelta(minutes=minutes):
        raise PermissionDenied(
            f"the project lets you correct your judgements for {minutes} minutes after you made them; this one is "
            f"from {timezone.localtime(judgement.created_at):%Y-%m-%d %H:%M}" if minutes else
            "this project does not let annotators correct their judgements")


def _record_before(judgement) -> None:
    """Give the judgement its first history record (the state it was made in, by its annotator) if it has none."""
    if not judgement.history.exists():
        type(judgement).history.bulk_history_create([judgement], default_user=judgement.annotator,
                                                    default_date=judgement.created_at)


def _task_withdrawn(task_id: int | None) -> None:
    """The task the judgement came from is withdrawn and its item needs someone again (a closed item stays so)."""
    if task_id is None:
        return
    task = Task.objects.select_for_update().filter(pk=task_id).first()
    if task is None or task.state != TaskState.SUBMITTED:
        return
    Task.objects.filter(pk=task.pk).update(state=TaskState.WITHDRAWN, updated_at=timezone.now())
    if task.item_id:
        WorkItem.objects.filter(pk=task.item_id, done__gt=0).update(done=F("done") - 1, updated_at=timezone.now())
        WorkItem.objects.filter(pk=task.item_id, closed_reason="").update(open_slots=F("open_slots") + 1)


@transaction.atomic
def ranking_change(*, ranking: Ranking, by, tiers=None, all_bad: bool = False) -> Ranking:
    """Replace the annotator's order of the set (checked as a submit is)."""
    ranking = Ranking.objects.select_for_update(of=("self",)).select_related("candidate_set__project__settings").get(pk=ranking.pk)
    project = ranking.candidate_set.project
    _may_correct(judgement=ranking, author_id=ranking.annotator_id, by=by, project=project, withdrawing=False)
    if ranking.candidate_set.origin.get("edit"):
        raise PermissionDenied("this ranking is the pair an edit made (the edit over the reply it mended); it goes with the edit")
    new_tiers, new_all_bad = submits.ranking_tiers(ranking.candidate_set, {"tiers": tiers, "all_bad": all_bad})
    if (new_tiers, new_all_bad) == (ranking.tiers, ranking.all_bad):
        raise ValidationError({"tiers": "that is the order it has already"})
    _record_before(ranking)
    ranking.tiers, ranking.all_bad = new_tiers, new_all_bad
    ranking.verdict, ranking.verdict_by, ranking.verdict_comment = "", None, ""  # a verdict was on the old order
    ranking._history_user = by
    ranking.save(update_fields=["tiers", "all_bad", "verdict", "verdict_by", "verdict_comment", "updated_at"])
    return ranking


def ranking_withdraw(*, ranking: Ranking, by) -> None:
    """Delete the ranking (its history keeps it, with who withdrew it); its item needs someone again."""
    _withdraw(ranking, by=by)


@transaction.atomic
def label_change(*, label: Label, by, quality=None, flags=(), rubrics=None) -> Label:
    """Replace the annotator's quality score and flags on the message (checked as a submit is)."""
    label = Label.objects.select_for_update(of=("self",)).select_related("message__project__settings").get(pk=label.pk)
    _may_correct(judgement=label, author_id=label.annotator_id, by=by, project=label.message.project, withdrawing=False)
    _record_before(label)
    # A verdict was on the old label: the changed one waits for a reviewer again (read by label_save's save below,
    # so the trail's record of this change says so; rolled back with it if the change is refused).
    Label.objects.filter(pk=label.pk).update(verdict="", verdict_by=None, verdict_comment="")
    # label_save validates and applies as a submit does: a flag added now counts towards excluding the message.
    changed = submits.label_save(message=label.message, annotator=label.annotator, quality=quality,
                                    flags=list(flags), task=label.task, guideline_version=label.guideline_version,
                                    time_spent_ms=label.time_spent_ms,
                                    rubrics=label.rubric_scores if rubrics is None else rubrics)
    latest = label.history.order_by("-history_id").first()  # the change label_save recorded: theirs
    if latest is not None and latest.history_type == "~":
        type(latest).objects.filter(pk=latest.pk).update(history_user=by)
    return changed


def label_withdraw(*, label: Label, by) -> None:
    """Delete the label (its history keeps it). A message its flags already excluded stays excluded until an
    admin clears it: who else flagged it is not this annotator's to undo."""
    _withdraw(label, by=by)


@transaction.atomic
def _withdraw(judgement: Ranking | Label, *, by) -> None:
    model = type(judgement)
    judgement = model.objects.select_for_update(of=("self",)).get(pk=judgement.pk)
    if model is Ranking and judgement.candidate_set.origin.get("edit"):
        raise PermissionDenied("this ranking is the pair an edit made (the edit over the reply it mended); it goes with the edit")
    _may_correct(judgement=judgement, author_id=judgement.annotator_id, by=by, project=_project_of(judgement),
                 withdrawing=True)
    _record_before(judgement)
    judgement._history_user = by
    task_id = judgement.task_id
    judgement.delete()
    _task_withdrawn(task_id)


def _project_of(judgement: Ranking | Label):
    return judgement.candidate_set.project if isinstance(judgement, Ranking) else judgement.message.project


@transaction.atomic
def judgement_review(*, judgement: Ranking | Label, by, accepted, comment: str = "") -> Ranking | Label:
    """A reviewer accepts a ranking or a label, or overrules it (saying why): an overruled one leaves every
    export, and its flags count towards no exclusion. Kept in the trail like any change; a later verdict
    replaces an earlier one. Nobody reviews their own."""
    judgement = type(judgement).objects.select_for_update(of=("self",)).get(pk=judgement.pk)
    project = _project_of(judgement)
    membership = Membership.objects.filter(project=project, user=by, is_active=True).first()
    if membership is None or not membership.has_role(Role.REVIEWER):
        raise PermissionDenied("reviews need the reviewer role")
    if judgement.annotator_id == by.id:
        raise PermissionDenied("you cannot review your own judgement")
    if not isinstance(accepted, bool):
        raise ValidationError({"accepted": "accepted must be true or false"})
    comment = " ".join((comment or "").split())
    if not accepted and not comment:
        raise ValidationError({"comment": "say why you overrule it, so its annotator can learn"})
    _record_before(judgement)
    judgement.verdict = Verdict.ACCEPTED if accepted else Verdict.OVERRULED
    judgement.verdict_by, judgement.verdict_comment = by, comment[:2000]
    judgement._history_user = by
    judgement.save(update_fields=["verdict", "verdict_by", "verdict_comment", "updated_at"])
    return judgement
