"""Reads for "my history": what a person did in a project and what reviewers said of it."""

from datetime import timedelta

from django.core.paginator import Page, Paginator
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotate.models import Flag, Label, Message, Ranking, Review, TaskKind
from annotate.selectors.tasks import tasks_of

PAGE_SIZE = 25


def history_page(*, project, annotator, page_number) -> tuple[Page, list[dict]]:
    """Return one page of the annotator's tasks, newest first, each with what came of it.

    Newest by the time each shows (when it was finished, or leased if still open): by lease
    time, a task leased early and finished late sank below the ones done meanwhile.

    A constant number of queries per page: the tasks, then every message, ranking, label and
    review they refer to, each fetched in one go.
    """
    tasks = (
        tasks_of(project=project, annotator=annotator)
        .select_related("item__candidate_set", "project__settings")
        .order_by(Coalesce("finished_at", "created_at").desc(), "-id")
    )
    page = Paginator(tasks, PAGE_SIZE).get_page(page_number)
    tasks = list(page.object_list)

    message_ids, ranking_ids, label_ids, review_ids = set(), set(), set(), set()
    for task in tasks:
        result = task.result or {}
        message_ids.add(result.get("message_id"))
        ranking_ids.add(result.get("ranking_id"))
        label_ids.add(result.get("label_id"))
        review_ids.add(result.get("review_id"))
        if task.item is not None:
            message_ids.add(task.item.message_id)
            if task.item.candidate_set is not None:
                message_ids.add(task.item.candidate_set.parent_id)
                message_ids.update(task.item.candidate_set.message_ids)
    messages = Message.objects.in_bulk([i for i in message_ids if i])
    # What I wrote may have a parent I never saw through an item (a prompt continuing a chat).
    parents = Message.objects.in_bulk([m.parent_id for m in messages.values() if m.parent_id and m.parent_id not in messages])
    messages.update(parents)
    rankings = Ranking.objects.in_bulk([i for i in ranking_ids if i])
    labels = Label.objects.in_bulk([i for i in label_ids if i])
    my_reviews = Review.objects.in_bulk([i for i in review_ids if i])
    own = [task.result.get("message_id") for task in tasks if (task.result or {}).get("message_id")]
    reviews_of_mine: dict[int, list[Review]] = {}
    for review in Review.objects.filter(message_id__in=own).order_by("created_at"):
        reviews_of_mine.setdefault(review.message_id, []).append(review)

    return page, [
        _entry(task, messages, rankings, labels, my_reviews, reviews_of_mine) for task in tasks
    ]


def _entry(task, messages, rankings, labels, my_reviews, reviews_of_mine) -> dict:
    result = task.result or {}
    entry = {"task": task, "kind_label": TaskKind(task.kind).label, "about": None, "written": None}
    item = task.item
    candidate_set = item.candidate_set if item is not None else None
    if item is not None:
        about_id = candidate_set.parent_id if candidate_set is not None else item.message_id
        entry["about"] = messages.get(about_id)
    written = messages.get(result.get("message_id"))
    if written is not None:
        entry["written"] = written
        entry["reviews"] = reviews_of_mine.get(written.id, [])
        if entry["about"] is None and written.parent_id:
            entry["about"] = messages.get(written.parent_id)
    # Until when its annotator may still withdraw it (annotate.services.corrections), or None.
    window = timedelta(minutes=task.project.settings.correction_minutes)
    ranking = rankings.get(result.get("ranking_id"))
    if ranking is not None:
        entry["all_bad"] = ranking.all_bad
        entry["tiers"] = [[messages.get(message_id) for message_id in tier] for tier in ranking.tiers]
        if window and timezone.now() < ranking.created_at + window:
            entry["withdraw"] = {"kind": "ranking", "id": ranking.id, "until": ranking.created_at + window}
        entry["verdict"] = _verdict(ranking)
    label = labels.get(result.get("label_id"))
    if label is not None:
        entry["label"] = {"quality": label.quality, "flags": [Flag(flag).label for flag in label.flags]}
        if window and timezone.now() < label.created_at + window:
            entry["withdraw"] = {"kind": "label", "id": label.id, "until": label.created_at + window}
        entry["verdict"] = _verdict(label)
    review = my_reviews.get(result.get("review_id"))
    if review is not None:
        entry["my_review"] = review
    return entry


def _verdict(judgement) -> dict | None:
    """What a reviewer said of the annotator's ranking or label (never who), or None."""
    if not judgement.verdict:
        return None
    return {"overruled": judgement.verdict == "overruled", "comment": judgement.verdict_comment}
