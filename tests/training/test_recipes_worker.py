"""The recipes beyond PPO around the worker: a worker killed mid-DPO leaves the round failed (worker lost), and a
new worker resumes DPO from its checkpoint instead of step 0; every new recipe trains in two gloo processes on CPU
(`processes` 2, as `manage.py train --processes 2` sets it) and registers its policy.

Real rounds on a tiny registered base. What each stage learns is tested elsewhere (test_dpo, test_grpo_orpo,
test_trainers): here the stages train two steps, SFT and the reward model one where a later stage only has to
start from them."""

import json
import signal

import pytest
from django.conf import settings

from tests.helpers import stop
from tests.training.test_dpo import QUICK_SFT, with_held_out_pairs
from tests.training.test_grpo_orpo import registered_base
from tests.training.test_runs_train import stage_children, wait_for, worker
from training.models import (
    MetricPoint,
    ModelKind,
    ModelVersion,
    RunStage,
    RunStatus,
    StageStatus,
    TrainingRun,
)
from training.services import runs, supervisor
from training.trainers import stages

pytestmark = [pytest.mark.slow, pytest.mark.training, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def stores(tmp_path, settings):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"
    settings.MODEL_STORE = tmp_path / "models"
    return tmp_path


def _events(work_dir) -> list[dict]:
    return [json.loads(line) for line in (work_dir / "progress.jsonl").read_text().splitlines()]


def test_a_worker_killed_mid_dpo_is_resumed_by_another_worker_from_its_checkpoint(project, member, owner, stores):
    with_held_out_pairs(project, member)
    registered_base(project)
    # A checkpoint every 4 steps; a second a step keeps DPO running for the kill after the first.
    run = runs.run_create(project=project, by=owner, preset="tiny", recipe="dpo", seed=4, config={
        "sft": {**QUICK_SFT, "max_steps": 1}, "dpo": {"max_steps": 8, "save_every": 4, "step_delay_s": 1.0}})
    process = worker(stores)
    try:
        dpo = wait_for(
            lambda: RunStage.objects.filter(run=run, name="dpo", status=StageStatus.RUNNING)
            .exclude(last_checkpoint="").first(),
            timeout=200, what="DPO to save its first checkpoint", run=run,
        )
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        stop(process)
    work_dir = settings.MODEL_STORE / f"project-{project.id}/run-1/dpo.work"
    wait_for(lambda: not stage_children(work_dir), timeout=15, what="the orphaned trainer to die")
    checkpoint = int(dpo.last_checkpoint.rsplit("-", 1)[1])
    assert checkpoint == 4

    # What the periodic reaper (training.tasks.runs_reap_lost) does a minute after the last heartbeat, without the wait.
    assert runs.runs_reap_lost(older_than_s=0) == [run.id]
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "during dpo" in run.error and run.error.startswith("worker lost")
    assert not ModelVersion.objects.filter(kind=ModelKind.POLICY).exists()
    before = MetricPoint.objects.filter(stage=dpo).order_by("-id").values_list("id", flat=True).first()

    runs.run_resume(run=run)
    process = worker(stores)
    try:
        wait_for(lambda: TrainingRun.objects.get(pk=run.pk).is_finished(), timeout=200, what="the resumed round")
    finally:
        stop(process)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    stage = RunStage.objects.get(pk=dpo.pk)
    assert stage.step == stage.total == 8
    # The resumed trainer started at the checkpoint's step: its first logged step is the one after it, not 1.
    resumed = list(MetricPoint.objects.filter(stage=dpo, id__gt=before).order_by("id").values_list("step", flat=True))
    assert resumed == list(range(checkpoint + 1, 9)), resumed
    starts = [e for e in _events(work_dir) if e["event"] == "start"]
    assert [e["step"] for e in starts] == [0, checkpoint]

    [policy] = ModelVersion.objects.filter(project=project, kind=ModelKind.POLICY)
    sft = ModelVersion.objects.get(project=project, kind=ModelKind.SFT)
    assert policy.run == run and policy.algorithm == "dpo" and policy.parent == sft
    assert (settings.MODEL_STORE / policy.folder / "config.json").is_file()
    assert 0 <= policy.metrics["preference_accuracy"] <= 1


# The stages of the recipes beyond PPO (dpo and kto: SFT, DPO or KTO; grpo and rloo: SFT, reward, GRPO or RLOO;
# orpo: ORPO), each once, in one test-only recipe: one round, so that DPO, KTO, GRPO and RLOO start from one SFT
# model and GRPO and RLOO score with one reward model instead of each round training its own.
NEW_RECIPE_STAGES = ("sft", "reward", "dpo", "kto", "grpo", "rloo", "orpo")
POLICY_STAGES = ("dpo", "kto", "grpo", "rloo", "orpo")


@pytest.fixture
def every_new_recipe():
    recipe = stages.recipe_register(stages.Recipe("every_new", "Every recipe beyond PPO", NEW_RECIPE_STAGES,
                                                  "the stages of dpo, kto, grpo, rloo and orpo in one round (tests)"))
    yield recipe.name
    stages.RECIPES.pop(recipe.name)


def test_every_new_recipe_trains_in_two_processes_and_registers_its_policy(
    project, member, owner, stores, every_new_recipe
):
    with_held_out_pairs(project, member)
    base = registered_base(project)
    # SFT and the reward model only have to exist for the stages after them: one step each.
    config = {"sft": {**QUICK_SFT, "max_steps": 1}, "reward": {"max_steps": 1, "eval_max_rows": 4},
              **{name: {"max_steps": 2, "eval_max_rows": 4} for name in POLICY_STAGES}}
    run = runs.run_create(project=project, by=owner, preset="tiny", recipe=every_new_recipe, processes=2,
                          config=config)
    # In this process, as test_lora does: each stage is still a child, here an `accelerate launch` of two processes.
    assert supervisor.run_execute(run_id=run.id) == RunStatus.SUCCEEDED, TrainingRun.objects.get(pk=run.pk).error

    for name in NEW_RECIPE_STAGES:
        # Both processes joined every stage (the start event gathers each rank) and one of them reported.
        starts = [e for e in _events(settings.MODEL_STORE / f"project-{project.id}/run-{run.number}/{name}.work")
                  if e["event"] == "start"]
        assert [(e["world_size"], e["ranks"]) for e in starts] == [(2, [0, 1])], name
    versions = ModelVersion.objects.filter(run=run)
    sft, reward = versions.get(kind=ModelKind.SFT), versions.get(kind=ModelKind.REWARD)
    policies = {v.algorithm: v for v in versions.filter(kind=ModelKind.POLICY)}
    assert set(policies) == set(POLICY_STAGES)
    for name, policy in policies.items():
        stage = RunStage.objects.get(run=run, name=name)
        assert stage.step == stage.total == 2 and stage.model_version == policy
        assert (settings.MODEL_STORE / policy.folder / "config.json").is_file()
        assert policy.metrics["eval_rows"] > 0 and "train_runtime" in policy.metrics, name
        assert policy.parent == (base if name == "orpo" else sft)
        assert policy.reward_model == (reward if name in ("grpo", "rloo") else None)
