"""Training rounds as admins see them: what is refused before anything starts, who may do what,
and how a round moves between states (cancel, worker lost, resume, retry). No training here:
tests/training/test_runs_train.py runs real rounds."""

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from platform_common.errors import Conflict
from training.models import ModelKind, ModelVersion, RunStatus, StageStatus, TrainingRun
from training.services import runs, supervisor
from tests.training.factories import arithmetic_project

pytestmark = pytest.mark.django_db


@pytest.fixture
def filled(project, member):
    return arithmetic_project(project, member, prompts=12)


def test_first_round_builds_a_base_then_sft_reward_and_policy(filled, owner):
    run = runs.run_create(project=filled, by=owner, recipe="rloo")
    assert run.number == 1 and run.status == RunStatus.QUEUED
    assert list(run.stages.values_list("name", flat=True)) == ["base", "sft", "reward", "rloo"]


def test_later_rounds_reuse_the_projects_base(filled, owner):
    ModelVersion.objects.create(project=filled, kind=ModelKind.BASE, version=1, folder="x")
    run = runs.run_create(project=filled, by=owner)
    assert list(run.stages.values_list("name", flat=True)) == ["sft", "reward", "ppo"]
    assert runs.run_create(project=filled, by=owner).number == 2


@pytest.mark.parametrize("kwargs, field, words", [
    ({"recipe": "gossip"}, "recipe", "ppo, rloo, dpo"),
    ({"preset": "huge"}, "preset", "tiny"),
    ({"base_source": "relative/dir"}, "base_source", "the name of a registered base model or a model directory"),
    ({"config": {"dpo": {}}}, "config", "no stage named dpo"),
    ({"config": {"sft": {"learning_rate": "fast"}}}, "config", "learning_rate"),
    ({"config": {"sft": {"no_such_setting": 1}}}, "config", "no_such_setting"),
    ({"config": {"ppo": {"per_device_train_batch_size": 3, "num_mini_batches": 2}}}, "config", "divide"),
])
def test_a_bad_configuration_is_refused_before_anything_starts(filled, owner, kwargs, field, words):
    with pytest.raises(ValidationError) as refused:
        runs.run_create(project=filled, by=owner, **kwargs)
    assert field in refused.value.message_dict
    assert words in " ".join(refused.value.message_dict[field])
    assert not TrainingRun.objects.exists()


def test_a_project_with_no_text_and_no_base_is_told_what_to_do(project, owner):
    with pytest.raises(ValidationError, match="import a text corpus"):
        runs.run_create(project=project, by=owner)


def test_cancelling_a_queued_round_ends_it_at_once(filled, owner):
    run = runs.run_cancel(run=runs.run_create(project=filled, by=owner))
    assert run.status == RunStatus.CANCELLED
    assert set(run.stages.values_list("status", flat=True)) == {StageStatus.CANCELLED}
    with pytest.raises(Conflict, match="already cancelled"):
        runs.run_cancel(run=run)
    assert supervisor.run_execute(run_id=run.id) == RunStatus.CANCELLED  # a worker that picks it up later does nothing


def test_a_round_whose_worker_stopped_heartbeating_is_marked_lost_and_can_be_resumed(filled, owner):
    run = runs.run_create(project=filled, by=owner)
    stage = run.stages.get(name="sft")
    TrainingRun.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING, worker="node7:4242", heartbeat_at=timezone.now() - timezone.timedelta(seconds=300)
    )
    stage.status, stage.step = StageStatus.RUNNING, 17
    stage.save()
    fresh = runs.run_create(project=filled, by=owner)
    TrainingRun.objects.filter(pk=fresh.pk).update(status=RunStatus.RUNNING, heartbeat_at=timezone.now())

    assert runs.runs_reap_lost() == [run.id]
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "worker lost" in run.error and "sft at step 17" in run.error
    assert TrainingRun.objects.get(pk=fresh.pk).status == RunStatus.RUNNING  # still heartbeating
    assert not ModelVersion.objects.exists()

    resumed = runs.run_resume(run=run)
    assert resumed.status == RunStatus.QUEUED and resumed.error == ""
    assert resumed.stages.get(name="sft").resume is True
    with pytest.raises(Conflict, match="only a failed round"):
        runs.run_resume(run=resumed)


def test_a_failed_round_can_be_retried_as_a_new_round(filled, owner):
    run = runs.run_create(project=filled, by=owner, config={"sft": {"learning_rate": 1e-3}}, seed=7)
    with pytest.raises(Conflict, match="only a failed or cancelled"):
        runs.run_retry(run=run, by=owner)
    TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.FAILED)
    run.refresh_from_db()
    retried = runs.run_retry(run=run, by=owner)
    assert (retried.number, retried.retry_of, retried.seed, retried.config) == (2, run, 7, {"sft": {"learning_rate": 1e-3}})


def test_round_endpoints_check_who_is_asking(filled, owner, member, outsider, api_as):
    create = f"/api/projects/{filled.id}/runs/create/"
    assert api_as(None).post(create, {}, format="json").status_code in (401, 403)
    assert api_as(outsider).post(create, {}, format="json").status_code == 404
    assert api_as(member).post(create, {}, format="json").status_code == 403
    refused = api_as(owner).post(create, {"config": {"sft": {"learning_rate": "fast"}}}, format="json")
    assert refused.status_code == 400 and "learning_rate" in str(refused.json())
    created = api_as(owner).post(create, {"preset": "tiny", "algorithm": "ppo"}, format="json")
    assert created.status_code == 201
    run = created.json()
    assert [s["name"] for s in run["stages"]] == ["base", "sft", "reward", "ppo"] and run["can_cancel"]
    detail = f"/api/runs/{run['id']}/"
    assert api_as(outsider).get(detail).status_code == 404
    assert api_as(member).get(detail).status_code == 403
    assert api_as(owner).get(detail).json()["status"] == "queued"
    assert api_as(member).post(f"{detail}cancel/").status_code == 403
    cancelled = api_as(owner).post(f"{detail}cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert api_as(owner).post(f"{detail}cancel/").status_code == 409
    assert api_as(owner).post(f"{detail}resume/").status_code == 409
    retried = api_as(owner).post(f"{detail}retry/")
    assert retried.status_code == 201 and retried.json()["number"] == 2 and retried.json()["retry_of"] == run["id"]
    listed = api_as(owner).get(f"/api/projects/{filled.id}/runs/").json()["results"]
    assert [r["number"] for r in listed] == [2, 1]
    assert api_as(member).get(f"/api/projects/{filled.id}/runs/").status_code == 403
    assert api_as(owner).get(f"/api/projects/{filled.id}/models/").json()["results"] == []
