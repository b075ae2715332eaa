"""Delete one contributor's data from a project: an annotator's, or an imported author's.

What goes, so that no later export carries any of it:
- their judgements: rankings and comparisons, labels and flags, reviews;
- their messages, each with everything under it. A reply is written to the conversation above it (it
  answers, quotes and paraphrases it), so it cannot be exported without that text, and the exporters
  already leave out everything under a message they do not export. Blanking their text instead would
  keep rows no export could ever use, and an admin clearing the blank would bring a hollow turn back;
  so the replies under their messages are deleted with them, and counted apart (`messages_under_theirs`),
  with the judgements others made on any of it (`others_judgements_on_them`).
Around what goes: work items that show a deleted reply among others (a ranking of a set that lost a
reply) are closed, since nobody can rank a reply that is gone; other annotators' rankings of such sets
stay, and exports compare only the replies still there. Every item that counted one of their
judgements or texts gives that slot back (`slots_reopened`), so it asks another annotator, as it
would have had they never done it; they are not offered it again. A message whose review state came from their
reviews only goes back to waiting for review (others' verdicts decide it otherwise); an exclusion
their flags or rejection caused stays until an admin clears it, since someone else may have seen the
same problem. Their leases in the project are expired, so nothing they hold comes back as a new
judgement; their membership stays unless the caller removes it (accounts.membership_remove).
Each deletion is recorded (ContributorDeletion, with its counts); an imported author's record is a
tombstone the importers honour, so importing the source again does not bring their data back.
Snapshots already exported are files and stay as they are: the next export is the clean one.
"""

from collections import Counter

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q

from annotate.models import (
    CandidateSet,
    ContributorDeletion,
    Label,
    Message,
    MessageSource,
    Project,
    Ranking,
    Review,
    ReviewState,
    Task,
    TaskState,
    WorkItem,
)
from annotate.services import queue


@transaction.atomic
def contributor_delete(*, project: Project, user=None, pseudonym: str = "", by=None) -> dict[str, int]:
    """Delete an annotator's (`user`) or an imported author's (`pseudonym`) judgements and messages from
    the project, in one transaction, and record it; return how many rows of each kind went."""
    if (user is None) == (not pseudonym):
        raise ValidationError({"contributor": "name either an annotator or an imported author's pseudonym"})
    if user is not None:
        rankings = Ranking.objects.filter(candidate_set__project=project, annotator=user)
        labels = Label.objects.filter(message__project=project, annotator=user)
        reviews = Review.objects.filter(message__project=project, reviewer=user)
        messages = Message.objects.filter(project=project, author=user, source=MessageSource.ANNOTATOR)
    else:
        rankings = Ranking.objects.filter(candidate_set__project=project, external_annotator=pseudonym)
        labels, reviews = Label.objects.none(), Review.objects.none()
        messages = Message.objects.filter(project=project, source=MessageSource.IMPORT, origin__source_user=pseudonym)
    # Lock the project's trees the way judgements do (messages before what hangs on them), so a
    # submit about one of these messages waits for the deletion or sees it done.
    own_ids = list(messages.select_for_update().values_list("id", flat=True))
    if user is not None:
        _expire_leases(project, user)
    reviewed = set(reviews.values_list("message_id", flat=True)) - set(own_ids)
    counts = {
        "rankings": _delete(rankings, Ranking), "labels": _delete(labels, Label), "reviews": _delete(reviews, Review),
    }
    _review_states_settle(reviewed)

    doomed = _with_subtrees(project, own_ids)
    counts["messages"] = len(own_ids)
    counts["messages_under_theirs"] = len(doomed) - len(own_ids)
    counts["others_judgements_on_them"] = (
        Ranking.objects.filter(candidate_set__parent_id__in=doomed).count()
        + Label.objects.filter(message_id__in=doomed).count()
        + Review.objects.filter(message_id__in=doomed).count()
    )
    counts["work_items_closed"] = (
        WorkItem.objects.filter(project=project, candidate_set__message_ids__overlap=doomed)
        .exclude(candidate_set__parent_id__in=doomed)
        .update(open_slots=0, closed_reason="a reply in it was deleted with its author's data")
    ) if doomed else 0
    # Their judgements' trail goes too (annotate.services.corrections keeps every step of a change or withdrawal,
    # and each deletion here adds one), and so does the trail of what hung on their messages.
    doomed_sets = list(CandidateSet.objects.filter(parent_id__in=doomed).values_list("id", flat=True))
    # Django cascades the rest: the candidate sets under them, the work about them, judgements on them.
    Message.objects.filter(id__in=doomed).delete()
    theirs = {"annotator": user} if user is not None else {"external_annotator": pseudonym}
    Ranking.history.filter(Q(candidate_set__project=project, **theirs) | Q(candidate_set_id__in=doomed_sets)).delete()
    Label.history.filter(Q(message_id__in=doomed) | Q(annotator=user, message__project=project)
                         if user is not None else Q(message_id__in=doomed)).delete()
    if user is not None:  # the verdicts they gave on others' rankings and labels, and their words in the trail
        for model, scope in ((Ranking, "candidate_set__project"), (Label, "message__project")):
            model.objects.filter(verdict_by=user, **{scope: project}).update(verdict="", verdict_by=None, verdict_comment="")
            model.history.filter(verdict_by=user).update(verdict_by=None, verdict_comment="")
    counts["slots_reopened"] = _slots_return(project, user) if user is not None else 0
    if not any(counts.values()):
        raise ValidationError({"contributor": "nothing in this project is theirs"})
    ContributorDeletion.objects.create(project=project, user=user, pseudonym=pseudonym, counts=counts, deleted_by=by)
    return counts


def deleted_pseudonyms(*, project: Project) -> set[str]:
    """Return the imported authors whose data was deleted from the project: what imports must leave out."""
    return set(ContributorDeletion.objects.filter(project=project).exclude(pseudonym="").values_list("pseudonym", flat=True))


def _delete(rows, model) -> int:
    """Delete the rows; return how many of `model` went (not what other apps' rows cascaded with them)."""
    return rows.delete()[1].get(model._meta.label, 0)


def _with_subtrees(project: Project, message_ids: list[int]) -> list[int]:
    """Return the messages and every message under any of them."""
    found, frontier = set(message_ids), list(message_ids)
    while frontier:
        frontier = list(
            Message.objects.filter(project=project, parent_id__in=frontier)
            .exclude(id__in=found)
            .values_list("id", flat=True)
        )
        found.update(frontier)
    return sorted(found)


def _slots_return(project: Project, user) -> int:
    """Give back the slot each of the annotator's submitted tasks took on an item still open; return how many."""
    submitted = Counter(
        Task.objects.filter(project=project, annotator=user, state=TaskState.SUBMITTED, item__closed_reason="")
        .values_list("item_id", flat=True)
    )
    reopened = 0
    for item_id, count in submitted.items():
        # Lock order as the queue's: the item row, then its counters move together (open_slots <= needed - done).
        reopened += count * WorkItem.objects.filter(pk=item_id, done__gte=count).update(
            done=F("done") - count, open_slots=F("open_slots") + count
        )
    return reopened


def _expire_leases(project: Project, user) -> None:
    """Expire the annotator's open leases in the project: what they hold now is never submitted."""
    for task in Task.objects.select_for_update().filter(project=project, annotator=user, state=TaskState.LEASED):
        queue.task_expire(task)


def _review_states_settle(message_ids: set[int]) -> None:
    """Set the review state of each message that lost reviews from the reviews left on it: accepted if
    one is left (a rejection left would have excluded it), waiting for review if none is. An excluded
    message keeps its state until an admin clears it, and one an admin cleared stays accepted."""
    for message in Message.objects.select_for_update().filter(id__in=message_ids, excluded=False, cleared_at=None):
        left = Review.objects.filter(message=message).exists()
        Message.objects.filter(pk=message.pk).update(review_state=ReviewState.ACCEPTED if left else ReviewState.PENDING)
