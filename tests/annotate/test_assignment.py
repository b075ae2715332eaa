"""A batch of items assigned to named annotators (issue 19, for the lead): the one lease statement offers them to
nobody else, until the assignment is lifted."""

import pytest

from annotate.models import Role, Task, WorkItem
from annotate.selectors.work import waiting_for
from annotate.services import accounts as account_services
from tests.annotate.factories import ranking_items
from tests.annotate.test_queue import next_task, only

pytestmark = pytest.mark.django_db


def test_assigned_items_go_only_to_their_annotators(api_as, owner, member, make_user, project):
    only(project, ranking=1)
    account_services.project_settings_update(project=project, overlap=2)
    kim = make_user("kim")
    account_services.membership_set(project=project, user=kim, role=Role.ANNOTATOR)
    sets = ranking_items(project, 3, k=2, overlap=2)
    items = [WorkItem.objects.get(candidate_set=s).id for s in sets]
    url = f"/api/projects/{project.id}/queue/assign/"
    assert api_as(member).post(url, {"item_ids": items[:2], "annotators": ["kim"]}, format="json").status_code == 403
    unknown = api_as(owner).post(url, {"item_ids": items[:2], "annotators": ["kim", "nobody"]}, format="json")
    assert unknown.status_code == 400 and unknown.json()["annotators"] == ["not active members of this project: ['nobody']"]
    assert api_as(owner).post(url, {"item_ids": items[:2], "annotators": ["kim"]}, format="json").json() == {"changed": 2}

    def counted(user):
        membership = project.memberships.get(user=user)
        return {row["kind"]: row["count"] for row in waiting_for(membership=membership)}["ranking"]

    assert (counted(member), counted(kim)) == (1, 3)
    got = next_task(api_as(member), project)
    assert Task.objects.get(pk=got["id"]).item_id == items[2]
    # The member finishes nothing else: the two assigned items are kim's alone.
    api_as(member).post(f"/api/tasks/{got['id']}/skip/")
    assert next_task(api_as(member), project) is None
    kims = {Task.objects.get(pk=next_task(api_as(kim), project)["id"]).item_id}
    assert kims <= set(items[:2])
    # Lifted (an empty list): anyone again.
    assert api_as(owner).post(url, {"item_ids": items[:2], "annotators": []}, format="json").json() == {"changed": 2}
    assert next_task(api_as(member), project) is not None


def test_an_item_is_not_assigned_to_someone_who_may_never_have_it(api_as, owner, member, project):
    only(project, ranking=1)
    account_services.project_settings_update(project=project, overlap=2)
    (ranked,) = ranking_items(project, 1, k=2, overlap=2)
    item = WorkItem.objects.get(candidate_set=ranked)
    api_as(member).post(f"/api/tasks/{next_task(api_as(member), project)['id']}/skip/")  # had it already
    refused = api_as(owner).post(f"/api/projects/{project.id}/queue/assign/", {"item_ids": [item.id], "annotators": ["member"]},
                                 format="json")
    assert refused.status_code == 400 and f"item {item.id} cannot go to ['member']" in refused.json()["annotators"][0]
    assert WorkItem.objects.get(pk=item.pk).assignee_ids == []
