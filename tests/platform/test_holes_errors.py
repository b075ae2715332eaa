"""Hostile input the API answered with 500s or HTML, and 404s that told an outsider which ids exist."""

import json

import pytest
from django.test import Client

from annotate.models import Task, TaskKind, TaskState
from tests.training.factories import arithmetic_project
from training.models import TrainingRun

pytestmark = pytest.mark.django_db

HUGE = "9223372036854775808"  # one past PostgreSQL's bigint


@pytest.mark.parametrize("url", ["/api/projects/", "/api/projects/{id}/members/", "/api/projects/{id}/runs/",
                                 "/api/base-models/conversions/"])
def test_a_limit_or_offset_out_of_range_is_a_400_naming_the_parameter(owner, project, api_as, url):
    client = api_as(owner)
    url = url.format(id=project.id)
    for parameter, value in [("limit", HUGE), ("limit", "0"), ("limit", "ten"), ("offset", HUGE), ("offset", "-1")]:
        response = client.get(f"{url}?{parameter}={value}")
        assert response.status_code == 400, (parameter, value, response.status_code)
        assert parameter in response.json()
    page = client.get(f"{url}?limit=1000&offset=0")
    assert page.status_code == 200 and "results" in page.json()


def test_a_learning_rate_of_1e999_is_refused_with_a_400(owner, project, member, api_as):
    arithmetic_project(project, member, prompts=12)
    # Sent as JSON text: Python's json would write float("inf") as Infinity, which the parser refuses anyway.
    body = '{"recipe": "dpo", "config": {"sft": {"learning_rate": 1e999}}}'
    response = api_as(owner).post(f"/api/projects/{project.id}/runs/create/", body, content_type="application/json")
    assert response.status_code == 400
    assert "learning_rate" in json.dumps(response.json())
    assert not TrainingRun.objects.exists()


def test_a_body_over_the_upload_limit_is_a_json_413_that_says_so(owner, project, api_as, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100_000
    body = json.dumps({"guidelines": "x" * 200_000})
    response = api_as(owner).put(f"/api/projects/{project.id}/guidelines/", body, content_type="application/json")
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert "larger than" in response.json()["detail"]
    project.refresh_from_db()
    assert project.guidelines == "Be correct."


def test_a_number_sent_as_text_or_guidelines_is_refused_naming_the_field(owner, project, api_as):
    client = api_as(owner)
    refused = client.put(f"/api/projects/{project.id}/guidelines/", {"guidelines": 12}, format="json")
    assert refused.status_code == 400 and "guidelines" in refused.json()
    project.refresh_from_db()
    assert project.guidelines == "Be correct."
    lease = client.post(f"/api/projects/{project.id}/tasks/next/", {"kind": TaskKind.PROMPT}, format="json").json()
    task_id = lease["task"]["id"]
    submit = client.post(f"/api/tasks/{task_id}/submit/", {"submit_key": "k1", "text": 42}, format="json")
    assert submit.status_code == 400 and "text" in submit.json()
    assert Task.objects.get(pk=task_id).state == TaskState.LEASED


def test_an_outsider_gets_the_same_404_for_a_task_or_round_that_exists_and_one_that_does_not(
    owner, project, member, outsider, api_as
):
    arithmetic_project(project, member, prompts=12)
    lease = api_as(owner).post(f"/api/projects/{project.id}/tasks/next/", {"kind": TaskKind.PROMPT}, format="json")
    task_id = lease.json()["task"]["id"]
    run = api_as(owner).post(f"/api/projects/{project.id}/runs/create/", {"recipe": "dpo"}, format="json")
    run_id = run.json()["id"]
    client = api_as(outsider)
    for existing, missing in [(f"/api/tasks/{task_id}/", f"/api/tasks/{task_id + 1000}/"),
                              (f"/api/tasks/{task_id}/skip/", f"/api/tasks/{task_id + 1000}/skip/"),
                              (f"/api/runs/{run_id}/", f"/api/runs/{run_id + 1000}/"),
                              (f"/api/runs/{run_id}/metrics/", f"/api/runs/{run_id + 1000}/metrics/")]:
        method = client.post if existing.endswith("skip/") else client.get
        seen, unseen = method(existing), method(missing)
        assert (seen.status_code, unseen.status_code) == (404, 404)
        assert seen.json() == unseen.json(), existing
    # The task page too, logged in as the outsider.
    browser = Client()
    browser.force_login(outsider)
    seen, unseen = browser.get(f"/tasks/{task_id}/"), browser.get(f"/tasks/{task_id + 1000}/")
    assert (seen.status_code, unseen.status_code) == (404, 404)
    assert seen.content == unseen.content
