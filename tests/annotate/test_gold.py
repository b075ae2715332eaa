"""Quality control on real PostgreSQL, through the API: gold items mixed into the queue at the project's
rate and unmarked, never twice to one person, accuracy with its count, pausing only after enough answers,
a qualification set before real work, and who may mark gold."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from annotate.models import GoldAnswer, Ranking, Role, Task, WorkItem
from annotate.selectors.gold import gold_accuracy, gold_judgement_correct
from annotate.services import accounts as account_services
from annotate.services import submits
from tests.annotate.factories import ranking_items

pytestmark = pytest.mark.django_db

RANKINGS_ONLY = {"prompt": 0, "demonstration": 0, "ranking": 1, "compare": 0, "label": 0, "review": 0}


def configure(project, **settings):
    account_services.project_settings_update(project=project, task_mix=RANKINGS_ONLY, overlap=1, **settings)


def mark_gold(api_as, owner, project, items):
    """Mark each item gold through the API with its set's stored order as the known answer."""
    for item in items:
        ids = item.candidate_set.message_ids
        response = api_as(owner).post(
            f"/api/projects/{project.id}/gold/mark/", {"item_id": item.id, "answer": {"tiers": [[i] for i in ids]}},
            format="json",
        )
        assert response.status_code == 201, response.content


def known(task_id) -> list[list[int]]:
    return [[i] for i in Task.objects.get(pk=task_id).item.candidate_set.message_ids]


def next_task(api, project):
    response = api.post(f"/api/projects/{project.id}/tasks/next/", {}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def work(api, project, count, *, right=True):
    """Do `count` tasks, answering gold right (the known order) or wrong (reversed); return the tasks."""
    done = []
    for n in range(count):
        body = next_task(api, project)
        task = body["task"]
        assert task is not None, body
        tiers = known(task["id"])
        response = api.post(
            f"/api/tasks/{task['id']}/submit/", {"submit_key": f"k{n}", "tiers": tiers if right else tiers[::-1]},
            format="json",
        )
        assert response.status_code == 200, response.content
        done.append(task)
    return done


def is_gold(task) -> bool:
    return Task.objects.get(pk=task["id"]).item.gold


def test_gold_comes_at_the_projects_rate_unmarked_and_never_twice_to_one_person(api_as, owner, member, make_user, project):
    configure(project, gold_rate=0.25)
    ranking_items(project, 48)
    mark_gold(api_as, owner, project, WorkItem.objects.filter(project=project).order_by("id")[:8])
    tasks = work(api_as(member), project, 24)
    gold = [task for task in tasks if is_gold(task)]
    assert 5 <= len(gold) <= 7  # 24 tasks at 25%: within one task of 6
    item_ids = [Task.objects.get(pk=task["id"]).item_id for task in tasks]
    assert len(set(item_ids)) == len(item_ids)
    # Nothing in what the annotator gets tells a gold task from a real one.
    real = next(task for task in tasks if not is_gold(task))
    assert set(gold[0]) == set(real) and "gold" not in str(gold[0]).lower()
    # Gold is for everyone: a second annotator gets gold items the first one had, real work only once.
    second = make_user("second")
    account_services.membership_set(project=project, user=second, role=Role.ANNOTATOR)
    gold_items = {Task.objects.get(pk=task["id"]).item_id for task in gold}
    their_items = {Task.objects.get(pk=task["id"]).item_id for task in work(api_as(second), project, 16)}
    assert their_items & gold_items
    assert not (their_items - gold_items) & set(item_ids)


def test_with_every_task_gold_each_gold_item_comes_once_and_then_real_work(api_as, owner, member, project):
    configure(project, gold_rate=1.0)
    ranking_items(project, 5)
    mark_gold(api_as, owner, project, WorkItem.objects.filter(project=project).order_by("id")[:3])
    tasks = work(api_as(member), project, 5)
    assert [is_gold(task) for task in tasks] == [True, True, True, False, False]
    assert next_task(api_as(member), project)["task"] is None


def test_accuracy_and_its_count_per_annotator_in_the_stats_api_and_on_progress(api_as, client, owner, member, project):
    configure(project, gold_rate=1.0)
    ranking_items(project, 3)
    mark_gold(api_as, owner, project, WorkItem.objects.filter(project=project))
    work(api_as(member), project, 2, right=True)
    work(api_as(member), project, 1, right=False)
    assert gold_accuracy(project=project) == {member.id: (2, 3)}
    rows = api_as(owner).get(f"/api/projects/{project.id}/stats/").json()["gold"]
    assert [(r["username"], r["gold_correct"], r["gold_answered"], r["gold_accuracy"], r["paused_reason"]) for r in rows] == [
        ("member", 2, 3, 0.667, "")
    ]
    client.force_login(owner)
    page = client.get(f"/projects/{project.id}/admin/progress/").content.decode()
    assert "Quality checks" in page and "<td>member</td><td class=\"num\">2</td><td class=\"num\">3</td><td class=\"num\">67%" in page


def test_three_wrong_gold_answers_pause_nobody(api_as, owner, member, project):
    configure(project, gold_rate=1.0, gold_pause_below=0.5)  # the minimum stays at its default, 10
    ranking_items(project, 5)
    mark_gold(api_as, owner, project, WorkItem.objects.filter(project=project).order_by("id")[:3])
    work(api_as(member), project, 3, right=False)
    assert gold_accuracy(project=project) == {member.id: (0, 3)}
    assert next_task(api_as(member), project)["task"] is not None


def test_enough_wrong_answers_pause_new_work_with_the_reason_until_an_admin_resumes(api_as, client, owner, member, project):
    configure(project, gold_rate=1.0, gold_pause_below=0.5, gold_min_answers=4)
    ranking_items(project, 8)
    mark_gold(api_as, owner, project, WorkItem.objects.filter(project=project).order_by("id")[:6])
    work(api_as(member), project, 1, right=True)
    work(api_as(member), project, 3, right=False)
    body = next_task(api_as(member), project)
    assert body["task"] is None
    assert body["detail"] == "Paused: 1 of 4 quality checks right (25%), under the project's 50%. An admin can resume."
    assert api_as(member).get(f"/api/projects/{project.id}/gold/mine/").json()["paused_reason"] == body["detail"]
    client.force_login(member)
    assert body["detail"].replace("'", "&#x27;") in client.get(f"/projects/{project.id}/").content.decode()
    (row,) = api_as(owner).get(f"/api/projects/{project.id}/stats/").json()["gold"]
    assert row["paused_reason"] == body["detail"]
    # Only an admin resumes; then the answers so far no longer count and work goes on.
    assert api_as(member).post(f"/api/projects/{project.id}/gold/resume/", {"annotator_id": member.id}).status_code == 403
    response = api_as(owner).post(f"/api/projects/{project.id}/gold/resume/", {"annotator_id": member.id})
    assert response.status_code == 201, response.content
    assert next_task(api_as(member), project)["task"] is not None


def test_a_qualification_set_comes_before_real_work_and_failing_it_pauses(api_as, owner, member, make_user, project):
    configure(project, qualification_tasks=2, qualification_pass_mark=1.0)
    ranking_items(project, 6)
    mark_gold(api_as, owner, project, WorkItem.objects.filter(project=project).order_by("-id")[:3])
    mine = api_as(member).get(f"/api/projects/{project.id}/gold/mine/").json()
    assert mine["qualification_left"] == 2
    tasks = work(api_as(member), project, 3, right=True)
    assert [is_gold(task) for task in tasks] == [True, True, False]  # no gold rate: after it, real work only
    failing = make_user("failing")
    account_services.membership_set(project=project, user=failing, role=Role.ANNOTATOR)
    first = work(api_as(failing), project, 1, right=True)
    second = work(api_as(failing), project, 1, right=False)
    assert is_gold(first[0]) and is_gold(second[0])
    body = next_task(api_as(failing), project)
    assert body["task"] is None
    assert body["detail"].startswith("Paused: did not pass the qualification set (1 of 2 right; the pass mark is 100%)")


def test_only_project_admins_mark_promote_or_unmark_gold(api_as, owner, member, outsider, project):
    configure(project, gold_rate=0.5)
    ranking_items(project, 1, overlap=2)
    item = WorkItem.objects.get(project=project)
    answer = {"item_id": item.id, "answer": {"tiers": [[i] for i in item.candidate_set.message_ids]}}
    assert api_as(member).post(f"/api/projects/{project.id}/gold/mark/", answer, format="json").status_code == 403
    assert api_as(outsider).post(f"/api/projects/{project.id}/gold/mark/", answer, format="json").status_code == 404
    assert api_as(member).post(f"/api/projects/{project.id}/gold/promote/", {"item_id": item.id}).status_code == 403
    assert api_as(member).get(f"/api/projects/{project.id}/gold/").status_code == 403
    assert not WorkItem.objects.get(pk=item.id).gold and not GoldAnswer.objects.exists()
    # An answer that does not fit the set is refused with the reason, and nothing is written.
    wrong = {"item_id": item.id, "answer": {"tiers": [[1], [2]]}}
    response = api_as(owner).post(f"/api/projects/{project.id}/gold/mark/", wrong, format="json")
    assert response.status_code == 400 and "every reply" in response.content.decode()
    assert not WorkItem.objects.get(pk=item.id).gold
    assert api_as(owner).post(f"/api/projects/{project.id}/gold/mark/", answer, format="json").status_code == 201
    listed = api_as(owner).get(f"/api/projects/{project.id}/gold/").json()["results"]
    assert [(row["item_id"], row["source"]) for row in listed] == [(item.id, "marked")]
    assert api_as(owner).post(f"/api/projects/{project.id}/gold/unmark/", {"item_id": item.id}).status_code == 200
    item.refresh_from_db()
    assert (item.gold, item.needed, item.open_slots) == (False, 2, 2)


def test_a_consensus_promoted_to_gold_scores_later_judgements_only(api_as, owner, member, make_user, project):
    configure(project, gold_rate=1.0)
    account_services.project_settings_update(project=project, overlap=2)
    ranking_items(project, 1)
    item = WorkItem.objects.get(project=project)
    a, b, c, d = item.candidate_set.message_ids
    for name in ("first", "second"):
        user = make_user(name)
        Ranking.objects.create(candidate_set=item.candidate_set, annotator=user, tiers=[[c], [a], [b], [d]])
    response = api_as(owner).post(f"/api/projects/{project.id}/gold/promote/", {"item_id": item.id})
    assert response.status_code == 201, response.content
    assert response.json()["answer"] == {"tiers": [[c], [a], [b], [d]]} and response.json()["source"] == "consensus"
    assert gold_accuracy(project=project) == {}
    task = next_task(api_as(member), project)["task"]
    submits.task_submit(task_id=task["id"], annotator=member, submit_key="k", payload={"tiers": [[c], [a], [d], [b]]})
    assert gold_accuracy(project=project) == {member.id: (1, 1)}  # one swapped pair of six: tau 2/3


def test_annotators_see_their_gold_results_per_day_and_a_day_late(api_as, owner, member, project):
    configure(project, gold_rate=1.0)
    ranking_items(project, 3)
    mark_gold(api_as, owner, project, WorkItem.objects.filter(project=project))
    work(api_as(member), project, 2, right=True)
    work(api_as(member), project, 1, right=False)
    assert api_as(member).get(f"/api/projects/{project.id}/gold/mine/").json()["days"] == []  # today's: not yet
    yesterday = timezone.now() - timedelta(days=1)
    Task.objects.filter(annotator=member).update(finished_at=yesterday)
    days = api_as(member).get(f"/api/projects/{project.id}/gold/mine/").json()["days"]
    assert days == [{"day": timezone.localdate(yesterday).isoformat(), "correct": 2, "answered": 3}]


@pytest.mark.parametrize(
    "kind, answer, judgement, right",
    [
        ("compare", {"tiers": [[1], [2]]}, {"tiers": [[1], [2]]}, True),
        ("compare", {"tiers": [[1], [2]]}, {"tiers": [[1, 2]]}, False),
        ("compare", {"all_bad": True}, {"all_bad": True}, True),
        ("ranking", {"tiers": [[1], [2], [3], [4]]}, {"tiers": [[4], [3], [2], [1]]}, False),
        ("ranking", {"tiers": [[1], [2], [3], [4]]}, {"all_bad": True}, False),
        ("label", {"quality": 4, "flags": []}, {"quality": 5, "flags": []}, True),
        ("label", {"quality": 4, "flags": []}, {"quality": 2, "flags": []}, False),
        ("label", {"quality": None, "flags": ["spam"]}, {"quality": 3, "flags": []}, False),
        ("review", {"accepted": False}, {"accepted": False}, True),
        ("review", {"accepted": False}, {"accepted": True}, False),
    ],
)
def test_judgements_of_every_gold_kind_are_scored_against_the_known_answer(kind, answer, judgement, right):
    assert gold_judgement_correct(kind=kind, answer=answer, judgement=judgement) is right


def test_admins_set_the_gold_rate_pausing_and_qualification_and_members_read_them(api_as, owner, member, project):
    url = f"/api/projects/{project.id}/settings/"
    change = {"gold_rate": 0.1, "gold_pause_below": 0.6, "gold_min_answers": 20, "qualification_tasks": 5,
              "qualification_pass_mark": 0.8}
    assert api_as(member).patch(url, change, format="json").status_code == 403
    assert api_as(owner).patch(url, {"gold_rate": 1.5}, format="json").status_code == 400
    assert api_as(owner).patch(url, change, format="json").status_code == 200
    read = api_as(member).get(url).json()
    assert {key: read[key] for key in change} == change


def test_a_qualification_set_with_too_few_gold_items_says_so_and_hands_out_no_real_work(api_as, owner, member, project):
    configure(project, qualification_tasks=3)
    ranking_items(project, 4)
    mark_gold(api_as, owner, project, WorkItem.objects.filter(project=project).order_by("id")[:2])
    assert all(is_gold(task) for task in work(api_as(member), project, 2))
    body = next_task(api_as(member), project)
    assert body == {"task": None, "detail": "1 qualification task to do before real work, and none is waiting for you: "
                                            "ask an admin to add quality checks"}


def test_a_gold_judgement_is_scored_and_does_nothing_else(api_as, owner, member, reviewer, make_user, project, settings,
                                                          tmp_path):
    """A wrong rejection or flag of a gold item neither excludes its message nor reaches an export; gold is not
    counted as work waiting (outside a qualification set)."""
    from annotate.models import Message, MessageSource, ReviewState
    from annotate.selectors.work import waiting_for
    from annotate.services import tree
    from training import services

    settings.SNAPSHOT_STORE = tmp_path / "snapshots"
    account_services.project_settings_update(
        project=project, overlap=1, flag_threshold=1, gold_rate=1.0,
        task_mix={"prompt": 0, "demonstration": 0, "ranking": 1, "compare": 0, "label": 1, "review": 1})
    writer = make_user("writer")
    account_services.membership_set(project=project, user=writer, role=Role.ANNOTATOR)
    prompt = tree.message_create(project=project, parent=None, role="user", text="What is 3 + 3?", source=MessageSource.IMPORT)
    good = tree.message_create(project=project, parent=prompt, role="assistant", text="6", source=MessageSource.ANNOTATOR,
                               author=writer)
    review_item = WorkItem.objects.get(kind="review", message=good)
    label_item = WorkItem.objects.get(kind="label", message=good)
    (ranked,) = ranking_items(project, 1, k=2, overlap=1)
    ranking_item = WorkItem.objects.get(candidate_set=ranked)
    for item, answer in ((review_item, {"accepted": True}), (label_item, {"quality": 5, "flags": []}),
                         (ranking_item, {"tiers": [[i] for i in ranking_item.candidate_set.message_ids]})):
        assert api_as(owner).post(f"/api/projects/{project.id}/gold/mark/", {"item_id": item.id, "answer": answer},
                                  format="json").status_code == 201
    membership = project.memberships.get(user=member)
    assert all(row["count"] == 0 for row in waiting_for(membership=membership) if row["kind"] != "prompt")

    # The reviewer rejects the gold demonstration, the annotator flags it and ranks the gold set upside down.
    review = api_as(reviewer).post(f"/api/projects/{project.id}/tasks/next/", {"kind": "review"}, format="json").json()["task"]
    assert review["kind"] == "review" and is_gold(review)
    assert api_as(reviewer).post(f"/api/tasks/{review['id']}/submit/",
                                 {"submit_key": "r", "accepted": False, "comment": "Wrong."}, format="json").status_code == 200
    for _ in range(2):
        task = next_task(api_as(member), project)["task"]
        assert is_gold(task)
        body = ({"flags": ["toxic"]} if task["kind"] == "label" else {"tiers": known(task["id"])[::-1]})
        assert api_as(member).post(f"/api/tasks/{task['id']}/submit/", {"submit_key": f"m{task['id']}", **body},
                                   format="json").status_code == 200
    good.refresh_from_db()
    assert not good.excluded and good.review_state == ReviewState.PENDING  # untouched by any of it
    assert gold_accuracy(project=project) == {reviewer.id: (0, 1), member.id: (0, 2)}  # but scored
    for kind in ("preference", "unpaired", "flags"):  # the only judgements were of gold items: nothing to export
        with pytest.raises(ValidationError, match="to export yet"):
            services.snapshot_create(project=project, kind=kind, parquet=False)
    assert Message.objects.get(pk=good.pk).excluded is False
