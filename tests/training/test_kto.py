"""The kto recipe: SFT, then KTO on the unpaired judgements (no pairs, no reward model).

A real round on a tiny registered base, run by a real worker, exports the unpaired kind, registers a KTO policy
with its held-out evaluation and hands TRL's KTOConfig the settings asked for; a round whose judgements are all
good is refused before SFT trains; settings TRL would refuse late are refused by the API before anything is
queued."""

import json

import pytest
from django.conf import settings

from annotate.models import Ranking
from tests.helpers import stop
from tests.training.factories import arithmetic_project
from tests.training.test_dpo import QUICK_SFT, with_held_out_pairs
from tests.training.test_grpo_orpo import registered_base
from tests.training.test_runs_train import wait_for, worker
from training import selectors
from training.models import (
    MetricPoint,
    ModelKind,
    ModelVersion,
    RunStage,
    RunStatus,
    TrainingRun,
)
from training.services import runs, supervisor

SETTINGS = {"beta": 0.3, "desirable_weight": 1.25, "undesirable_weight": 0.8, "loss_type": "kto"}


@pytest.fixture
def stores(tmp_path, settings):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"
    settings.MODEL_STORE = tmp_path / "models"
    return tmp_path


@pytest.mark.slow
@pytest.mark.training
@pytest.mark.django_db(transaction=True)
def test_a_kto_round_registers_a_policy_with_its_metrics_and_hands_trl_the_settings(project, member, owner, stores):
    # Accepted demonstrations ranked first (desirable) above two wrong sums, the last of them undesirable.
    with_held_out_pairs(project, member)
    base = registered_base(project)
    config = {"sft": {**QUICK_SFT, "max_steps": 1}, "kto": {**SETTINGS, "max_steps": 4, "save_every": 2}}
    run = runs.run_create(project=project, by=owner, preset="tiny", recipe="kto", seed=2, config=config)
    assert list(run.stages.values_list("name", flat=True)) == ["sft", "kto"]
    process = worker(stores)
    try:
        wait_for(lambda: TrainingRun.objects.get(pk=run.pk).is_finished(), timeout=240, what="the KTO round")
    finally:
        stop(process)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error

    versions = {v.kind: v for v in ModelVersion.objects.filter(project=project, run=run)}
    assert set(versions) == {ModelKind.SFT, ModelKind.POLICY}  # no reward model
    policy = versions[ModelKind.POLICY]
    assert policy.algorithm == "kto" and policy.parent == versions[ModelKind.SFT] and policy.reward_model is None
    assert versions[ModelKind.SFT].parent == base
    assert policy.snapshot.kind == "unpaired" and set(policy.snapshot.rows) == {"train", "test"}
    metrics = policy.metrics
    assert metrics["eval_desirable"] > 0 and metrics["eval_undesirable"] > 0
    for share in ("desirable_accuracy", "undesirable_accuracy", "label_accuracy"):
        assert 0 <= metrics[share] <= 1
    assert {"mean_reward_desirable", "mean_reward_undesirable", "mean_margin", "kl", "train_runtime"} <= set(metrics)
    assert metrics["mean_margin"] == pytest.approx(metrics["mean_reward_desirable"] - metrics["mean_reward_undesirable"])

    folder = settings.MODEL_STORE / policy.folder
    sft_folder = settings.MODEL_STORE / versions[ModelKind.SFT].folder
    assert (folder / "tokenizer.json").read_text() == (sft_folder / "tokenizer.json").read_text()
    summary = json.loads((folder / "platform_training.json").read_text())
    assert summary["stage"] == "kto" and summary["base_model"] == str(sft_folder)
    # What TRL's KTOTrainer itself resolved, inside the child: the settings, the KL term and the fixed order it needs.
    work = settings.MODEL_STORE / f"project-{project.id}/run-{run.number}/kto.work"
    events = [json.loads(line) for line in (work / "progress.jsonl").read_text().splitlines()]
    start = next(e for e in events if e["event"] == "start")
    assert start["trl_config"] | SETTINGS == start["trl_config"]
    assert start["trl_config"]["kl_term"] and start["trl_config"]["train_sampling_strategy"] == "sequential"
    assert start["desirable_rows"] + start["undesirable_rows"] == policy.snapshot.rows["train"]
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [2, 4]
    stage = RunStage.objects.get(run=run, name="kto")
    assert stage.step == stage.total == 4
    assert MetricPoint.objects.filter(stage=stage).exists()
    assert {"loss", "kl", "mean_reward_desirable"} <= set(selectors.run_curves(run)["kto"])


@pytest.mark.training
@pytest.mark.django_db(transaction=True)
def test_a_round_with_no_undesirable_reply_is_refused_before_sft_trains(project, member, owner, stores):
    arithmetic_project(project, member, prompts=12)
    Ranking.objects.all().delete()  # only the accepted demonstrations are left: every row desirable
    registered_base(project)
    run = runs.run_create(project=project, by=owner, preset="tiny", recipe="kto")
    assert supervisor.run_execute(run_id=run.id) == RunStatus.FAILED
    run.refresh_from_db()
    assert run.error.startswith("refused before training: kto: KTO needs both desirable and undesirable rows")
    assert "and 0 undesirable" in run.error
    assert not ModelVersion.objects.filter(run=run).exists()
    assert not RunStage.objects.filter(run=run, started_at__isnull=False).exists()


@pytest.mark.django_db
def test_settings_trl_would_refuse_late_are_refused_by_the_api_with_the_reason(project, member, owner, api_as):
    arithmetic_project(project, member, prompts=12)  # enough to train on: only the settings are refused
    create = f"/api/projects/{project.id}/runs/create/"
    refused = api_as(owner).post(create, {"recipe": "kto", "config": {"kto": {"per_device_train_batch_size": 1}}},
                                 format="json")
    assert refused.status_code == 400
    [problem] = refused.json()["config"]
    assert problem.startswith("kto: per_device_train_batch_size must be at least 2 for the kto loss, not 1: KTO "
                              "estimates its KL term from the other rows of the same batch")
    refused = api_as(owner).post(create, {"recipe": "kto", "config": {"kto": {"loss_type": "sigmoid"}}}, format="json")
    assert refused.status_code == 400
    assert refused.json()["config"] == ["kto: loss_type must be one of kto, apo_zero_unpaired, not 'sigmoid'"]
    refused = api_as(owner).post(create, {"recipe": "kto", "config": {"kto": {"desirable_weight": 0}}}, format="json")
    assert refused.status_code == 400 and "desirable_weight must be greater than 0" in str(refused.json())
    assert not TrainingRun.objects.exists()

    # apo_zero_unpaired estimates no KL term: a batch of one is fine there.
    created = api_as(owner).post(create, {"recipe": "kto", "config": {
        "kto": {"loss_type": "apo_zero_unpaired", "per_device_train_batch_size": 1}}}, format="json")
    assert created.status_code == 201 and [s["name"] for s in created.json()["stages"]] == ["base", "sft", "kto"]
