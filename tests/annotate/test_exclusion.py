"""Flagged or rejected messages stop all work about them, and an admin's clear brings it back."""

import threading

import pytest
from django.db import connections

from annotate.models import Message, Role, WorkItem
from annotate.services import accounts as account_services
from annotate.services import submits, tree
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
    submits.label_submit(message=reply, annotator=reviewer, flags=["toxic"])
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
            submits.label_submit(message=Message.objects.get(pk=reply.pk), annotator=user, flags=["spam"])
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
