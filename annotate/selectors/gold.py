"""Reads about gold items: which judgements of them were right, accuracy per annotator, who is paused.

A gold answer counts from the first task leased after the item became gold: judgements made before
it (those a consensus was promoted from, say) say nothing about the annotator against a known answer.
Nothing is stored per answer: scoring is a pure function of the judgement and the known answer,
so changing a known answer rescores everyone at once.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import date

from django.db.models import F
from django.utils import timezone

from annotate import agreement
from annotate.models import GoldAnswer, GoldResume, Project, Task, TaskKind, TaskState

# A ranking of gold is right when its Kendall tau-b against the known order is at least this: most
# of its pairs agree (with 4 replies, at most one of six pairs swapped). A comparison must match.
GOLD_RANKING_MIN_TAU = 0.5


def gold_judgement_correct(*, kind: str, answer: dict, judgement: dict) -> bool:
    """Say whether one judgement of a gold item agrees with its known answer.

    Rankings and comparisons: `all_bad` must match; a comparison's order must be the known one
    (ties included), a ranking's tau-b against it at least GOLD_RANKING_MIN_TAU. Labels: the same
    flags and, where the gold has a score, one within a point. Reviews: the same verdict.
    """
    if kind in (TaskKind.RANKING, TaskKind.COMPARE):
        if bool(answer.get("all_bad")) or bool(judgement.get("all_bad")):
            return bool(answer.get("all_bad")) == bool(judgement.get("all_bad"))
        known = [sorted(tier) for tier in answer.get("tiers") or []]
        given = [sorted(tier) for tier in judgement.get("tiers") or []]
        if known == given:
            return True
        if kind == TaskKind.COMPARE:
            return False
        tau = agreement.kendall_tau_b(given, known)
        return tau is not None and tau >= GOLD_RANKING_MIN_TAU
    if kind == TaskKind.LABEL:
        if sorted(answer.get("flags") or []) != sorted(judgement.get("flags") or []):
            return False
        known_quality = answer.get("quality")
        if known_quality is None:
            return True
        quality = judgement.get("quality")
        return quality is not None and abs(quality - known_quality) <= 1
    if kind == TaskKind.REVIEW:
        return judgement.get("accepted") is not None and judgement.get("accepted") == answer.get("accepted")
    return False


@dataclass(frozen=True)
class GoldResult:
    annotator_id: int
    item_id: int
    finished_at: object
    correct: bool


def gold_results(*, project: Project, annotator=None) -> list[GoldResult]:
    """Return every scored judgement of the project's gold items (or one annotator's), oldest first."""
    # A withdrawn gold answer counts, as a wrong one (it has no judgement left): withdrawing is no way out of
    # the scoring, and the annotator cannot tell a gold item from a real one to withdraw only those.
    tasks = Task.objects.filter(
        project=project,
        state__in=(TaskState.SUBMITTED, TaskState.WITHDRAWN),
        item__gold=True,
        created_at__gte=F("item__gold_answer__created_at"),
    )
    if annotator is not None:
        tasks = tasks.filter(annotator=annotator)
    rows = tasks.order_by("finished_at", "id").values_list(
        "annotator_id", "item_id", "finished_at", "kind", "item__gold_answer__answer",
        "ranking__tiers", "ranking__all_bad", "label__quality", "label__flags", "review__accepted", "state",
    )
    results = []
    for annotator_id, item_id, finished_at, kind, answer, tiers, all_bad, quality, flags, accepted, state in rows:
        judgement = {"tiers": tiers, "all_bad": all_bad, "quality": quality, "flags": flags, "accepted": accepted}
        correct = state == TaskState.SUBMITTED and gold_judgement_correct(kind=kind, answer=answer or {}, judgement=judgement)
        results.append(GoldResult(annotator_id, item_id, finished_at, correct))
    return results


def gold_accuracy(*, project: Project) -> dict[int, tuple[int, int]]:
    """Return, per annotator id, (gold answers right, gold answers given) in the project."""
    totals: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for result in gold_results(project=project):
        totals[result.annotator_id][0] += int(result.correct)
        totals[result.annotator_id][1] += 1
    return {annotator_id: (correct, answered) for annotator_id, (correct, answered) in totals.items()}


@dataclass(frozen=True)
class GoldStanding:
    """Where an annotator stands with the project's quality control, for the queue and the pages."""

    correct: int
    answered: int
    # Qualification: gold tasks still to do before real work (0: passed, or none asked).
    qualification_left: int
    # Why their new work is paused, or "" when it is not.
    paused_reason: str

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.answered if self.answered else None


def _resumed_at(project, annotator_id):
    return (
        GoldResume.objects.filter(project=project, annotator_id=annotator_id)
        .order_by("-created_at").values_list("created_at", flat=True).first()
    )


def standing_from(*, settings, results: list[GoldResult], resumed_at=None) -> GoldStanding:
    """Return the standing that one annotator's gold results (oldest first) give under the settings."""
    correct = sum(result.correct for result in results)
    answered = len(results)
    needed = settings.qualification_tasks
    # An admin's resume lets the annotator past a failed qualification, and counts only what came after.
    qualification_left = max(0, needed - answered) if resumed_at is None else 0
    paused = ""
    if needed and not qualification_left and resumed_at is None:
        passed = sum(result.correct for result in results[:needed])
        if passed < settings.qualification_pass_mark * needed:
            paused = (
                f"Paused: did not pass the qualification set ({passed} of {needed} right; "
                f"the pass mark is {settings.qualification_pass_mark:.0%}). An admin can resume."
            )
    counted = [result for result in results if resumed_at is None or result.finished_at > resumed_at]
    counted_right = sum(result.correct for result in counted)
    if (
        not paused
        and settings.gold_pause_below > 0
        and len(counted) >= settings.gold_min_answers
        and counted_right < settings.gold_pause_below * len(counted)
    ):
        paused = (
            f"Paused: {counted_right} of {len(counted)} quality checks right ({counted_right / len(counted):.0%}), "
            f"under the project's {settings.gold_pause_below:.0%}. An admin can resume."
        )
    return GoldStanding(correct, answered, qualification_left, paused)


def quality_control_on(settings) -> bool:
    """Say whether the project checks annotators at all: gold in the mix, or a qualification set."""
    return settings.gold_rate > 0 or settings.qualification_tasks > 0


def gold_standing(*, project: Project, annotator) -> GoldStanding:
    """Return the annotator's standing: accuracy, qualification left, why their work is paused."""
    settings = project.settings
    if not quality_control_on(settings):
        return GoldStanding(0, 0, 0, "")
    results = gold_results(project=project, annotator=annotator)
    return standing_from(settings=settings, results=results, resumed_at=_resumed_at(project, annotator.id))


def gold_per_annotator(*, project: Project) -> list[dict]:
    """Return per annotator with gold answers (admins): right, given, accuracy, and why paused."""
    settings = project.settings
    by_annotator: dict[int, list[GoldResult]] = defaultdict(list)
    for result in gold_results(project=project):
        by_annotator[result.annotator_id].append(result)
    resumes = dict(
        GoldResume.objects.filter(project=project).order_by("annotator_id", "-created_at")
        .distinct("annotator_id").values_list("annotator_id", "created_at")
    )
    names = dict(project.memberships.values_list("user_id", "user__username"))
    rows = []
    for annotator_id, results in by_annotator.items():
        standing = standing_from(settings=settings, results=results, resumed_at=resumes.get(annotator_id))
        rows.append({
            "annotator_id": annotator_id,
            "username": names.get(annotator_id, f"#{annotator_id}"),
            "gold_correct": standing.correct,
            "gold_answered": standing.answered,
            "gold_accuracy": round(standing.accuracy, 3) if standing.accuracy is not None else None,
            "paused_reason": standing.paused_reason if quality_control_on(settings) else "",
        })
    return sorted(rows, key=lambda row: (row["gold_accuracy"], row["username"]))


def gold_days_of(*, project: Project, annotator, today: date | None = None) -> list[dict]:
    """Return the annotator's own gold results per day, today left out, newest day first.

    Per day and a day late, never per item: an annotator who saw which answer was scored could
    tell the gold items from the real ones, and gold that is recognised measures nothing.
    """
    today = today or timezone.localdate()
    days: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    for result in gold_results(project=project, annotator=annotator):
        day = timezone.localdate(result.finished_at)
        if day < today:
            days[day][0] += int(result.correct)
            days[day][1] += 1
    return [{"day": day, "correct": correct, "answered": answered} for day, (correct, answered) in sorted(days.items(), reverse=True)]


def gold_items(*, project: Project):
    """Return the project's gold answers with their items, newest first (admins)."""
    return GoldAnswer.objects.filter(project=project).select_related("item").order_by("-created_at", "-id")
