"""One lifecycle for every job a worker runs (platform_common.jobs, training.jobs): a lost job of any kind is
failed with its reason by the reaper, Procrastinate's own leftovers are closed, a failed export says why in the
API and on its page, a refused round is not offered Resume, and the per-project quotas hold. No training here."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from platform_common.errors import Conflict
from training.jobs import JOB_KINDS, jobs_reap_lost
from training.models import (
    BaseConversion,
    ExportJob,
    GenerationJob,
    JobStatus,
    RunStatus,
    ScreenJob,
    StageStatus,
    TrainingRun,
)
from training import selectors
from training.services import exports, runs, serving, supervisor
from tests.training.factories import arithmetic_project
from annotate.models import CorpusText, ImportBatch, ImportJob, Message

pytestmark = pytest.mark.django_db


def test_the_reaper_fails_a_lost_job_of_every_kind_with_its_reason_and_leaves_the_beating_ones(project, owner, member):
    arithmetic_project(project, member, prompts=12)
    old, now = timezone.now() - timedelta(seconds=300), timezone.now()
    run = runs.run_create(project=project, by=owner)
    TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, worker="node7:42", heartbeat_at=old)
    run.stages.filter(name="sft").update(status=StageStatus.RUNNING, step=3)
    lost = {
        "round": run,
        "generation": GenerationJob.objects.create(project=project, status=JobStatus.RUNNING, heartbeat_at=old,
                                                   worker="node7:43", prompts_done=5),
        "export": ExportJob.objects.create(project=project, kind="sft", status=JobStatus.RUNNING, heartbeat_at=old),
        "conversion": BaseConversion.objects.create(name="smol", gguf_path="/x.gguf", status=RunStatus.RUNNING,
                                                    heartbeat_at=old),
        "screen": ScreenJob.objects.create(project=project, status=JobStatus.RUNNING, heartbeat_at=old,
                                           texts_done=500, texts_total=1200),
        "import": ImportJob.objects.create(project=project, format="pairs", sha256="0" * 64, path="/nowhere.upload",
                                           status=JobStatus.RUNNING, heartbeat_at=old),
    }
    beating = ExportJob.objects.create(project=project, kind="sft", status=JobStatus.RUNNING, heartbeat_at=now)
    assert set(lost) == set(JOB_KINDS)  # a test of every kind the table knows

    reaped = jobs_reap_lost()

    assert {kind: ids for kind, ids in reaped.items() if kind in JOB_KINDS} == {
        kind: [job.id] for kind, job in lost.items()}
    for kind, job in lost.items():
        job.refresh_from_db()
        assert job.status == JobStatus.FAILED and job.error.startswith("worker lost: no heartbeat from"), kind
        assert job.finished_at is not None
    assert "after 5 prompts" in lost["generation"].error
    assert "after 500 of 1200 texts; run the backfill again" in lost["screen"].error
    assert lost["import"].error.endswith("nothing was imported, upload the file again")
    assert "during sft at step 3" in lost["round"].error and lost["round"].resumable
    # The stage that ran is failed, the ones after it say they never ran, until the round is resumed.
    assert dict(run.stages.values_list("name", "status")) == {
        "base": StageStatus.NOT_RUN, "sft": StageStatus.FAILED, "reward": StageStatus.NOT_RUN, "ppo": StageStatus.NOT_RUN}
    assert ExportJob.objects.get(pk=beating.pk).status == JobStatus.RUNNING
    runs.run_resume(run=lost["round"])
    assert set(run.stages.values_list("status", flat=True)) == {StageStatus.PENDING}


def test_the_reaper_closes_the_procrastinate_jobs_a_lost_worker_left_doing(db):
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - interval '1 hour') RETURNING id")
        (lost_worker,) = cursor.fetchone()
        cursor.execute("INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now()) RETURNING id")
        (live_worker,) = cursor.fetchone()
        ids = []
        for worker in (lost_worker, live_worker):
            cursor.execute("INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, worker_id) "
                           "VALUES ('exports', 'training.export_execute', '{}', 'todo', NULL) RETURNING id")
            (job_id,) = cursor.fetchone()
            cursor.execute("UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s WHERE id = %s", [worker, job_id])
            ids.append(job_id)

    assert jobs_reap_lost().get("procrastinate") == [ids[0]]
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, status FROM procrastinate_jobs WHERE id = ANY(%s) ORDER BY id", [ids])
        assert cursor.fetchall() == [(ids[0], "failed"), (ids[1], "doing")]


def test_a_failed_export_says_why_in_the_api_and_on_the_exports_page(project, owner, api_as, client):
    job = exports.export_enqueue(project=project, kind="preference", by=owner)
    assert api_as(owner).get(f"/api/projects/{project.id}/exports/{job.id}/").json()["status"] == "queued"

    assert exports.export_execute(job_id=job.id) == JobStatus.FAILED

    answer = api_as(owner).get(f"/api/projects/{project.id}/exports/{job.id}/").json()
    assert answer["status"] == "failed" and "no preference pairs to export yet" in answer["error"]
    assert answer["snapshot"] is None and answer["started_at"] and answer["finished_at"]
    listed = api_as(owner).get(f"/api/projects/{project.id}/exports/").json()
    assert [row["id"] for row in listed["results"]] == [job.id]
    client.force_login(owner)
    page = client.get(f"/projects/{project.id}/exports/").content.decode()
    assert "failed</span>: the project has no preference pairs to export yet" in page


def test_export_jobs_are_for_the_projects_admins(project, owner, member, outsider, api_as):
    job = ExportJob.objects.create(project=project, kind="sft", requested_by=owner)
    url = f"/api/projects/{project.id}/exports/{job.id}/"
    assert api_as(member).get(url).status_code == 403
    assert api_as(outsider).get(url).status_code == 404
    assert api_as(None).get(url).status_code == 401
    assert api_as(owner).get(f"/api/projects/{project.id}/exports/{job.id + 1}/").status_code == 404


def test_a_round_the_data_cannot_train_is_refused_when_it_is_created(project, owner):
    batch = ImportBatch.objects.create(project=project, format="text", sha256="0" * 64)
    CorpusText.objects.create(project=project, batch=batch, text="some words to build a tokenizer from " * 20)
    with pytest.raises(ValidationError) as refused:
        runs.run_create(project=project, by=owner)
    problems = refused.value.message_dict["config"]
    assert "sft: too few rows to train on: 0 (at least 4 for the sft stage at this preset)" in problems
    assert "reward: dataset smaller than one batch: 0 pairs for a batch of 4 (4 per device x 1 accumulation x 1 " \
           "processes)" in problems
    assert not TrainingRun.objects.exists()


def test_a_round_refused_in_the_worker_is_not_offered_resume(project, owner, member):
    arithmetic_project(project, member, prompts=12)
    run = runs.run_create(project=project, by=owner)
    # What the worker finds once it exports: nothing left to train on (all of it flagged since the round was made).
    Message.objects.filter(project=project).update(excluded=True)

    assert supervisor.run_execute(run_id=run.id) == RunStatus.FAILED

    run.refresh_from_db()
    assert run.error and not run.resumable
    assert not selectors.run_payload(run)["can_resume"] and selectors.run_payload(run)["can_retry"]
    assert set(run.stages.values_list("status", flat=True)) == {StageStatus.NOT_RUN}
    with pytest.raises(Conflict, match="would be refused again"):
        runs.run_resume(run=run)


def test_a_generation_job_is_cancelled_while_queued_and_not_once_ended(project, owner, api_as):
    job = GenerationJob.objects.create(project=project, requested_by=owner)
    answer = api_as(owner).post(f"/api/projects/{project.id}/generation/{job.id}/cancel/")
    assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
    assert serving.generation_execute(job_id=job.id) == JobStatus.CANCELLED  # a worker that gets it later does nothing
    assert api_as(owner).post(f"/api/projects/{project.id}/generation/{job.id}/cancel/").status_code == 409


def test_a_project_may_have_so_many_rounds_at_once_and_so_much_disk(project, owner, member, settings, tmp_path):
    arithmetic_project(project, member, prompts=12)
    settings.PROJECT_MAX_ACTIVE_ROUNDS = 1
    runs.run_create(project=project, by=owner)
    with pytest.raises(Conflict, match="1 rounds queued or running, and may have at most 1"):
        runs.run_create(project=project, by=owner)

    settings.PROJECT_MAX_ACTIVE_ROUNDS, settings.PROJECT_STORE_QUOTA_GB = 5, 1
    settings.SNAPSHOT_STORE, settings.MODEL_STORE = tmp_path / "snapshots", tmp_path / "models"
    folder = settings.MODEL_STORE / f"project-{project.id}/run-1"
    folder.mkdir(parents=True)
    with open(folder / "weights.bin", "wb") as weights:
        weights.truncate(10**9)  # sparse: its size counts, not the blocks it takes
    with pytest.raises(Conflict, match="take 1.00 GB of its 1 GB"):
        runs.run_create(project=project, by=owner)
    with pytest.raises(Conflict, match="PROJECT_STORE_QUOTA_GB"):
        exports.export_enqueue(project=project, kind="sft", by=owner)
