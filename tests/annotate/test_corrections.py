"""Correcting work (issue 19): an annotator changes or withdraws their own ranking or label within the project's
window, an admin withdraws anyone's; every change is in the trail (django-simple-history) with who, when, before
and after; exports read the judgements as they are now."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotate.models import Label, Message, Ranking, Task, WorkItem
from annotate.services import accounts as account_services
from tests.annotate.factories import ranking_items
from tests.annotate.test_queue import next_task, only, submit

pytestmark = pytest.mark.django_db


def test_an_annotator_corrects_a_ranking_in_the_window_and_the_trail_keeps_every_step(
        api_as, owner, member, reviewer, make_user, project, settings, tmp_path):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"
    only(project, ranking=1)
    account_services.project_settings_update(project=project, overlap=1, correction_minutes=30)
    (ranked,) = ranking_items(project, 1, k=3, overlap=1)
    a, b, c = ranked.message_ids
    api = api_as(member)
    task = next_task(api, project)
    ranking_id = submit(api, task, tiers=[[a], [b], [c]]).json()["result"]["ranking_id"]
    url = f"/api/rankings/{ranking_id}/"

    # Others may not change it, nor see that it exists; the same order again is refused.
    assert api_as(make_user("stranger")).patch(url, {"tiers": [[c], [b], [a]]}, format="json").status_code == 404
    refused = api_as(reviewer).patch(url, {"tiers": [[c], [b], [a]]}, format="json")
    assert refused.status_code == 403 and "only its annotator may change it" in refused.json()["detail"]
    assert api.patch(url, {"tiers": [[a], [b], [c]]}, format="json").json()["tiers"] == ["that is the order it has already"]
    bad = api.patch(url, {"tiers": [[a], [b]]}, format="json")
    assert bad.status_code == 400 and "rank every reply of the set exactly once" in str(bad.json())
    assert api.patch(url, {"tiers": [[c], [a, b]]}, format="json").json()["tiers"] == [[c], [a, b]]

    from training import services
    snapshot = services.snapshot_create(project=project, kind="preference", parquet=False)
    text = "".join((settings.SNAPSHOT_STORE / snapshot.folder / f"preference-{s}.jsonl").read_text() for s in ("train", "test"))
    assert text.count("\n") == 2  # c over a and c over b: the changed order, not the first
    # After the window it is settled for its annotator; an admin may still withdraw it.
    Ranking.objects.filter(pk=ranking_id).update(created_at=timezone.now() - timedelta(minutes=31))
    late = api.post(f"{url}withdraw/")
    assert late.status_code == 403 and "for 30 minutes after you made them" in late.json()["detail"]
    assert api_as(owner).post(f"{url}withdraw/").status_code == 204
    assert not Ranking.objects.filter(pk=ranking_id).exists()
    assert Task.objects.get(pk=task["id"]).state == "withdrawn"
    item = WorkItem.objects.get(candidate_set=ranked)
    assert (item.done, item.open_slots) == (0, 1)  # the set needs someone again
    with pytest.raises(Exception, match="to export yet"):
        services.snapshot_create(project=project, kind="preference", parquet=False)

    trail = api_as(reviewer).get(f"/api/projects/{project.id}/messages/{a}/trail/").json()["entries"]
    assert [(e["action"], e["by"], e["before"] and e["before"]["tiers"], e["after"] and e["after"]["tiers"])
            for e in trail] == [
        ("made", "member", None, [[a], [b], [c]]),
        ("changed", "member", [[a], [b], [c]], [[c], [a, b]]),
        ("withdrawn", "owner", [[c], [a, b]], None)]
    assert api.get(f"/api/projects/{project.id}/messages/{a}/trail/").status_code == 403  # reviewers and admins


def test_a_label_is_changed_then_withdrawn_and_a_closed_window_says_so(api_as, owner, member, project):
    account_services.project_settings_update(project=project, correction_minutes=0)
    message = Message.objects.create(project=project, role="user", text="Hello?", source="import")
    label_id = api_as(member).post(f"/api/projects/{project.id}/messages/{message.id}/labels/", {"quality": 2},
                                   format="json").json()["label_id"]
    closed = api_as(member).patch(f"/api/labels/{label_id}/", {"quality": 4}, format="json")
    assert closed.status_code == 403 and closed.json()["detail"] == "this project does not let annotators correct their judgements"
    account_services.project_settings_update(project=project, correction_minutes=10)
    changed = api_as(member).patch(f"/api/labels/{label_id}/", {"quality": 4, "flags": ["spam"]}, format="json")
    assert changed.json() == {"id": label_id, "quality": 4, "flags": ["spam"]}
    assert api_as(member).post(f"/api/labels/{label_id}/withdraw/").status_code == 204
    assert not Label.objects.exists()
    trail = api_as(owner).get(f"/api/projects/{project.id}/messages/{message.id}/trail/").json()["entries"]
    assert [(e["action"], e["by"], e["after"] and (e["after"]["quality"], e["after"]["flags"])) for e in trail] == [
        ("made", "member", (2, [])), ("changed", "member", (4, ["spam"])), ("withdrawn", "member", None)]


def test_withdrawing_from_my_history_and_the_messages_page_shows_the_trail(owner, member, reviewer, project):
    from tests.annotate.test_pages import client_for

    only(project, ranking=1)
    account_services.project_settings_update(project=project, overlap=1)
    (ranked,) = ranking_items(project, 1, k=2, overlap=1)
    from annotate.services import queue, submits

    task = queue.task_next(project=project, annotator=member, role="annotator", kind="ranking")
    a, b = ranked.message_ids
    submits.task_submit(task_id=task.id, annotator=member, submit_key="k", payload={"tiers": [[a], [b]]})
    history = client_for(member).get(f"/projects/{project.id}/history/").content.decode()
    assert "Withdraw it" in history and "possible until" in history
    ranking = Ranking.objects.get()
    url = f"/projects/{project.id}/rankings/{ranking.id}/withdraw/"
    assert client_for(reviewer).post(url).status_code == 302 and Ranking.objects.exists()  # not theirs: refused
    page = client_for(member).post(url, follow=True).content.decode()
    assert "Your ranking is withdrawn" in page and not Ranking.objects.exists()
    assert "Withdraw it" not in page  # nothing left to withdraw there
    shown = client_for(reviewer).get(f"/projects/{project.id}/messages/{a}/").content.decode()
    trail = shown.split('id="trail"')[1]
    assert "withdrawn" in trail and "made" in trail and "member" in trail
    assert client_for(member).get(f"/projects/{project.id}/messages/{a}/").status_code == 403  # reviewers and admins


def test_deleting_a_contributor_takes_their_trail_too(api_as, owner, member, project):
    from annotate.services.contributors import contributor_delete

    only(project, ranking=1)
    account_services.project_settings_update(project=project, overlap=1)
    (ranked,) = ranking_items(project, 1, k=2, overlap=1)
    api = api_as(member)
    a, b = ranked.message_ids
    ranking_id = submit(api, next_task(api, project), tiers=[[a], [b]]).json()["result"]["ranking_id"]
    assert api.patch(f"/api/rankings/{ranking_id}/", {"tiers": [[b], [a]]}, format="json").status_code == 200
    message = Message.objects.create(project=project, role="user", text="Hi?", source="import")
    api.post(f"/api/projects/{project.id}/messages/{message.id}/labels/", {"quality": 3}, format="json")
    assert Ranking.history.filter(annotator=member).count() == 2 and Label.history.filter(annotator=member).exists()
    contributor_delete(project=project, user=member, by=owner)
    assert not Ranking.history.filter(annotator=member).exists() and not Label.history.filter(annotator=member).exists()


def test_a_reviewer_overrules_a_ranking_and_a_label_and_they_leave_the_exports(api_as, owner, member, reviewer, project,
                                                                                 settings, tmp_path):
    from tests.annotate.test_pages import client_for
    from training import services

    settings.SNAPSHOT_STORE = tmp_path / "snapshots"
    only(project, ranking=1)
    account_services.project_settings_update(project=project, overlap=1, flag_threshold=1)
    (ranked,) = ranking_items(project, 1, k=2, overlap=1)
    api = api_as(member)
    a, b = ranked.message_ids
    ranking_id = submit(api, next_task(api, project), tiers=[[b], [a]]).json()["result"]["ranking_id"]
    label_id = api.post(f"/api/projects/{project.id}/messages/{a}/labels/", {"quality": 5}, format="json").json()["label_id"]
    url = f"/api/rankings/{ranking_id}/review/"
    assert api.post(url, {"accepted": True}, format="json").status_code == 403  # annotators do not review
    no_reason = api_as(reviewer).post(url, {"accepted": False}, format="json")
    assert no_reason.status_code == 400 and "say why you overrule it" in str(no_reason.json())
    assert api_as(reviewer).post(url, {"accepted": True}, format="json").json()["verdict"] == "accepted"
    assert services.snapshot_create(project=project, kind="preference", parquet=False).rows  # accepted: still out there
    assert api_as(reviewer).post(url, {"accepted": False, "comment": "Reply 1 is right; it says 2 + 2 = 4."},
                                 format="json").json()["verdict"] == "overruled"
    review = api_as(reviewer).post(f"/api/labels/{label_id}/review/", {"accepted": False, "comment": "It is wrong."},
                                   format="json")
    assert review.json()["verdict"] == "overruled"
    for kind in ("preference", "unpaired"):
        with pytest.raises(Exception, match="to export yet"):
            services.snapshot_create(project=project, kind=kind, parquet=False)
    history = client_for(member).get(f"/projects/{project.id}/history/").content.decode()
    assert "A reviewer overruled it: it is left out of training data</strong>: Reply 1 is right" in history
    assert "reviewer" not in history.split("My history")[1].split("A reviewer")[0]  # never who
    # The message's page offers reviewers the verdict, and the trail has each one.
    page = client_for(reviewer).post(f"/projects/{project.id}/labels/{label_id}/review/",
                                     {"decision": "accept", "next": f"/projects/{project.id}/messages/{a}/"}, follow=True)
    assert "The label is accepted." in page.content.decode() and Label.objects.get().verdict == "accepted"
    trail = api_as(owner).get(f"/api/projects/{project.id}/messages/{a}/trail/").json()["entries"]
    assert [(e["kind"], e["action"], e["after"]["verdict"]) for e in trail] == [
        ("ranking", "made", ""), ("label", "made", ""), ("ranking", "changed", "accepted"),
        ("ranking", "changed", "overruled"), ("label", "changed", "overruled"), ("label", "changed", "accepted")]


def test_what_the_review_of_the_change_found(api_as, owner, member, reviewer, project):
    """A withdrawn gold answer counts as a wrong one; a changed judgement loses its verdict; a label's PATCH keeps
    what it was not sent; a deleted reviewer's verdicts go with them; "²" is no number."""
    from annotate.selectors.gold import gold_accuracy
    from annotate.services.contributors import contributor_delete

    only(project, ranking=1)
    account_services.project_settings_update(project=project, overlap=1, gold_rate=1.0)
    (gold_set, real_set) = ranking_items(project, 2, k=2, overlap=1)
    gold_item = WorkItem.objects.get(candidate_set=gold_set)
    answer = {"tiers": [[i] for i in gold_set.message_ids]}
    assert api_as(owner).post(f"/api/projects/{project.id}/gold/mark/", {"item_id": gold_item.id, "answer": answer},
                              format="json").status_code == 201
    api = api_as(member)
    for _ in range(2):
        task = next_task(api, project)
        ids = Task.objects.get(pk=task["id"]).item.candidate_set.message_ids
        submit(api, task, key=f"k{task['id']}", tiers=[[i] for i in ids])
    gold_ranking = Ranking.objects.get(candidate_set=gold_set)
    assert gold_accuracy(project=project) == {member.id: (1, 1)}
    assert api.post(f"/api/rankings/{gold_ranking.id}/withdraw/").status_code == 204
    assert gold_accuracy(project=project) == {member.id: (0, 1)}  # withdrawing is no way out of the score

    real = Ranking.objects.get(candidate_set=real_set)
    a, b = real_set.message_ids
    assert api_as(reviewer).post(f"/api/rankings/{real.id}/review/", {"accepted": True}, format="json").status_code == 200
    assert api.patch(f"/api/rankings/{real.id}/", {"tiers": [[b], [a]]}, format="json").status_code == 200
    real.refresh_from_db()
    assert (real.verdict, real.verdict_by) == ("", None)  # the verdict was on the old order

    message = Message.objects.create(project=project, role="user", text="Hi?", source="import")
    label_id = api.post(f"/api/projects/{project.id}/messages/{message.id}/labels/", {"quality": 4},
                        format="json").json()["label_id"]
    assert api.patch(f"/api/labels/{label_id}/", {"flags": ["spam"]}, format="json").json() == {
        "id": label_id, "quality": 4, "flags": ["spam"]}
    assert api.patch(f"/api/labels/{label_id}/", {"quality": "²"}, format="json").status_code == 400
    assert api.get(f"/api/projects/{project.id}/guidelines/versions/", {"from": "²", "to": "1"}).status_code == 400
    from django.core.exceptions import ValidationError
    from annotate.services.submits import rubric_scores_clean

    account_services.project_settings_update(project=project, rubrics=[{"key": "helpful"}])
    with pytest.raises(ValidationError, match="a score is a whole number from 1 to 5, not '²'"):
        rubric_scores_clean(project=project, scores={"helpful": "²"})

    api_as(reviewer).post(f"/api/labels/{label_id}/review/", {"accepted": False, "comment": "Not spam."}, format="json")
    api_as(reviewer).post(f"/api/projects/{project.id}/messages/{message.id}/labels/", {"quality": 2}, format="json")
    contributor_delete(project=project, user=reviewer, by=owner)
    label = Label.objects.get(pk=label_id)
    assert (label.verdict, label.verdict_comment) == ("", "")
    assert not Label.history.filter(verdict_comment="Not spam.").exists()
