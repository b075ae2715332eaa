"""50 annotators at once, each on their own database connection, working 500 ranking items,
once as the queue stands and once with priorities changing underneath them."""

import random
import threading
from collections import Counter

import pytest
from django.db import connections
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotate.models import Ranking, Role, Task, TaskState, WorkItem
from annotate.services import accounts as account_services
from annotate.services import gold as gold_services
from annotate.services import priority
from tests.annotate.factories import ranking_items

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ANNOTATORS = 50
ITEMS = 500
OVERLAP = 2
GOLD_RATE = 0.1


def test_fifty_concurrent_annotators_give_every_item_exactly_overlap_distinct_judgements(make_user, owner, project):
    work_concurrently(make_user, project)


def test_priorities_changing_underneath_fifty_annotators_change_nothing_else(make_user, owner, project):
    """A recompute (new reward-model signals, coverage as judgements arrive), boosts and pins run
    again and again while the annotators work: the lease stays exact."""
    stop, rounds, errors = threading.Event(), Counter(), []

    def reprioritise():
        rng = random.Random(0)
        try:
            ids = list(WorkItem.objects.filter(project=project).values_list("id", flat=True))
            while not stop.is_set():
                sample = rng.sample(ids, 200)
                priority.priority_signals_write(project=project, signals={i: {"uncertainty": rng.random()} for i in sample})
                priority.priorities_recompute(project=project, seconds=5)
                priority.priority_boost(project=project, item_ids=rng.sample(ids, 20), amount=rng.uniform(-1, 1))
                priority.priority_pin(project=project, item_ids=rng.sample(ids, 5))
                rounds["recompute"] += 1
        except Exception as error:  # reported below
            errors.append(repr(error))
        finally:
            connections.close_all()

    def started():
        thread = threading.Thread(target=reprioritise)
        thread.start()
        return thread

    work_concurrently(make_user, project, alongside=started, stop=stop)
    assert not errors, errors
    assert rounds["recompute"] >= 3  # the order really moved while the work went on
    assert WorkItem.objects.exclude(priority=0).count() > ITEMS // 2


def test_gold_mixed_in_goes_to_each_annotator_at_most_once_at_the_rate_and_leaves_the_real_work_exact(make_user, owner, project):
    """Ten gold items at a rate of 10%: every annotator wants the same few rows at once."""
    work_concurrently(make_user, project, gold=10, owner=owner)


def work_concurrently(make_user, project, *, alongside=None, stop=None, gold=0, owner=None):
    account_services.project_settings_update(
        project=project, overlap=OVERLAP, task_mix={"ranking": 1, "prompt": 0, "demonstration": 0, "compare": 0, "label": 0, "review": 0},
        # Pausing is test_gold's: here every gold answer is whatever order the replies came in.
        gold_rate=GOLD_RATE if gold else 0, gold_pause_below=0,
    )
    ranking_items(project, ITEMS + gold)
    gold_ids = set(WorkItem.objects.filter(project=project).order_by("-id").values_list("id", flat=True)[:gold])
    for item in WorkItem.objects.filter(id__in=gold_ids).select_related("candidate_set"):
        gold_services.gold_mark(
            project=project, item_id=item.id, answer={"tiers": [[i] for i in item.candidate_set.message_ids]}, by=owner
        )
    tokens = []
    for i in range(ANNOTATORS):
        user = make_user(f"annotator{i}")
        account_services.membership_set(project=project, user=user, role=Role.ANNOTATOR)
        tokens.append(Token.objects.create(user=user).key)
    errors, submitted = [], Counter()
    start = threading.Barrier(ANNOTATORS)

    def work(index: int):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {tokens[index]}")
        try:
            start.wait()
            task = client.post(f"/api/projects/{project.id}/tasks/next/", {}, format="json").json()["task"]
            while task is not None:
                tiers = [[candidate["id"]] for candidate in task["candidates"]]
                response = client.post(
                    f"/api/tasks/{task['id']}/submit/",
                    {"submit_key": f"{index}-{task['id']}", "tiers": tiers, "next": True},
                    format="json",
                )
                if response.status_code != 200:
                    errors.append((index, response.status_code, response.content[:300]))
                    return
                submitted[index] += 1
                task = response.json()["next"]["task"]
        except Exception as error:  # reported below; a thread must not die silently
            errors.append((index, repr(error)))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(ANNOTATORS)]
    for thread in threads:
        thread.start()
    helper = alongside() if alongside else None
    for thread in threads:
        thread.join(timeout=600)
    if helper is not None:
        stop.set()
        helper.join(timeout=60)
    assert not errors, errors[:5]
    gold_done = Task.objects.filter(item_id__in=gold_ids).count()
    assert sum(submitted.values()) == ITEMS * OVERLAP + gold_done
    assert len([count for count in submitted.values() if count]) > ANNOTATORS // 2  # the work was shared

    # Every real item judged by exactly OVERLAP distinct annotators, no duplicate rows.
    real = Ranking.objects.exclude(task__item_id__in=gold_ids)
    per_set = Counter(real.values_list("candidate_set_id", flat=True))
    assert len(per_set) == ITEMS and set(per_set.values()) == {OVERLAP}
    pairs = list(Ranking.objects.values_list("candidate_set_id", "annotator_id"))
    assert len(pairs) == len(set(pairs)) == ITEMS * OVERLAP + gold_done
    # No item handed out twice to one person (gold included), and nothing left leased or open.
    handed = list(Task.objects.values_list("item_id", "annotator_id"))
    assert len(handed) == len(set(handed))
    assert set(Task.objects.values_list("state", flat=True)) == {TaskState.SUBMITTED}
    assert not WorkItem.objects.filter(open_slots__gt=0, gold=False).exists()
    assert set(WorkItem.objects.filter(gold=False).values_list("done", flat=True)) == {OVERLAP}
    if gold:
        # Each annotator's gold stays within one task of the rate: a gold lease needs g + draw <= rate * (n + 1).
        tasks = Counter(Task.objects.values_list("annotator_id", flat=True))
        golds = Counter(Task.objects.filter(item_id__in=gold_ids).values_list("annotator_id", flat=True))
        assert all(golds[user] <= GOLD_RATE * n + 1 for user, n in tasks.items()), (golds, tasks)
        assert gold_done >= GOLD_RATE * sum(tasks.values()) - ANNOTATORS
