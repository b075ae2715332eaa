"""Flagged or rejected messages stop all work about them, and an admin's clear brings it back."""

import threading

import pytest
from django.db import connections

from annotate.models import Message, Role, WorkItem
from annotate.services import accounts as account_services
from annotate.services import judgements, tree
from tests.annotate.factories import ranking_items

pytestmark = pytest.mark.django_db


def open_items(project):
    return sorted(WorkItem.objects.filter(project=project, open_slots__gt=0).values_list("kind", flat=True))


def test_a_fully_leased_item_stays_closed_after_its_lease_comes_back(api_as, owner, member, reviewer, project):
    account_services.project_settings_update(project=project, overlap=1)
    prompt = tree.message_create(project=project, parent=None, role="user", text="Hi", source="import")
    reply = tree.message_create(project=project, parent=prompt, role="assistant", text="Hello", source="model")
    task = api_as(member).post(f"/api/projects/{project.id}/tasks/next/", {"kind": "label"}, format="json").json()["task"]
    assert task["conversation"][-1]["id"] == reply.id
    judgements.label_submit(message=reply, annotator=reviewer, flags=["toxic"])
    assert api_as(member).post(f"/api/tasks/{task['id']}/skip/").status_code == 200
    assert api_as(owner).post(f"/api/projects/{project.id}/tasks/next/", {"kind": "label"}, format="json").json()["task"] is None


def test_excluding_a_prompt_closes_the_work_that_grew_under_it(owner, project):
    account_services.project_settings_update(project=project, replies_per_ranking=2)
    prompt = tree.message_create(project=project, parent=None, role="user", text="my phone is 555-0100", source="import")
    tree.message_create(project=project, parent=prompt, role="assistant", text="a", source="model")
    assert "label" in open_items(project)
    tree.message_exclude(message=prompt, reason="personal data")
    assert open_items(project) == []
    # New replies under it are kept but make no work and no ranking sets.
    tree.message_create(project=project, parent=prompt, role="assistant", text="b", source="model")
    assert open_items(project) == []
    assert not prompt.candidate_sets.exists()


def test_clearing_reopens_what_the_exclusion_closed(owner, project):
    candidate_set = ranking_items(project, 1)[0]
    reply = Message.objects.get(pk=candidate_set.message_ids[0])
    tree.message_exclude(message=reply, reason="flagged")
    assert open_items(project) == []
    tree.message_clear(message=reply)
    item = WorkItem.objects.get(candidate_set=candidate_set)
    assert (item.open_slots, item.closed_reason) == (item.needed, "")


def test_clearing_one_of_two_excluded_replies_keeps_their_set_closed(owner, project):
    candidate_set = ranking_items(project, 1)[0]
    first, second = (Message.objects.get(pk=pk) for pk in candidate_set.message_ids[:2])
    tree.message_exclude(message=first, reason="flagged")
    tree.message_exclude(message=second, reason="flagged")
    tree.message_clear(message=first)
    assert open_items(project) == []
    tree.message_clear(message=second)
    assert open_items(project) == ["ranking"]


def test_annotators_cannot_label_their_own_message(api_as, member, project):
    prompt = tree.message_create(project=project, parent=None, role="user", text="Hi", source="import")
    mine = tree.message_create(project=project, parent=prompt, role="assistant", text="Hello", source="annotator", author=member)
    response = api_as(member).post(f"/api/projects/{project.id}/messages/{mine.id}/labels/", {"quality": 5}, format="json")
    assert response.status_code == 400 and "your own message" in str(response.json())


def test_tree_hides_sources_and_excluded_text_from_annotators(api_as, member, reviewer, project):
    prompt = tree.message_create(project=project, parent=None, role="user", text="Hi", source="import")
    tree.message_create(project=project, parent=prompt, role="assistant", text="from a model", source="model")
    bad = tree.message_create(project=project, parent=prompt, role="assistant", text="secret", source="model")
    tree.message_exclude(message=bad, reason="personal data")
    url = f"/api/projects/{project.id}/trees/{prompt.id}/"
    turns = api_as(member).get(url).json()["messages"]
    assert all("source" not in turn for turn in turns)
    assert {turn["text"] for turn in turns} == {"Hi", "from a model", None}
    assert {turn["source"] for turn in api_as(reviewer).get(url).json()["messages"]} == {"import", "model"}


def test_a_kind_turned_off_in_the_mix_cannot_be_asked_for(api_as, member, project):
    account_services.project_settings_update(project=project, task_mix={"prompt": 0})
    response = api_as(member).post(f"/api/projects/{project.id}/tasks/next/", {"kind": "prompt"}, format="json")
    assert response.status_code == 400 and "no prompt tasks" in str(response.json())


def test_bad_numbers_and_bytes_are_refused_with_400(api_as, owner, member, project):
    reply = ranking_items(project, 1)[0].message_ids[0]
    huge = api_as(member).post(
        f"/api/projects/{project.id}/messages/{reply}/labels/", {"quality": 3, "time_spent_ms": 10**10}, format="json"
    )
    assert huge.status_code == 400 and "time_spent_ms" in huge.json()
    weights = api_as(owner).patch(f"/api/projects/{project.id}/settings/", {"task_mix": {"ranking": 1e308}}, format="json")
    assert weights.status_code == 400
    assert api_as(member).post("/api/invites/a%00b/accept/").status_code == 400
    from django.test import Client

    assert Client().get("/invite/a%00b/").status_code == 404


def test_per_set_agreement_leaves_imported_rankings_out(api_as, reviewer, project):
    from annotate.models import Ranking

    candidate_set = ranking_items(project, 1)[0]
    a, b, c, d = candidate_set.message_ids
    Ranking.objects.create(candidate_set=candidate_set, external_annotator="x:1", tiers=[[a], [b], [c], [d]])
    Ranking.objects.create(candidate_set=candidate_set, external_annotator="x:2", tiers=[[d], [c], [b], [a]])
    body = api_as(reviewer).get(f"/api/projects/{project.id}/candidate-sets/{candidate_set.id}/consensus/").json()
    assert body["kendall_w"] is None and body["rankings"] == 2


def test_two_admins_editing_guidelines_at_once_get_two_versions(owner, project):
    from annotate.models import Project

    stale_a, stale_b = Project.objects.get(pk=project.pk), Project.objects.get(pk=project.pk)
    account_services.project_update_guidelines(project=stale_a, guidelines="A")
    account_services.project_update_guidelines(project=stale_b, guidelines="B")
    project.refresh_from_db()
    assert (project.guidelines, project.guideline_version) == ("B", 3)


@pytest.mark.django_db(transaction=True)
def test_two_people_flagging_at_once_reach_a_threshold_of_two(make_user, owner, project):
    account_services.project_settings_update(project=project, flag_threshold=2)
    reply = Message.objects.get(pk=ranking_items(project, 1)[0].message_ids[0])
    flaggers = [make_user(f"f{i}") for i in range(2)]
    for user in flaggers:
        account_services.membership_set(project=project, user=user, role=Role.ANNOTATOR)
    start = threading.Barrier(2)
    errors = []

    def flag(user):
        try:
            start.wait()
            judgements.label_submit(message=Message.objects.get(pk=reply.pk), annotator=user, flags=["spam"])
        except Exception as error:
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=flag, args=(user,)) for user in flaggers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    reply.refresh_from_db()
    assert reply.excluded
