"""Switching a project's screen on, the backfill a worker runs over what is stored, and the admins' screen
settings API and page: who may, what a bad change is refused with, what the backfill finds and holds, cancelling."""

import pytest
from django.db import connection

from annotate.models import Message, ScreenFinding
from annotate.services import screening as annotate_screening
from annotate.services import tree
from platform_common.jobs import JobStatus
from training.models import ScreenJob
from training.services import screening

pytestmark = pytest.mark.django_db

EMAIL = "Write to jane.roe@example.com please"
WORDED = "you stupid bot"
REPLY = "Sure: reach me at bot.owner@example.org"


def stored(project):
    """Three messages written while the screen is off: nothing found, nothing held."""
    prompt = tree.message_create(project=project, parent=None, role="user", text=EMAIL, source="annotator")
    worded = tree.message_create(project=project, parent=None, role="user", text=WORDED, source="annotator")
    reply = tree.message_create(project=project, parent=prompt, role="assistant", text=REPLY, source="model")
    assert not ScreenFinding.objects.exists()
    return prompt, worded, reply


def test_switching_the_screen_on_queues_a_backfill_that_records_findings_and_holds(
    project, owner, api_as, django_capture_on_commit_callbacks
):
    prompt, worded, reply = stored(project)
    api = api_as(owner)
    url = f"/api/projects/{project.id}/screen/"
    with django_capture_on_commit_callbacks(execute=True):
        answer = api.patch(url, {"enabled": True, "words": ["Stupid Bot"]}, format="json")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["enabled"] and body["words"] == ["Stupid Bot"] and body["backfill"]["status"] == "queued"
    job_id = body["backfill"]["id"]
    with connection.cursor() as cursor:  # the worker's job was deferred once the change committed
        cursor.execute("SELECT args->>'job_id' FROM procrastinate_jobs WHERE task_name = %s", ["training.screen_execute"])
        assert [row[0] for row in cursor.fetchall()] == [str(job_id)]

    assert screening.screen_job_execute(job_id=job_id) == JobStatus.SUCCEEDED

    job = api.get(f"{url}jobs/{job_id}/").json()
    assert job["status"] == "succeeded" and job["requested_by"] == "owner"
    assert (job["texts_done"], job["texts_total"]) == (3, 3) and job["counts"] == {"email": 2, "word": 1}
    found = {(f.message_id, f.kind, f.action, f.where) for f in ScreenFinding.objects.all()}
    assert found == {(prompt.id, "email", "redact", "backfill"), (worded.id, "word", "hold", "backfill"),
                     (reply.id, "email", "block", "backfill")}
    # The person's email is redacted in exports, not held; the word and the model's email hold their messages.
    held = dict(Message.objects.filter(project=project).values_list("id", "excluded"))
    assert held == {prompt.id: False, worded.id: True, reply.id: True}
    assert Message.objects.get(pk=worded.pk).text == WORDED  # stored text is never changed
    # Already on: changing a setting queues nothing more.
    again = api.patch(url, {"enabled": True, "classifier_min_flags": 50}, format="json").json()
    assert again["backfill"] is None and again["classifier_min_flags"] == 50
    assert ScreenJob.objects.count() == 1


def test_a_backfill_cancelled_between_batches_stops_and_keeps_what_it_recorded(project, owner, monkeypatch):
    prompt, worded, _reply = stored(project)
    annotate_screening.screen_configure(project=project, enabled=True, words=["stupid bot"])
    monkeypatch.setattr(annotate_screening, "BACKFILL_BATCH", 1)
    job = screening.screen_job_enqueue(project=project, by=owner)
    real_progress = screening._progress

    def admin_cancels_after_the_first_batch(job_id, done, total, counts):
        if done == 1:  # as the cancel button does, while the worker screens
            assert screening.screen_job_cancel(job=ScreenJob.objects.get(pk=job_id)).cancel_requested
        real_progress(job_id, done, total, counts)

    monkeypatch.setattr(screening, "_progress", admin_cancels_after_the_first_batch)

    assert screening.screen_job_execute(job_id=job.id) == JobStatus.CANCELLED

    job.refresh_from_db()
    assert (job.texts_done, job.texts_total, job.counts) == (1, 3, {"email": 1})
    assert "cancelled" in job.error and job.finished_at
    assert list(ScreenFinding.objects.values_list("message_id", flat=True)) == [prompt.id]
    assert not Message.objects.get(pk=worded.pk).excluded  # the batches after the cancel never ran


def test_a_queued_backfill_cancelled_never_runs_and_an_ended_one_cannot_be(project, owner, api_as):
    annotate_screening.screen_configure(project=project, enabled=True)
    stored_prompt = tree.message_create(project=project, parent=None, role="user", text="plain", source="import")
    job = screening.screen_job_enqueue(project=project, by=owner)
    assert screening.screen_job_enqueue(project=project, by=owner) == job  # one waiting is enough
    base = f"/api/projects/{project.id}/screen/jobs/{job.id}/"
    assert api_as(owner).post(f"{base}cancel/").json()["status"] == "cancelled"
    assert screening.screen_job_execute(job_id=job.id) == JobStatus.CANCELLED
    assert ScreenJob.objects.get(pk=job.pk).started_at is None and stored_prompt.screen_findings.count() == 0
    answer = api_as(owner).post(f"{base}cancel/")
    assert answer.status_code == 409 and "has ended" in answer.content.decode()


def test_bad_actions_are_refused_by_name_and_change_nothing(project, owner, api_as):
    stored(project)
    api = api_as(owner)
    url = f"/api/projects/{project.id}/screen/"
    before = api.get(url).json()
    assert before["enabled"] is False and before["actions"]["human"]["email"] == "redact"
    assert set(before["actions"]["model"]) == set(before["kinds"]) and before["kinds"]["word"] == "harmful"
    refusals = {
        "emial": {"human": {"emial": "block"}},
        "delete": {"model": {"email": "delete"}},
        "robot": {"robot": {"email": "block"}},
    }
    for named, actions in refusals.items():
        answer = api.patch(url, {"enabled": True, "words": ["x"], "actions": actions}, format="json")
        assert answer.status_code == 400 and named in answer.content.decode(), answer.content
    answer = api.patch(url, {"classifier_min_flags": 0}, format="json")
    assert answer.status_code == 400 and "classifier_min_flags" in answer.json()
    assert api.get(url).json() == before
    assert not ScreenJob.objects.exists() and not ScreenFinding.objects.exists()
    # A good change sets only the kinds it names, and the audit log shows who changed what.
    changed = api.patch(url, {"actions": {"model": {"url": "hold"}}}, format="json").json()
    assert changed["actions"]["model"]["url"] == "hold" and changed["actions"]["human"] == before["actions"]["human"]
    assert api.patch(url, {"actions": {"human": {"phone": "block"}}}, format="json").json()["actions"]["model"]["url"] == "hold"
    log = api.get(f"/api/projects/{project.id}/audit/").json()["results"]
    screen_changes = [entry for entry in log if entry["kind"] == "screen settings" and entry["action"] == "changed"]
    assert screen_changes[0]["username"] == "owner"
    assert [change["field"] for change in screen_changes[0]["changes"]] == ["actions"]
    assert screen_changes[0]["changes"][0]["after"] == {"model": {"url": "hold"}, "human": {"phone": "block"}}


def test_the_screen_api_is_for_the_projects_admins(project, owner, member, outsider, api_as):
    annotate_screening.screen_configure(project=project, enabled=True)
    job = ScreenJob.objects.create(project=project, requested_by=owner)
    base = f"/api/projects/{project.id}/screen/"
    calls = [("get", base, {}), ("patch", base, {"enabled": False}), ("post", f"{base}backfill/", {}),
             ("get", f"{base}jobs/", {}), ("get", f"{base}jobs/{job.id}/", {}), ("post", f"{base}jobs/{job.id}/cancel/", {})]
    for method, url, data in calls:
        assert getattr(api_as(member), method)(url, data, format="json").status_code == 403, url
        assert getattr(api_as(outsider), method)(url, data, format="json").status_code == 404, url
        assert getattr(api_as(None), method)(url, data, format="json").status_code == 401, url
    assert ScreenJob.objects.get(pk=job.pk).status == JobStatus.QUEUED
    assert api_as(owner).get(f"{base}jobs/{job.id + 1}/").status_code == 404
    asked = api_as(owner).post(f"{base}backfill/")
    assert asked.status_code == 202 and asked.json()["id"] == job.id  # the one still waiting
    annotate_screening.screen_configure(project=project, enabled=False)
    refused = api_as(owner).post(f"{base}backfill/")
    assert refused.status_code == 400 and "screen is off" in refused.content.decode()


def test_the_screen_page_switches_it_on_for_an_admin_and_is_refused_to_others(project, owner, member, outsider, client):
    stored(project)
    url = f"/projects/{project.id}/screen/"
    client.force_login(member)
    assert client.get(url).status_code == 403
    client.force_login(outsider)
    assert client.get(url).status_code == 404
    client.force_login(owner)
    page = client.get(url).content.decode()
    assert f'href="{url}" aria-current="page">Screen</a>' in page  # in the project's admin tabs
    assert 'name="action_model_email"' in page and 'name="action_human_classifier"' in page
    assert f'href="/projects/{project.id}/admin/flagged/"' in page and "No backfill yet." in page

    form = {"enabled": "on", "words": "stupid bot\n\n  Another  phrase \n", "classifier_min_flags": "10",
            **{f"action_{source}_{kind}": action for source, kinds in annotate_screening.screen_settings(
                project=project).all_actions().items() for kind, action in kinds.items()}}
    bad = client.post(url, {**form, "action_human_email": "shred"})
    assert bad.status_code == 400 and "shred is not one of the available choices" in bad.content.decode()
    assert not ScreenJob.objects.exists()
    answer = client.post(url, {**form, "action_human_email": "hold"}, follow=True)
    job = ScreenJob.objects.get()
    assert f"backfill {job.id} screens what the project has stored" in answer.content.decode()
    settings = annotate_screening.screen_settings(project=project.__class__.objects.get(pk=project.pk))
    assert settings.enabled and settings.words == ["Another phrase", "stupid bot"]
    assert settings.action_for("email", "human") == "hold" and settings.classifier_min_flags == 10
    assert 'data-waiting="1"' in answer.content.decode() and "waiting for a worker" in answer.content.decode()
    screening.screen_job_execute(job_id=job.id)
    page = client.get(url).content.decode()
    assert "done: 3 texts" in page and "Found: 2 email, 1 word" in page and 'data-waiting=""' in page


def test_a_backfill_that_breaks_fails_with_its_reason_on_the_api(project, owner, api_as, monkeypatch):
    stored(project)
    annotate_screening.screen_configure(project=project, enabled=True)

    def classifier_without_its_model(project):  # as training's classifier does when its version's folder is gone
        raise FileNotFoundError("the screen classifier's model folder is missing")

    monkeypatch.setattr(annotate_screening, "SCREEN_PROVIDERS", [classifier_without_its_model])
    job = screening.screen_job_enqueue(project=project, by=owner)
    assert screening.screen_job_execute(job_id=job.id) == JobStatus.FAILED
    answer = api_as(owner).get(f"/api/projects/{project.id}/screen/jobs/{job.id}/").json()
    assert answer["status"] == "failed" and answer["finished_at"]
    assert answer["error"] == "FileNotFoundError: the screen classifier's model folder is missing"
    assert not Message.objects.filter(project=project, excluded=True).exists()
