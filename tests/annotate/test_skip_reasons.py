"""Skips with a reason (issue 19): an annotator says why (a short list, or their words), admins see the counts and
the words on Progress and in the stats API, never who gave which; the lead downloads throughput as CSV."""

import csv
import io

import pytest

from annotate.models import Task, TaskState
from annotate.services import accounts as account_services
from tests.annotate.factories import ranking_items
from tests.annotate.test_pages import client_for
from tests.annotate.test_queue import next_task, only

pytestmark = pytest.mark.django_db


def test_a_skip_says_why_and_admins_see_the_counts_and_words_not_who(api_as, owner, member, make_user, project):
    only(project, ranking=1)
    account_services.project_settings_update(project=project, overlap=2)
    ranking_items(project, 4, overlap=2)
    second = make_user("=cmd|' /C calc'!A0")  # a name a spreadsheet would run as a formula
    account_services.membership_set(project=project, user=second, role="annotator")
    api = api_as(member)

    def skip(api, **body):
        task = next_task(api, project)
        return task, api.post(f"/api/tasks/{task['id']}/skip/", body, format="json")

    # Bad reasons are refused naming what is wrong, and the task stays leased.
    task, answer = skip(api, reason="boring")
    assert task is not None
    assert answer.status_code == 400 and '"boring" is not a valid choice' in str(answer.json()["reason"])
    answer = api.post(f"/api/tasks/{task['id']}/skip/", {"reason": "other"}, format="json")
    assert answer.status_code == 400 and answer.json()["note"] == ["say in a few words why you skip it"]
    assert Task.objects.get(pk=task["id"]).state == TaskState.LEASED
    assert api.post(f"/api/tasks/{task['id']}/skip/", {"reason": "expertise"}, format="json").status_code == 200
    # Words alone are "another reason"; no body at all is a skip with none.
    assert skip(api, note="  Both replies   are in Finnish. ")[1].json()["state"] == "skipped"
    assert skip(api)[1].status_code == 200
    client = client_for(second)
    task = next_task(api_as(second), project)
    response = client.post(f"/tasks/{task['id']}/skip/", {"reason": "expertise", "note": ""})
    assert response.status_code == 302
    assert list(Task.objects.filter(state=TaskState.SKIPPED).order_by("id").values_list("skip_reason", "skip_note")) == [
        ("expertise", ""), ("other", "Both replies are in Finnish."), ("", ""), ("expertise", "")]

    stats = api_as(owner).get(f"/api/projects/{project.id}/stats/").json()["skips"]
    assert stats["reasons"] == [
        {"reason": "expertise", "label": "It needs knowledge I do not have", "skips": 2},
        {"reason": "none", "label": "No reason given", "skips": 1},
        {"reason": "other", "label": "Another reason", "skips": 1}]
    assert [row["note"] for row in stats["notes"]] == ["Both replies are in Finnish."]
    assert api_as(member).get(f"/api/projects/{project.id}/stats/").status_code == 403
    page = client_for(owner).get(f"/projects/{project.id}/admin/progress/").content.decode()
    skips = page.split('id="skips"')[1].split("</section>")[0]
    assert "It needs knowledge I do not have</td><td class=\"num\">2" in skips and "Both replies are in Finnish." in skips
    assert "member" not in skips  # who skipped stays with them

    # The lead's CSV: per annotator, formulas defused; admins only; a bad window named.
    url = f"/projects/{project.id}/admin/progress/throughput.csv"
    assert client_for(member).get(url).status_code == 403
    refused = client_for(owner).get(url + "?days=0")
    assert refused.status_code == 400 and b"days must be a whole number from 1 to 365, not '0'" in refused.content
    from annotate.services import submits

    task = next_task(api_as(second), project)
    submits.task_submit(task_id=task["id"], annotator=second, submit_key="k", time_spent_ms=30_000,
                           payload={"tiers": [[m] for m in task["candidates"] and [c["id"] for c in task["candidates"]]]})
    sheet = client_for(owner).get(url + "?days=30")
    assert sheet["Content-Type"].startswith("text/csv") and "throughput-30d.csv" in sheet["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(sheet.content.decode())))
    assert rows == [{"annotator": "'=cmd|' /C calc'!A0", "submitted": "1", "skipped": "1", "time_on_task_s": "30.0",
                     "per_hour": "120.0", "gold_answered": "0", "gold_correct": "0"}]
