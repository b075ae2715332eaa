"""Settings, consensus, agreement and counts through the API, and who may see them."""

import pytest

from annotate.models import Ranking, Role
from annotate.services import accounts as account_services
from annotate.services import tree
from tests.annotate.factories import ranking_items

pytestmark = pytest.mark.django_db


@pytest.fixture
def judged(project, make_user):
    """One set of 4 replies ranked by four annotators: three agree, one swaps the top two."""
    candidate_set = ranking_items(project, 1)[0]
    a, b, c, d = candidate_set.message_ids
    # The consensus (b, a, c, d) differs from the stored order, so echoing it back would fail.
    orders = {
        "r1": [[b], [a], [c], [d]], "r2": [[b], [a], [c], [d]], "r3": [[a], [b], [c], [d]], "r4": [[b], [a], [c], [d]],
    }
    people = {}
    for name, tiers in orders.items():
        people[name] = make_user(name)
        account_services.membership_set(project=project, user=people[name], role=Role.ANNOTATOR)
        Ranking.objects.create(candidate_set=candidate_set, annotator=people[name], tiers=tiers)
    Ranking.objects.create(candidate_set=candidate_set, external_annotator="oasst:u1", tiers=[[d], [c], [b], [a]])
    return candidate_set, people


def test_consensus_is_for_reviewers(api_as, owner, member, reviewer, outsider, project, judged):
    candidate_set, _ = judged
    url = f"/api/projects/{project.id}/candidate-sets/{candidate_set.id}/consensus/"
    assert api_as(member).get(url).status_code == 403
    assert api_as(outsider).get(url).status_code == 404
    body = api_as(reviewer).get(url).json()
    b_first = candidate_set.message_ids
    assert body["consensus"] == [b_first[1], b_first[0], b_first[2], b_first[3]]
    assert body["rankings"] == 5
    assert api_as(owner).get(url).status_code == 200


def test_agreement_leaves_imported_rankings_out(api_as, reviewer, member, outsider, project, judged):
    _, people = judged
    url = f"/api/projects/{project.id}/agreement/"
    assert api_as(member).get(url).status_code == 403
    assert api_as(outsider).get(url).status_code == 404
    body = api_as(reviewer).get(url).json()
    # Ranks (a,b,c,d): r1, r2, r4 = 2,1,3,4; r3 = 1,2,3,4. R = 7,5,12,16; mean 10; S = 74;
    # W = 12 * 74 / (4^2 * (4^3 - 4)).
    assert body["mean_kendall_w"] == pytest.approx(12 * 74 / (16 * 60))
    assert 0.8 < body["krippendorff_alpha"] < 1
    taus = {int(k): v["mean_tau"] for k, v in body["annotators"].items()}
    assert taus[people["r1"].id] == pytest.approx(1.0)
    assert taus[people["r3"].id] == pytest.approx(4 / 6)  # one swapped pair of six against b, a, c, d


def test_project_stats_are_for_admins(api_as, owner, member, outsider, project, judged):
    url = f"/api/projects/{project.id}/stats/"
    assert api_as(member).get(url).status_code == 403
    assert api_as(outsider).get(url).status_code == 404
    body = api_as(owner).get(url).json()
    assert body["counts"]["items"]["ranking"]["total"] == 1


def test_settings_read_by_members_changed_by_admins(api_as, owner, member, outsider, project):
    url = f"/api/projects/{project.id}/settings/"
    assert api_as(member).get(url).json()["replies_per_ranking"] == 4
    assert api_as(outsider).get(url).status_code == 404
    assert api_as(member).patch(url, {"overlap": 3}, format="json").status_code == 403
    changed = api_as(owner).patch(url, {"overlap": 3, "task_mix": {"ranking": 2}}, format="json").json()
    assert changed["overlap"] == 3 and changed["task_mix"]["ranking"] == 2
    bad = api_as(owner).patch(url, {"replies_per_ranking": 10}, format="json")
    assert bad.status_code == 400 and "replies_per_ranking" in bad.json()
    unknown = api_as(owner).patch(url, {"task_mix": {"dance": 1}}, format="json")
    assert unknown.status_code == 400 and "dance" in str(unknown.json())
    none_left = api_as(owner).patch(
        url, {"task_mix": {k: 0 for k in ("prompt", "demonstration", "ranking", "compare", "label", "review")}}, format="json"
    )
    assert none_left.status_code == 400 and "at least one" in str(none_left.json())


def test_candidate_sets_are_made_by_admins_from_replies_of_one_prompt(api_as, owner, member, outsider, project):
    sets = ranking_items(project, 2)
    url = f"/api/projects/{project.id}/candidate-sets/"
    pair = sets[0].message_ids[:2]
    assert api_as(member).post(url, {"kind": "compare", "message_ids": pair}, format="json").status_code == 403
    assert api_as(outsider).post(url, {"kind": "compare", "message_ids": pair}, format="json").status_code == 404
    assert api_as(owner).post(url, {"kind": "compare", "message_ids": pair}, format="json").status_code == 201
    mixed = [sets[0].message_ids[0], sets[1].message_ids[0]]
    response = api_as(owner).post(url, {"kind": "compare", "message_ids": mixed}, format="json")
    assert response.status_code == 400 and "same user message" in str(response.json())
    three = api_as(owner).post(url, {"kind": "compare", "message_ids": sets[0].message_ids[:3]}, format="json")
    assert three.status_code == 400 and "exactly 2" in str(three.json())


def test_tree_is_for_members(api_as, member, outsider, project):
    candidate_set = ranking_items(project, 1)[0]
    url = f"/api/projects/{project.id}/trees/{candidate_set.parent_id}/"
    assert len(api_as(member).get(url).json()["messages"]) == 5
    assert api_as(outsider).get(url).status_code == 404


def test_queue_endpoints_refuse_outsiders_and_anonymous(api_as, outsider, project):
    from rest_framework.test import APIClient

    url = f"/api/projects/{project.id}/tasks/next/"
    assert api_as(outsider).post(url, {}, format="json").status_code == 404
    assert APIClient().post(url, {}, format="json").status_code == 401
    assert api_as(outsider).get(f"/api/projects/{project.id}/tasks/mine/").status_code == 404


def test_throughput_and_time_on_task_per_annotator(api_as, owner, member, project):
    account_services.project_settings_update(
        project=project, task_mix={"ranking": 1, "prompt": 0, "demonstration": 0, "compare": 0, "label": 0, "review": 0}
    )
    ranking_items(project, 2)
    for n in range(2):
        task = api_as(member).post(f"/api/projects/{project.id}/tasks/next/", {}, format="json").json()["task"]
        tiers = [[c["id"]] for c in task["candidates"]]
        api_as(member).post(
            f"/api/tasks/{task['id']}/submit/", {"submit_key": f"k{n}", "tiers": tiers, "time_spent_ms": 30_000}, format="json"
        )
    rows = api_as(owner).get(f"/api/projects/{project.id}/stats/").json()["annotators"]
    assert rows == [
        {"annotator_id": member.id, "username": "member", "submitted": 2, "time_on_task_s": 60.0, "per_hour": 120.0}
    ]
    assert api_as(member).get(f"/api/projects/{project.id}/counts/mine/").json() == {"today": 2, "total": 2}


def test_a_task_mix_weight_too_big_to_add_up_is_refused_with_400(api_as, owner, project):
    weights = api_as(owner).patch(f"/api/projects/{project.id}/settings/", {"task_mix": {"ranking": 1e308}}, format="json")
    assert weights.status_code == 400


def test_per_set_agreement_leaves_imported_rankings_out(api_as, reviewer, project):
    candidate_set = ranking_items(project, 1)[0]
    a, b, c, d = candidate_set.message_ids
    Ranking.objects.create(candidate_set=candidate_set, external_annotator="x:1", tiers=[[a], [b], [c], [d]])
    Ranking.objects.create(candidate_set=candidate_set, external_annotator="x:2", tiers=[[d], [c], [b], [a]])
    body = api_as(reviewer).get(f"/api/projects/{project.id}/candidate-sets/{candidate_set.id}/consensus/").json()
    assert body["kendall_w"] is None and body["rankings"] == 2


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
