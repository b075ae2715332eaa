"""Derived figures, never typed in: consensus, agreement, counts, throughput."""

from collections import defaultdict
from datetime import timedelta

from django.db.models import Count, F, Q, Sum
from django.utils import timezone

from annotate import agreement
from annotate.models import CandidateSet, Label, Message, Ranking, Review, SkipReason, Task, TaskState, WorkItem
from annotate.selectors.gold import gold_per_annotator  # noqa: F401 (the stats API and Progress read it here)


def _rankings_by_set(project):
    """The project's own (not imported) rankings that order something, grouped by set."""
    rankings = Ranking.objects.filter(candidate_set__project=project, all_bad=False, annotator__isnull=False)
    by_set = defaultdict(list)
    for set_id, annotator_id, tiers in rankings.values_list("candidate_set_id", "annotator_id", "tiers"):
        by_set[set_id].append((annotator_id, tiers))
    return by_set


def consensus_for(candidate_set: CandidateSet) -> dict:
    """Return the consensus order of one set by ranked pairs, and Kendall's W of its rankings."""
    rows = list(
        Ranking.objects.filter(candidate_set=candidate_set).values_list("tiers", "all_bad", "annotator_id")
    )
    ordered = [tiers for tiers, all_bad, _ in rows if not all_bad]
    # Agreement is among the project's own annotators; imported rankings count for the order only.
    own = [tiers for tiers, all_bad, annotator_id in rows if not all_bad and annotator_id is not None]
    return {
        "candidate_set_id": candidate_set.id,
        "rankings": len(rows),
        "all_bad": sum(1 for _, all_bad, _ in rows if all_bad),
        "consensus": agreement.ranked_pairs(list(candidate_set.message_ids), ordered) if ordered else [],
        "kendall_w": agreement.kendall_w(own),
    }


def project_agreement(*, project) -> dict:
    """Return Krippendorff's alpha (ordinal), Kendall's W per set, and per annotator the mean
    Kendall tau against the leave-one-out consensus. Imported rankings are left out."""
    by_set = _rankings_by_set(project)
    units, per_set, taus = [], {}, defaultdict(list)
    for set_id, rows in by_set.items():
        tiers_list = [tiers for _, tiers in rows]
        if len(rows) >= 2:
            per_set[set_id] = agreement.kendall_w(tiers_list)
        ranks = [agreement.mid_ranks(tiers) for tiers in tiers_list]
        for item in ranks[0]:
            units.append([rank[item] for rank in ranks if item in rank])
        for index, (annotator_id, tiers) in enumerate(rows):
            others = tiers_list[:index] + tiers_list[index + 1 :]
            if not others:
                continue
            items = sorted(agreement.positions(tiers))
            consensus = agreement.ranked_pairs(items, others)
            tau = agreement.kendall_tau_b(tiers, [[item] for item in consensus])
            if tau is not None:
                taus[annotator_id].append(tau)
    w_values = [w for w in per_set.values() if w is not None]
    return {
        "krippendorff_alpha": agreement.krippendorff_alpha_ordinal(units),
        "mean_kendall_w": sum(w_values) / len(w_values) if w_values else None,
        "sets_with_overlap": len(per_set),
        "kendall_w_per_set": per_set,
        "annotators": {
            annotator_id: {"mean_tau": sum(values) / len(values), "sets": len(values)}
            for annotator_id, values in taus.items()
        },
    }


def project_counts(*, project) -> dict:
    """Return items per kind and state, tasks per state, messages per role and review state."""
    items = WorkItem.objects.filter(project=project).values("kind").annotate(
        total=Count("id"),
        complete=Count("id", filter=Q(done__gte=F("needed"))),
        waiting=Count("id", filter=Q(open_slots__gt=0)),
    )
    tasks = Task.objects.filter(project=project).values("state").annotate(n=Count("id"))
    messages = Message.objects.filter(project=project).values("role", "review_state").annotate(
        n=Count("id"), excluded=Count("id", filter=Q(excluded=True))
    )
    return {
        "items": {row["kind"]: {k: row[k] for k in ("total", "complete", "waiting")} for row in items},
        "tasks": {row["state"]: row["n"] for row in tasks},
        "messages": [dict(row) for row in messages],
    }


def skip_reasons(*, project, notes: int = 10) -> dict:
    """Why tasks were skipped: the count per reason (SkipReason, and `none` for a skip with no reason), most
    first, and the newest typed notes, without who wrote them (the skip dialog promises annotators as much)."""
    skipped = Task.objects.filter(project=project, state=TaskState.SKIPPED)
    labels = dict(SkipReason.choices) | {"": "No reason given"}
    counted = skipped.values("skip_reason").annotate(n=Count("id")).order_by("-n", "skip_reason")
    return {
        "reasons": [{"reason": row["skip_reason"] or "none", "label": labels.get(row["skip_reason"], row["skip_reason"]),
                     "skips": row["n"]} for row in counted],
        "notes": [{"note": note, "at": at} for note, at in
                  skipped.exclude(skip_note="").order_by("-finished_at", "-id").values_list("skip_note", "finished_at")[:notes]],
    }


def skips_per_annotator(*, project, since) -> dict[int, int]:
    """Tasks each annotator skipped since `since`, by annotator id."""
    rows = (Task.objects.filter(project=project, state=TaskState.SKIPPED, finished_at__gte=since)
            .values("annotator_id").annotate(n=Count("id")))
    return {row["annotator_id"]: row["n"] for row in rows}


def annotator_throughput(*, project, since=None) -> list[dict]:
    """Return per annotator: submitted tasks, tasks per hour while working, time on task."""
    since = since or timezone.now() - timedelta(days=7)
    rows = (
        Task.objects.filter(project=project, state=TaskState.SUBMITTED, finished_at__gte=since)
        .values("annotator_id", "annotator__username")
        .annotate(submitted=Count("id"))
        .order_by("-submitted")
    )
    time_spent = _time_on_task(project, since)
    result = []
    for row in rows:
        seconds = time_spent.get(row["annotator_id"], 0) / 1000
        result.append(
            {
                "annotator_id": row["annotator_id"],
                "username": row["annotator__username"],
                "submitted": row["submitted"],
                "time_on_task_s": round(seconds, 1),
                "per_hour": round(row["submitted"] / (seconds / 3600), 1) if seconds else None,
            }
        )
    return result


# Every kind of work records the time spent on it: (model, who did it, path to the project).
TIMED_WORK = (
    (Ranking, "annotator_id", "candidate_set__project"),
    (Message, "author_id", "project"),
    (Label, "annotator_id", "message__project"),
    (Review, "reviewer_id", "message__project"),
)


def _time_on_task(project, since) -> dict[int, int]:
    """Sum, per person, the milliseconds they reported spending on their work since `since`."""
    totals = defaultdict(int)
    for model, user_field, project_path in TIMED_WORK:
        rows = (
            model.objects.filter(**{project_path: project}, created_at__gte=since, time_spent_ms__isnull=False)
            .values_list(user_field)
            .annotate(total=Sum("time_spent_ms"))
        )
        for user_id, spent in rows:
            if user_id:
                totals[user_id] += spent
    return totals


def annotator_counts(*, project, annotator) -> dict:
    """Return the annotator's submitted tasks today and in total."""
    start_of_day = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    done = Task.objects.filter(project=project, annotator=annotator, state=TaskState.SUBMITTED)
    return {"today": done.filter(finished_at__gte=start_of_day).count(), "total": done.count()}

