"""Active learning in the queue: priorities order the lease, adaptive overlap, admins' holds, one lease each."""

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from annotate.models import PriorityHold, Role, Task, TaskKind, TaskState, WorkItem
from annotate.services import accounts as account_services
from annotate.services import priority, queue
from annotate.services.submits import task_submit
from tests.annotate.factories import ranking_items

pytestmark = pytest.mark.django_db

ONLY_RANKINGS = {"ranking": 1, "prompt": 0, "demonstration": 0, "compare": 0, "label": 0, "review": 0}


@pytest.fixture(autouse=True)
def adapt_at_every_lease(monkeypatch):
    """The lease looks at judged sets' agreement at most once a second per process; these tests
    lease faster than that and want each look to happen."""
    monkeypatch.setattr(priority, "ADAPT_EVERY_SECONDS", 0.0)


@pytest.fixture
def annotators(make_user, project):
    users = []
    for name in ("ann", "ben", "cat", "dan"):
        user = make_user(name)
        account_services.membership_set(project=project, user=user, role=Role.ANNOTATOR)
        users.append(user)
    return users


def lease(project, user, kind=None):
    return queue.task_next(project=project, annotator=user, role=Role.ANNOTATOR, kind=kind)


def judge(task, user, order):
    """Submit a ranking of the task's set, `order` naming the set's replies by index, best first."""
    ids = WorkItem.objects.get(pk=task.item_id).candidate_set.message_ids
    task_submit(task_id=task.id, annotator=user, submit_key=f"k{task.id}", payload={"tiers": [[ids[i]] for i in order]})


def items_of(sets):
    return [WorkItem.objects.get(candidate_set=candidate_set) for candidate_set in sets]


def test_the_lease_takes_the_most_uncertain_set_first_and_the_oldest_among_equals(project, annotators):
    account_services.project_settings_update(
        project=project, overlap=1, task_mix=ONLY_RANKINGS,
        priority_weights={"uncertainty": 2.0, "disagreement": 1.0, "coverage": 0.0},
    )
    items = items_of(ranking_items(project, 4))
    # The training side measured the reward model: item 2 is the one it is least sure of, 3 next.
    priority.priority_signals_write(project=project, signals={items[2].id: {"uncertainty": 0.9, "gap": 0.05},
                                                              items[3].id: {"uncertainty": 0.4}})
    result = priority.priorities_recompute(project=project)
    assert result["complete"] and result["scored"] == 4

    got = []
    for user in annotators:
        task = lease(project, user)
        got.append(task.item_id)
        judge(task, user, [0, 1, 2, 3])
    # Highest priority first; items 0 and 1 tie at 0 and go oldest first.
    assert got == [items[2].id, items[3].id, items[0].id, items[1].id]

    why = WorkItem.objects.get(pk=items[2].id).priority_why
    assert why["sources"]["uncertainty"] == {"value": 0.9, "weight": 2.0, "points": 1.8}
    assert why["sources"]["coverage"]["weight"] == 0.0 and why["total"] == 1.8
    assert why["measured"] == {"gap": 0.05}


def test_coverage_puts_prompts_with_few_judgements_first(project, annotators):
    account_services.project_settings_update(
        project=project, overlap=2, task_mix=ONLY_RANKINGS,
        priority_weights={"uncertainty": 0.0, "disagreement": 0.0, "coverage": 1.0},
    )
    items = items_of(ranking_items(project, 3))
    ann = annotators[0]
    first = lease(project, ann)
    assert first.item_id == items[0].id  # all equal before a recompute: oldest first
    judge(first, ann, [0, 1, 2, 3])
    priority.priorities_recompute(project=project)
    # The prompt with a judgement already falls behind the two nobody has judged.
    ordered = [item.id for item in WorkItem.objects.filter(project=project).order_by("-priority", "created_at", "id")]
    assert ordered == [items[1].id, items[2].id, items[0].id]
    assert WorkItem.objects.get(pk=items[0].id).priority_why["judgements_of_prompt"] == 1
    assert lease(project, annotators[1]).item_id == items[1].id


def test_a_disputed_set_earns_one_more_annotator_up_to_the_cap_and_an_agreed_one_closes(project, annotators):
    account_services.project_settings_update(
        project=project, overlap=2, task_mix=ONLY_RANKINGS, adaptive_overlap_cap=3, disputed_below=0.5
    )
    disputed, agreed = items_of(ranking_items(project, 2))
    ann, ben, cat, dan = annotators
    for user, disputed_order in ((ann, [0, 1, 2, 3]), (ben, [3, 2, 1, 0])):
        for _ in range(2):
            task = lease(project, user)
            judge(task, user, disputed_order if task.item_id == disputed.id else [0, 1, 2, 3])

    # Both sets have their overlap of 2: the disputed one (W 0) reopens for a third person.
    task = lease(project, cat)
    assert task is not None and task.item_id == disputed.id
    disputed.refresh_from_db()
    agreed.refresh_from_db()
    assert (disputed.needed, agreed.needed, agreed.open_slots, agreed.overlap_checked) == (3, 2, 0, 2)
    judge(task, cat, [0, 1, 3, 2])
    # Three judgements still disagree, but the cap is 3: nobody else gets either set.
    assert lease(project, dan) is None
    disputed.refresh_from_db()
    assert (disputed.needed, disputed.done, disputed.open_slots) == (3, 3, 0)


def test_with_adaptive_overlap_off_a_disputed_set_closes_at_the_overlap(project, annotators):
    account_services.project_settings_update(project=project, overlap=2, task_mix=ONLY_RANKINGS)
    (item,) = items_of(ranking_items(project, 1))
    ann, ben, cat, _ = annotators
    judge(lease(project, ann), ann, [0, 1, 2, 3])
    judge(lease(project, ben), ben, [3, 2, 1, 0])
    assert lease(project, cat) is None
    assert priority.priorities_recompute(project=project)["extended"] == 0
    item.refresh_from_db()
    assert (item.needed, item.done) == (2, 2)


def test_disagreement_of_a_half_judged_set_raises_its_priority(project, annotators):
    account_services.project_settings_update(
        project=project, overlap=3, task_mix=ONLY_RANKINGS,
        priority_weights={"uncertainty": 0.0, "disagreement": 1.0, "coverage": 0.0},
    )
    split, unanimous = items_of(ranking_items(project, 2))
    ann, ben, cat, _ = annotators
    for user, order in ((ann, [0, 1, 2, 3]), (ben, [3, 2, 1, 0])):
        for _ in range(2):
            task = lease(project, user)
            judge(task, user, order if task.item_id == split.id else [0, 1, 2, 3])
    priority.priorities_recompute(project=project)
    split.refresh_from_db()
    unanimous.refresh_from_db()
    assert split.priority_why["kendall_w"] == 0.0 and split.priority == 1.0
    assert unanimous.priority_why["kendall_w"] == 1.0 and unanimous.priority == 0.0
    assert lease(project, cat).item_id == split.id


def test_pin_boost_freeze_and_release(owner, project, annotators):
    account_services.project_settings_update(project=project, overlap=1, task_mix=ONLY_RANKINGS)
    items = items_of(ranking_items(project, 5))
    ids = [item.id for item in items]
    priority.priority_signals_write(project=project, signals={ids[0]: {"uncertainty": 1.0}, ids[1]: {"uncertainty": 0.5}})
    priority.priorities_recompute(project=project)

    def order():
        return list(WorkItem.objects.filter(project=project).order_by("-priority", "created_at", "id").values_list("id", flat=True))

    # Coverage is equal (1.0 each), so uncertainty decides: 0, 1, then the rest oldest first.
    assert order() == ids
    priority.priority_pin(project=project, item_ids=[ids[4], ids[3]])
    assert order()[:2] == [ids[4], ids[3]]
    priority.priority_boost(project=project, item_ids=[ids[2]], amount=5.0)
    assert order()[:3] == [ids[4], ids[3], ids[2]]
    # Frozen: a recompute after new signals does not move item 1 above item 0.
    priority.priority_freeze(project=project, item_ids=[ids[1]])
    priority.priority_signals_write(project=project, signals={ids[1]: {"uncertainty": 1.0}, ids[0]: {"uncertainty": 0.0}})
    priority.priorities_recompute(project=project)
    frozen = WorkItem.objects.get(pk=ids[1])
    assert frozen.priority_hold == PriorityHold.FROZEN and frozen.priority == 1.5  # as it was
    assert order() == [ids[4], ids[3], ids[2], ids[1], ids[0]]
    # Released, pins and freeze give way to the computed order again.
    priority.priority_release(project=project, item_ids=[ids[4], ids[3], ids[1]])
    assert order() == [ids[2], ids[1], ids[0], ids[3], ids[4]]
    assert lease(project, annotators[0]).item_id == ids[2]

    # An item of another project is refused, and nothing is written.
    other = account_services.project_create(name="Other", created_by=owner)
    (foreign,) = items_of(ranking_items(other, 1))
    with pytest.raises(ValidationError):
        priority.priority_pin(project=project, item_ids=[ids[0], foreign.id])
    assert WorkItem.objects.get(pk=ids[0]).priority_hold == PriorityHold.NONE


def test_the_queue_order_api_shows_why_to_admins_only(api_as, owner, member, outsider, project):
    account_services.project_settings_update(project=project, overlap=1, task_mix=ONLY_RANKINGS)
    items = items_of(ranking_items(project, 3))
    priority.priority_signals_write(project=project, signals={items[1].id: {"uncertainty": 0.8}})
    priority.priorities_recompute(project=project)
    url = f"/api/projects/{project.id}/queue/"
    assert api_as(outsider).get(url).status_code == 404
    assert api_as(member).get(url).status_code == 403
    body = api_as(owner).get(url).json()
    assert [row["id"] for row in body["results"]] == [items[1].id, items[0].id, items[2].id]
    assert body["results"][0]["priority_why"]["sources"]["uncertainty"]["value"] == 0.8

    assert api_as(member).post(f"{url}pin/", {"item_ids": [items[2].id]}, format="json").status_code == 403
    response = api_as(owner).post(f"{url}pin/", {"item_ids": [items[2].id]}, format="json")
    assert response.status_code == 200 and response.json() == {"changed": 1}
    response = api_as(owner).post(f"{url}boost/", {"item_ids": [items[0].id], "amount": 0.5}, format="json")
    assert response.status_code == 200
    assert [row["id"] for row in api_as(owner).get(url).json()["results"]] == [items[2].id, items[1].id, items[0].id]
    assert api_as(owner).post(f"{url}freeze/", {"item_ids": [999_999]}, format="json").status_code == 400


def test_choosing_another_kind_releases_the_lease_held(project, annotators):
    account_services.project_settings_update(project=project, overlap=1)
    (item,) = items_of(ranking_items(project, 1))
    ann, ben = annotators[:2]
    held = lease(project, ann, kind=TaskKind.RANKING)
    assert held.item_id == item.id
    # "Only these": nothing of that kind is waiting, so the ranking stays leased.
    assert lease(project, ann, kind=TaskKind.LABEL) is None
    assert Task.objects.get(pk=held.id).state == TaskState.LEASED
    # A new prompt is always there: taking it releases the ranking, whose slot goes back.
    prompt_task = lease(project, ann, kind=TaskKind.PROMPT)
    assert prompt_task.kind == TaskKind.PROMPT
    assert Task.objects.get(pk=held.id).state == TaskState.EXPIRED
    assert list(Task.objects.filter(annotator=ann, state=TaskState.LEASED)) == [Task.objects.get(pk=prompt_task.id)]
    item.refresh_from_db()
    assert item.open_slots == 1
    assert lease(project, ben, kind=TaskKind.RANKING).item_id == item.id
    # Going back to rankings: the prompt lease is released, and none is left but ben's.
    assert lease(project, ann, kind=TaskKind.RANKING) is None
    assert Task.objects.get(pk=prompt_task.id).state == TaskState.LEASED
    # Asking again without a kind returns the one held.
    assert lease(project, ann).id == prompt_task.id


def test_the_database_refuses_a_second_lease_in_one_project(project, annotators):
    ann = annotators[0]
    first = lease(project, ann, kind=TaskKind.PROMPT)
    with pytest.raises(IntegrityError), transaction.atomic():
        Task.objects.create(project=project, kind=TaskKind.PROMPT, annotator=ann, lease_expires_at=first.lease_expires_at,
                            guideline_version=1)


def test_admins_set_the_priority_weights_and_adaptive_overlap_in_the_project_settings(api_as, owner, member, project):
    url = f"/api/projects/{project.id}/settings/"
    assert api_as(member).get(url).json()["priority_weights"] == {"uncertainty": 1.0, "disagreement": 1.0, "coverage": 1.0}
    refused = api_as(owner).patch(url, {"priority_weights": {"luck": 1}}, format="json")
    assert refused.status_code == 400 and "luck" in str(refused.json())
    assert api_as(owner).patch(url, {"adaptive_overlap_cap": 21}, format="json").status_code == 400
    project.settings.refresh_from_db()
    assert (project.settings.priority_weights, project.settings.adaptive_overlap_cap) == ({}, 0)
    body = api_as(owner).patch(
        url, {"priority_weights": {"coverage": 0}, "adaptive_overlap_cap": 4, "disputed_below": 0.3}, format="json"
    ).json()
    assert body["priority_weights"] == {"uncertainty": 1.0, "disagreement": 1.0, "coverage": 0.0}
    assert (body["adaptive_overlap_cap"], body["disputed_below"]) == (4, 0.3)
    assert api_as(member).patch(url, {"adaptive_overlap_cap": 0}, format="json").status_code == 403


# ---------------------------------------------------------------------------------------------
# The training side (training.services.priorities): the reward model's uncertainty, measured.


def test_uncertainty_signals_read_gaps_passes_and_two_versions():
    from training.services.priorities import discordance, gap_uncertainty, passes_uncertainty

    assert gap_uncertainty([0.3, 0.3]) == 1.0 and gap_uncertainty([10.0, -10.0]) < 1e-6
    assert gap_uncertainty([0.0, 0.1, 5.0]) > gap_uncertainty([0.0, 2.5, 5.0])
    assert passes_uncertainty([[1.0, 0.0], [0.0, 1.0]]) == 1.0 and passes_uncertainty([[1.0, 0.0]] * 3) == 0.0
    assert discordance([3.0, 2.0, 1.0], [1.0, 2.0, 3.0]) == 1.0 and discordance([3.0, 2.0], [9.0, 1.0]) == 0.0


def reward_version(project, number, tmp_path):
    """A randomly initialised tiny GPT reward model with our tokenizer, registered as a version.

    Untrained, but with a wide score head: different texts score far apart, equal texts equally.
    """
    import torch
    from django.conf import settings
    from transformers import GPT2ForSequenceClassification

    from training.models import ModelKind, ModelVersion
    from training.trainers.scratch import gpt_from_config, tokenizer_train

    torch.manual_seed(number)
    tokenizer = tokenizer_train([f"reply {i} to {j} What is {i} + {i}?" for i in range(30) for j in range(30)],
                                vocab_size=200)
    config = gpt_from_config(tokenizer, layers=1, heads=2, width=16, context=128).config
    config.num_labels = 1
    model = GPT2ForSequenceClassification(config)
    torch.nn.init.normal_(model.score.weight, std=50.0)
    folder = f"project-{project.id}/test/reward-{number}"
    model.save_pretrained(settings.MODEL_STORE / folder)
    tokenizer.save_pretrained(settings.MODEL_STORE / folder)
    return ModelVersion.objects.create(project=project, kind=ModelKind.REWARD, version=number, folder=folder,
                                       config={"max_length": 64})


@pytest.mark.training
def test_the_reward_model_scores_open_sets_and_its_doubt_leads_the_queue(project, annotators, tmp_path, settings):
    from annotate.models import Message
    from training.services.priorities import priorities_refresh

    settings.MODEL_STORE = tmp_path / "models"
    account_services.project_settings_update(
        project=project, overlap=1, task_mix=ONLY_RANKINGS,
        priority_weights={"uncertainty": 1.0, "disagreement": 0.0, "coverage": 0.0},
    )
    items = items_of(ranking_items(project, 4))
    # The last set's replies all say the same: no score gap at all, the reward model cannot order it.
    Message.objects.filter(pk__in=items[3].candidate_set.message_ids).update(text="the same reply")
    reward_version(project, 1, tmp_path)

    result = priorities_refresh(project=project, signal="gap")
    assert (result["open_sets"], result["scored"], result["reward_model"]) == (4, 4, "reward-v1")
    tied = WorkItem.objects.get(pk=items[3].id)
    assert tied.signals["uncertainty"] == 1.0 and tied.signals["smallest_gap"] == 0.0
    assert set(tied.signals["reward_scores"]) == {str(i) for i in tied.candidate_set.message_ids}
    assert tied.priority_why["sources"]["uncertainty"]["points"] == 1.0
    assert all(0 <= WorkItem.objects.get(pk=item.id).signals["uncertainty"] <= 1 for item in items)
    assert lease(project, annotators[0]).item_id == items[3].id

    # Monte Carlo dropout: the passes disagree somewhere, and say how many dropout places there were.
    priorities_refresh(project=project, signal="dropout", passes=4)
    measured = WorkItem.objects.get(pk=items[0].id).signals
    assert measured["uncertainty_signal"] == "dropout" and measured["dropout_places"] > 0
    # Two reward versions: the share of pairs they order differently.
    reward_version(project, 2, tmp_path)
    priorities_refresh(project=project, signal="versions")
    measured = WorkItem.objects.get(pk=items[1].id).signals
    assert measured["versus"] == "reward-v1" and measured["reward_model"] == "reward-v2"


@pytest.mark.django_db(transaction=True)
def test_two_requests_of_one_annotator_at_once_end_with_one_lease_both_see(project, annotators):
    import threading

    from django.db import connections

    account_services.project_settings_update(project=project, overlap=1, task_mix=ONLY_RANKINGS)
    ranking_items(project, 6)
    ann = annotators[0]
    got, errors, start = [], [], threading.Barrier(4)

    def ask():
        try:
            start.wait()
            got.append(lease(project, ann).id)
        except Exception as error:  # reported below
            errors.append(repr(error))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    leased = list(Task.objects.filter(annotator=ann, state=TaskState.LEASED).values_list("id", flat=True))
    assert len(leased) == 1 and set(got) == set(leased)
    # Nothing was released on the way: every slot but the one leased is still open.
    assert sum(WorkItem.objects.filter(project=project).values_list("open_slots", flat=True)) == 5
