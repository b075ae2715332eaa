"""The queue as annotators meet it, through the API: every kind, leases, skips, idempotency."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotate.models import (
    Label,
    Message,
    Ranking,
    Review,
    ReviewState,
    Role,
    Task,
    TaskState,
    WorkItem,
)
from annotate.services import accounts as account_services
from annotate.services import tree
from tests.annotate.factories import ranking_items
from tests.helpers import wait_until

pytestmark = pytest.mark.django_db


def only(project, **mix):
    """Let the project hand out only the given kinds."""
    weights = {kind: 0 for kind in ("prompt", "demonstration", "ranking", "compare", "label", "review")}
    weights.update(mix)
    account_services.project_settings_update(project=project, task_mix=weights)


def next_task(api, project, kind=None):
    body = {"kind": kind} if kind else {}
    response = api.post(f"/api/projects/{project.id}/tasks/next/", body, format="json")
    assert response.status_code == 200, response.content
    return response.json()["task"]


def submit(api, task, key="k1", **payload):
    return api.post(f"/api/tasks/{task['id']}/submit/", {"submit_key": key, **payload}, format="json")


@pytest.fixture
def second_annotator(make_user, project):
    user = make_user("second")
    account_services.membership_set(project=project, user=user, role=Role.ANNOTATOR)
    return user


def test_prompt_demonstration_review_and_ranking_flow(api_as, owner, member, reviewer, second_annotator, project):
    account_services.project_settings_update(project=project, replies_per_ranking=2, overlap=1)
    task = next_task(api_as(member), project, "prompt")
    assert task["kind"] == "prompt" and task["conversation"] == []
    response = submit(api_as(member), task, text="What is 12 * 12?", time_spent_ms=4200)
    assert response.status_code == 200, response.content
    prompt = Message.objects.get(pk=response.json()["result"]["message_id"])
    assert (prompt.role, prompt.author, prompt.guideline_version, prompt.time_spent_ms) == ("user", member, 1, 4200)

    # Nobody writes the ideal reply to their own prompt.
    assert next_task(api_as(member), project, "demonstration") is None
    demo_task = next_task(api_as(second_annotator), project, "demonstration")
    assert demo_task["conversation"] == [{"id": prompt.id, "role": "user", "text": "What is 12 * 12?"}]
    reply = submit(api_as(second_annotator), demo_task, text="12 * 12 = 144.").json()["result"]
    demonstration = Message.objects.get(pk=reply["message_id"])
    assert demonstration.review_state == ReviewState.PENDING

    # Annotators do not review; the reviewer does, and sees the whole conversation.
    assert api_as(member).post(f"/api/projects/{project.id}/tasks/next/", {"kind": "review"}, format="json").status_code == 403
    review_task = next_task(api_as(reviewer), project, "review")
    assert [turn["text"] for turn in review_task["conversation"]] == ["What is 12 * 12?", "12 * 12 = 144."]
    assert submit(api_as(reviewer), review_task, accepted=True).status_code == 200
    demonstration.refresh_from_db()
    assert demonstration.review_state == ReviewState.ACCEPTED

    # A second reply under the prompt makes a ranking set of K=2 with both replies.
    owner_demo = next_task(api_as(owner), project, "demonstration")
    assert owner_demo is None  # demonstrations_per_prompt=1: the item is done
    Message.objects.create(
        project=project, parent=prompt, root=prompt, depth=1, role="assistant", text="144", source="import"
    )
    tree.candidate_sets_form(parent=prompt)
    # second_annotator wrote one of the replies: they never get to rank it.
    assert next_task(api_as(second_annotator), project, "ranking") is None
    rank_task = next_task(api_as(member), project, "ranking")
    ids = [candidate["id"] for candidate in rank_task["candidates"]]
    assert sorted(ids) == sorted([demonstration.id, prompt.children.exclude(pk=demonstration.id).get().id])
    assert submit(api_as(member), rank_task, tiers=[[demonstration.id], [ids[0] if ids[0] != demonstration.id else ids[1]]]).status_code == 200
    assert Ranking.objects.get(annotator=member).tiers[0] == [demonstration.id]


def test_compare_maps_choices_to_rankings_of_two(api_as, member, project):
    only(project, compare=1)
    ranking_items(project, 4, k=2, overlap=1, kind="compare")
    choices = {"A": None, "B": None, "tie": None, "both_bad": None}
    for choice in choices:
        task = next_task(api_as(member), project)
        a, b = (c["id"] for c in task["candidates"])
        assert [c["label"] for c in task["candidates"]] == ["A", "B"]
        assert submit(api_as(member), task, choice=choice).status_code == 200
        choices[choice] = (a, b, Ranking.objects.get(task_id=task["id"]))
    a, b, ranking = choices["A"]
    assert ranking.tiers == [[a], [b]]
    a, b, ranking = choices["B"]
    assert ranking.tiers == [[b], [a]]
    a, b, ranking = choices["tie"]
    assert ranking.tiers == [[a, b]]
    assert choices["both_bad"][2].all_bad and choices["both_bad"][2].tiers == []


def test_a_ranking_must_place_every_reply_once(api_as, member, project):
    only(project, ranking=1)
    ranking_items(project, 1)
    task = next_task(api_as(member), project)
    ids = [c["id"] for c in task["candidates"]]
    cases = [
        ({"tiers": [ids[:3]]}, "missing"),
        ({"tiers": [ids[:2], ids[1:]]}, "more than once"),
        ({"tiers": [ids, [999999]]}, "not in the set [999999]"),
        ({"tiers": [ids]}, "all replies tied"),
        ({"tiers": [[ids[0]], ids[1:]], "all_bad": True}, "not both"),
    ]
    for payload, message in cases:
        response = submit(api_as(member), task, **payload)
        assert response.status_code == 400 and message in str(response.json()), (payload, response.json())
    assert not Ranking.objects.exists()
    assert Task.objects.get(pk=task["id"]).state == TaskState.LEASED
    ok = submit(api_as(member), task, tiers=[[ids[0]], [ids[1], ids[2]], [ids[3]]], time_spent_ms=9000)
    assert ok.status_code == 200
    ranking = Ranking.objects.get()
    assert ranking.tiers == [[ids[0]], [ids[1], ids[2]], [ids[3]]]
    assert (ranking.guideline_version, ranking.time_spent_ms) == (1, 9000)


def test_all_bad_ranking(api_as, member, project):
    only(project, ranking=1)
    ranking_items(project, 1)
    task = next_task(api_as(member), project)
    assert submit(api_as(member), task, all_bad=True).status_code == 200
    assert Ranking.objects.get().all_bad


def test_overlap_gives_each_item_to_exactly_that_many_distinct_people(api_as, make_user, project):
    only(project, ranking=1)
    account_services.project_settings_update(project=project, overlap=2)
    ranking_items(project, 1)
    people = [make_user(f"a{i}") for i in range(3)]
    for person in people:
        account_services.membership_set(project=project, user=person, role=Role.ANNOTATOR)
    first, second = next_task(api_as(people[0]), project), next_task(api_as(people[1]), project)
    assert first["id"] != second["id"]
    assert next_task(api_as(people[2]), project) is None  # both slots are leased
    # Asking again returns the task you already hold, not a new one.
    assert next_task(api_as(people[0]), project)["id"] == first["id"]
    for person, task in ((people[0], first), (people[1], second)):
        ids = [c["id"] for c in task["candidates"]]
        assert submit(api_as(person), task, tiers=[[i] for i in ids]).status_code == 200
    assert next_task(api_as(people[0]), project) is None  # never the same item twice
    assert next_task(api_as(people[2]), project) is None  # done: it left the queue
    assert WorkItem.objects.get().done == 2


def test_an_expired_lease_goes_back_to_the_pool_and_its_late_submit_is_refused(api_as, member, second_annotator, project):
    only(project, ranking=1)
    account_services.project_settings_update(project=project, overlap=1)
    ranking_items(project, 1)
    task = next_task(api_as(member), project)
    assert next_task(api_as(second_annotator), project) is None
    # Well in the past: inside the test's transaction PostgreSQL's now() is the transaction's start,
    # which on a loaded machine can be seconds before Python's clock.
    Task.objects.filter(pk=task["id"]).update(lease_expires_at=timezone.now() - timedelta(hours=1))
    # Expired leases are collected at most once a second (queue.RECLAIM_EVERY_SECONDS).
    again = wait_until(lambda: next_task(api_as(second_annotator), project), timeout=30,
                       what="the expired lease to go back to the pool")
    assert again["id"] != task["id"]
    ids = [c["id"] for c in task["candidates"]]
    late = submit(api_as(member), task, tiers=[[i] for i in ids])
    assert late.status_code == 409 and "expired" in str(late.json())
    assert not Ranking.objects.exists()
    assert Task.objects.get(pk=task["id"]).state == TaskState.EXPIRED


def test_a_lease_that_ran_out_unnoticed_is_refused_at_submit(api_as, member, project):
    only(project, ranking=1)
    ranking_items(project, 1)
    task = next_task(api_as(member), project)
    Task.objects.filter(pk=task["id"]).update(lease_expires_at=timezone.now() - timedelta(hours=1))
    ids = [c["id"] for c in task["candidates"]]
    response = submit(api_as(member), task, tiers=[[i] for i in ids])
    assert response.status_code == 409 and "lease expired" in str(response.json())
    assert Task.objects.get(pk=task["id"]).state == TaskState.EXPIRED
    assert WorkItem.objects.get().open_slots == 2  # its slot is free again


def test_skip_is_recorded_and_the_item_is_not_offered_again(api_as, member, second_annotator, project):
    only(project, ranking=1)
    account_services.project_settings_update(project=project, overlap=1)
    ranking_items(project, 1)
    task = next_task(api_as(member), project)
    response = api_as(member).post(f"/api/tasks/{task['id']}/skip/")
    assert response.status_code == 200 and response.json()["state"] == "skipped"
    assert next_task(api_as(member), project) is None
    assert next_task(api_as(second_annotator), project) is not None


def test_a_replayed_submit_creates_nothing_and_another_key_is_refused(api_as, member, project):
    only(project, ranking=1)
    ranking_items(project, 1)
    task = next_task(api_as(member), project)
    tiers = [[c["id"]] for c in task["candidates"]]
    first = submit(api_as(member), task, key="retry-me", tiers=tiers)
    replay = submit(api_as(member), task, key="retry-me", tiers=tiers)
    assert first.status_code == replay.status_code == 200
    assert replay.json()["result"] == first.json()["result"]
    assert Ranking.objects.count() == 1 and WorkItem.objects.get().done == 1
    other = submit(api_as(member), task, key="another", tiers=tiers)
    assert other.status_code == 409 and "already submitted" in str(other.json())
    assert Ranking.objects.count() == 1


def test_a_foreign_lease_is_refused(api_as, member, second_annotator, outsider, project):
    only(project, ranking=1)
    ranking_items(project, 1)
    task = next_task(api_as(member), project)
    tiers = [[c["id"]] for c in task["candidates"]]
    foreign = submit(api_as(second_annotator), task, tiers=tiers)
    assert foreign.status_code == 403 and "someone else" in str(foreign.json())
    assert submit(api_as(outsider), task, tiers=tiers).status_code == 404
    assert api_as(second_annotator).post(f"/api/tasks/{task['id']}/skip/").status_code == 403
    assert api_as(second_annotator).get(f"/api/tasks/{task['id']}/").status_code == 403
    assert not Ranking.objects.exists()


def test_submit_with_next_returns_the_next_task(api_as, member, project):
    only(project, ranking=1)
    ranking_items(project, 2)
    task = next_task(api_as(member), project)
    response = submit(api_as(member), task, tiers=[[c["id"]] for c in task["candidates"]], next=True)
    following = response.json()["next"]["task"]
    assert following["kind"] == "ranking" and following["id"] != task["id"]


def test_labels_and_flags_exclude_at_the_threshold_and_an_admin_clears(api_as, owner, member, second_annotator, project):
    account_services.project_settings_update(project=project, flag_threshold=2)
    reply_id = ranking_items(project, 1)[0].message_ids[0]
    url = f"/api/projects/{project.id}/messages/{reply_id}/labels/"
    first = api_as(member).post(url, {"flags": ["toxic"], "quality": 1}, format="json")
    assert first.status_code == 201 and first.json()["excluded"] is False
    bad = api_as(member).post(url, {"flags": ["rude"]}, format="json")
    assert bad.status_code == 400 and "rude" in str(bad.json())
    second = api_as(second_annotator).post(url, {"flags": ["spam"]}, format="json")
    assert second.json()["excluded"] is True
    assert WorkItem.objects.get(candidate_set__isnull=False).open_slots == 0  # no longer handed out
    assert api_as(member).post(f"/api/projects/{project.id}/messages/{reply_id}/clear/").status_code == 403
    cleared = api_as(owner).post(f"/api/projects/{project.id}/messages/{reply_id}/clear/")
    assert cleared.json()["excluded"] is False
    assert Label.objects.filter(message_id=reply_id).count() == 2


def test_label_task_records_quality(api_as, member, project):
    only(project, label=1)
    reply = ranking_items(project, 1)[0].message_ids[0]
    tree.work_item_create(project=project, kind="label", needed=1, message=Message.objects.get(pk=reply))
    task = next_task(api_as(member), project)
    assert task["conversation"][-1]["id"] == reply
    assert submit(api_as(member), task, quality=4, time_spent_ms=1500).status_code == 200
    label = Label.objects.get()
    assert (label.quality, label.flags, label.time_spent_ms, label.guideline_version) == (4, [], 1500, 1)


def test_a_rejected_demonstration_is_excluded_and_needs_a_reason(api_as, member, reviewer, project):
    only(project, review=1)
    prompt = tree.message_create(project=project, parent=None, role="user", text="Hi", source="import")
    demo = tree.message_create(project=project, parent=prompt, role="assistant", text="Go away", source="annotator", author=member)
    task = next_task(api_as(reviewer), project, "review")
    no_reason = submit(api_as(reviewer), task, accepted=False)
    assert no_reason.status_code == 400 and "say why" in str(no_reason.json())
    assert submit(api_as(reviewer), task, accepted=False, comment="rude", key="k2").status_code == 200
    demo.refresh_from_db()
    assert demo.excluded and demo.review_state == ReviewState.REJECTED
    assert Review.objects.get().comment == "rude"


def test_history_lists_my_tasks_only(api_as, member, second_annotator, project):
    only(project, ranking=1)
    ranking_items(project, 2)
    next_task(api_as(member), project)
    next_task(api_as(second_annotator), project)
    history = api_as(member).get(f"/api/projects/{project.id}/tasks/mine/").json()
    assert history["count"] == 1
    assert api_as(member).get(f"/api/projects/{project.id}/counts/mine/").json() == {"today": 0, "total": 0}


def test_guideline_version_in_force_when_leased_is_recorded(api_as, owner, member, project):
    only(project, ranking=1)
    ranking_items(project, 1)
    task = next_task(api_as(member), project)
    account_services.project_update_guidelines(project=project, guidelines="New rules")
    submit(api_as(member), task, tiers=[[c["id"]] for c in task["candidates"]])
    assert Ranking.objects.get().guideline_version == 1
    ranking_items(project, 1)
    task2 = next_task(api_as(member), project)
    assert task2["guideline_version"] == 2


def test_annotators_cannot_label_their_own_message(api_as, member, project):
    prompt = tree.message_create(project=project, parent=None, role="user", text="Hi", source="import")
    mine = tree.message_create(project=project, parent=prompt, role="assistant", text="Hello", source="annotator", author=member)
    response = api_as(member).post(f"/api/projects/{project.id}/messages/{mine.id}/labels/", {"quality": 5}, format="json")
    assert response.status_code == 400 and "your own message" in str(response.json())


def test_a_label_with_an_impossible_time_spent_is_refused_with_400(api_as, member, project):
    reply = ranking_items(project, 1)[0].message_ids[0]
    huge = api_as(member).post(
        f"/api/projects/{project.id}/messages/{reply}/labels/", {"quality": 3, "time_spent_ms": 10**10}, format="json"
    )
    assert huge.status_code == 400 and "time_spent_ms" in huge.json()


def test_a_kind_turned_off_in_the_mix_cannot_be_asked_for(api_as, member, project):
    account_services.project_settings_update(project=project, task_mix={"prompt": 0})
    response = api_as(member).post(f"/api/projects/{project.id}/tasks/next/", {"kind": "prompt"}, format="json")
    assert response.status_code == 400 and "no prompt tasks" in str(response.json())
