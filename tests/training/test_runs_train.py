"""Real training rounds on a tiny model, run by real workers: every stage registers a model with
its held-out evaluation; a killed worker leaves the round failed (worker lost) and it resumes from
its checkpoint; a cancel stops PPO within seconds and registers nothing."""

import signal
import subprocess
import sys
import time

import pytest
from django.conf import settings

from procrastinate.contrib.django.models import ProcrastinateJob

from training import selectors
from training.models import MetricPoint, ModelKind, ModelVersion, RunStage, RunStatus, StageStatus, TrainingRun
from training.services import runs, supervisor
from tests.helpers import REPO_ROOT, child_env, stop, wait_until
from tests.training.factories import arithmetic_project

pytestmark = [pytest.mark.slow, pytest.mark.training, pytest.mark.django_db(transaction=True)]

# What this test is about is the worker and the round around the stages: the tiny preset's stages
# learn, evaluate and resume in tests/training/test_trainers.py, so here they train a few steps.
# PPO keeps the preset's 8 updates, with a checkpoint after 4, to be killed and resumed between.
FEW_STEPS = {"base": {"max_steps": 4}, "sft": {"max_steps": 4}, "reward": {"max_steps": 4}}
# Round 2 only has to reach PPO to be cancelled there.
ONE_STEP = {"sft": {"max_steps": 1}, "reward": {"max_steps": 1}}


@pytest.fixture(autouse=True)
def stores(tmp_path, settings):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"
    settings.MODEL_STORE = tmp_path / "models"
    return tmp_path


def worker(stores, queues="training", **env):
    """A real worker, as `manage.py serve` runs in production."""
    env = child_env(SNAPSHOT_STORE=str(stores / "snapshots"), MODEL_STORE=str(stores / "models"), **env)
    return subprocess.Popen(
        [sys.executable, "manage.py", "worker", "--queues", queues],
        cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def wait_for(predicate, *, timeout, what, run=None):
    """Wait until `predicate()` holds; fail at once if the round ends first."""

    def ready():
        found = predicate()
        if not found and run is not None:
            run.refresh_from_db()
            assert not run.is_finished(), f"round {run.number} {run.status} while waiting for {what}: {run.error}"
        return found

    return wait_until(ready, timeout=timeout, interval=0.5, what=what)


def cancel_mid_stage(run, stage: str, *, timeout: float) -> float:
    """Wait until the round's `stage` has made a step, cancel the round, wait for it to end; return the
    seconds from the cancel to the end."""
    wait_for(
        lambda: RunStage.objects.filter(run=run, name=stage, status=StageStatus.RUNNING, step__gte=1).exists(),
        timeout=timeout, what=f"round {run.number}'s {stage} to make progress", run=run,
    )
    asked = time.monotonic()
    runs.run_cancel(run=run)
    wait_for(lambda: TrainingRun.objects.get(pk=run.pk).is_finished(), timeout=30, what="the cancel")
    return time.monotonic() - asked


def stage_children(spec_folder) -> list[int]:
    """Pids of trainer processes still running for a stage."""
    found = subprocess.run(["pgrep", "-f", f"{spec_folder}/spec.json"], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def test_a_round_survives_its_worker_being_killed_and_a_second_round_is_cancelled_mid_ppo(
    project, member, owner, stores
):
    arithmetic_project(project, member, prompts=40)
    run = runs.run_create(project=project, by=owner, preset="tiny", seed=1, config=FEW_STEPS)
    process = worker(stores)
    try:
        # Kill the worker once PPO has saved a checkpoint and made progress.
        ppo = wait_for(
            lambda: RunStage.objects.filter(run=run, name="ppo", status=StageStatus.RUNNING)
            .exclude(last_checkpoint="").first(),
            timeout=400, what="PPO to save its first checkpoint", run=run,
        )
        steps_before = RunStage.objects.get(pk=ppo.pk).step
        started_at = TrainingRun.objects.get(pk=run.pk).started_at
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed_at = time.monotonic()
    finally:
        stop(process)
    work_dir = settings.MODEL_STORE / f"project-{project.id}/run-1/ppo.work"
    # The trainer dies with its worker: nothing keeps training unseen.
    wait_for(lambda: not stage_children(work_dir), timeout=15, what="the orphaned trainer to die")
    assert not (settings.MODEL_STORE / f"project-{project.id}/run-1/ppo").exists()

    # A lone worker of another queue reaps it: within WORKER_LOST_AFTER_SECONDS (5 here) and one reaper period
    # (10 s) of the last heartbeat, and it closes the Procrastinate job the killed worker left doing.
    reaper = worker(stores, queues="exports", WORKER_LOST_AFTER_SECONDS="5")
    try:
        wait_until(lambda: TrainingRun.objects.get(pk=run.pk).is_finished(), timeout=40, interval=0.5,
                   what="the reaper to fail the lost round")
        reaped_after = time.monotonic() - killed_at
        wait_until(lambda: not ProcrastinateJob.objects.filter(status="doing").exists(), timeout=30, interval=0.5,
                   what="the reaper to close the killed worker's Procrastinate job")
    finally:
        stop(reaper)
    assert reaped_after < 5 + 10 + 5, reaped_after  # plus a heartbeat period: the last beat was up to 5 s earlier
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.error.startswith("worker lost"), run.error
    assert "during ppo" in run.error and run.resumable
    assert not ModelVersion.objects.filter(kind=ModelKind.POLICY).exists()

    runs.run_resume(run=run)
    assert supervisor.run_execute(run_id=run.id) == RunStatus.SUCCEEDED
    run.refresh_from_db()
    payload = selectors.run_payload(run)
    assert [(s["name"], s["status"]) for s in payload["stages"]] == [
        ("base", "succeeded"), ("sft", "succeeded"), ("reward", "succeeded"), ("ppo", "succeeded")
    ]
    ppo = RunStage.objects.get(run=run, name="ppo")
    assert ppo.step == ppo.total > steps_before > 0
    # After the resume the steps continued from the checkpoint instead of starting again at 1.
    resumed_steps = list(MetricPoint.objects.filter(stage=ppo).values_list("step", flat=True))
    assert resumed_steps == sorted(resumed_steps) and max(resumed_steps) == ppo.total
    # Each step once in the curve (the steps redone after the checkpoint replaced their first points), and the
    # round still says when it first started.
    assert len(resumed_steps) == len(set(resumed_steps))
    assert TrainingRun.objects.get(pk=run.pk).started_at == started_at

    versions = {v.kind: v for v in ModelVersion.objects.filter(project=project)}
    assert set(versions) == {"base", "sft", "reward", "policy"}
    assert versions["sft"].parent == versions["base"] and versions["policy"].parent == versions["sft"]
    assert versions["policy"].reward_model == versions["reward"]
    for version in versions.values():
        assert (settings.MODEL_STORE / version.folder / "config.json").is_file()
    assert {"bleu", "rouge_l", "eval_loss"} <= set(versions["sft"].metrics)
    assert 0 <= versions["reward"].metrics["reward_accuracy"] <= 1
    assert {"mean_reward", "kl"} <= set(versions["policy"].metrics)
    curves = selectors.run_curves(run)
    assert {"base", "sft", "reward", "ppo"} <= set(curves) and "loss" in curves["sft"]

    # Round 2 reuses the base; cancel it while PPO trains.
    second = runs.run_create(project=project, by=owner, preset="tiny", seed=2, config=ONE_STEP)
    assert list(second.stages.values_list("name", flat=True)) == ["sft", "reward", "ppo"]
    process = worker(stores)
    try:
        took = cancel_mid_stage(second, "ppo", timeout=400)
    finally:
        stop(process)
    second.refresh_from_db()
    assert second.status == RunStatus.CANCELLED and took < 15, took
    assert RunStage.objects.get(run=second, name="ppo").status == StageStatus.CANCELLED
    assert ModelVersion.objects.filter(kind=ModelKind.POLICY).count() == 1  # nothing registered by round 2's PPO
    assert not stage_children(settings.MODEL_STORE / f"project-{project.id}/run-2/ppo.work")
