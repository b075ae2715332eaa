"""The dpo recipe: SFT, then DPO on the preference pairs, with no reward model.

A real round on a tiny adopted base, run by a real worker, registers an SFT model and a DPO policy
with its held-out evaluation, hands TRL the loss asked for, and a second round is cancelled mid-DPO;
a bad loss is refused by the API before anything is queued; the page and the API offer the recipe."""

import json

import pytest
from django.conf import settings
from django.urls import reverse

from annotate.models import Message
from training import selectors
from training.exporters.rows import is_heldout
from training.models import MetricPoint, ModelKind, ModelVersion, RunStage, RunStatus, StageStatus, TrainingRun
from training.services import runs
from tests.helpers import stop
from tests.training.factories import arithmetic_project
from tests.training.test_runs_train import cancel_mid_stage, stage_children, wait_for, worker

TEXTS = [f"What is {a} + {b}? {a + b}" for a in range(10) for b in range(10)]
# SFT only has to make a model to start DPO from: two steps, no held-out evaluation (tests/training/test_runs_train.py
# checks SFT's own).
QUICK_SFT = {"max_steps": 2, "eval_max_rows": 0}


@pytest.fixture
def stores(tmp_path, settings):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"
    settings.MODEL_STORE = tmp_path / "models"
    return tmp_path


@pytest.fixture
def tiny_base(tmp_path, settings):
    """A model directory to adopt as the base: adopting trains nothing, so the round spends its time on SFT and DPO."""
    from training.trainers.scratch import gpt_from_config, tokenizer_train

    settings.BASE_MODEL_ROOTS = [tmp_path]  # a round adopts only from an allowed root
    folder = tmp_path / "adopt"
    tokenizer = tokenizer_train(TEXTS, vocab_size=300)
    gpt_from_config(tokenizer, layers=1, heads=2, width=32, context=128).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def with_held_out_pairs(project, member):
    """Fill the project as arithmetic_project does, until at least one prompt is held out: the split is a
    seeded hash of the prompt's text, and 16 prompts hold none out about one time in five."""
    for seed in range(20):
        arithmetic_project(project, member, prompts=16 if seed == 0 else 4, seed=seed)
        roots = Message.objects.filter(project=project, parent__isnull=True).values_list("id", flat=True)
        if any(is_heldout(project.id, root) for root in roots):
            return project
    raise AssertionError("no prompt held out")


def _start_event(progress_file):
    return next(e for e in map(json.loads, progress_file.read_text().splitlines()) if e["event"] == "start")


@pytest.mark.slow
@pytest.mark.training
@pytest.mark.django_db(transaction=True)
def test_a_dpo_round_registers_sft_and_a_policy_without_a_reward_model_and_a_cancel_stops_dpo(
    project, member, owner, stores, tiny_base
):
    with_held_out_pairs(project, member)
    losses = {"loss_type": ["sigmoid", "ipo"], "loss_weights": [1.0, 0.5], "beta": 0.2}
    run = runs.run_create(project=project, by=owner, preset="tiny", recipe="dpo", base_source=str(tiny_base),
                          config={"sft": QUICK_SFT, "dpo": losses}, seed=3)
    assert list(run.stages.values_list("name", flat=True)) == ["base", "sft", "dpo"]
    process = worker(stores)
    try:
        wait_for(lambda: TrainingRun.objects.get(pk=run.pk).is_finished(), timeout=300, what="the DPO round")
        run.refresh_from_db()
        assert run.status == RunStatus.SUCCEEDED, run.error

        # Round 2 reuses the base; cancel it while DPO trains.
        second = runs.run_create(project=project, by=owner, preset="tiny", recipe="dpo",
                                 config={"sft": QUICK_SFT, "dpo": {"max_steps": 400, "step_delay_s": 0.5}})
        assert list(second.stages.values_list("name", flat=True)) == ["sft", "dpo"]
        took = cancel_mid_stage(second, "dpo", timeout=200)
    finally:
        stop(process)

    payload = selectors.run_payload(run)
    assert [(s["name"], s["status"]) for s in payload["stages"]] == [
        ("base", "succeeded"), ("sft", "succeeded"), ("dpo", "succeeded")
    ]
    versions = {v.kind: v for v in ModelVersion.objects.filter(project=project, run=run)}
    assert set(versions) == {ModelKind.BASE, ModelKind.SFT, ModelKind.POLICY}  # no reward model
    policy = versions[ModelKind.POLICY]
    assert policy.algorithm == "dpo" and policy.parent == versions[ModelKind.SFT] and policy.reward_model is None
    assert policy.snapshot.kind == "preference"
    metrics = policy.metrics
    assert metrics["eval_pairs"] > 0 and 0 <= metrics["preference_accuracy"] <= 1
    assert {"mean_margin", "kl", "mean_reply_tokens", "train_runtime"} <= set(metrics)
    assert "mean_reward" not in metrics  # nothing to score replies with: no reward model in this round

    folder = settings.MODEL_STORE / policy.folder
    sft_folder = settings.MODEL_STORE / versions[ModelKind.SFT].folder
    # The policy carries the SFT model's tokenizer, its own pad token (not EOS) included.
    assert (folder / "tokenizer.json").read_text() == (sft_folder / "tokenizer.json").read_text()
    assert json.loads((folder / "tokenizer_config.json").read_text())["pad_token"] == "<|pad|>"
    summary = json.loads((folder / "platform_training.json").read_text())
    assert summary["stage"] == "dpo" and summary["base_model"] == str(sft_folder) and summary["reward_model"] is None
    # What TRL's DPOTrainer itself resolved, inside the child.
    start = _start_event(settings.MODEL_STORE / f"project-{project.id}/run-1/dpo.work/progress.jsonl")
    assert start["trl_config"]["loss_type"] == ["sigmoid", "ipo"]
    assert start["trl_config"]["loss_weights"] == [1.0, 0.5] and start["trl_config"]["beta"] == 0.2
    dpo = RunStage.objects.get(run=run, name="dpo")
    assert dpo.step == dpo.total == 8
    assert MetricPoint.objects.filter(stage=dpo).exists()
    assert {"loss", "reward_accuracy"} <= set(selectors.run_curves(run)["dpo"])

    second.refresh_from_db()
    assert second.status == RunStatus.CANCELLED and took < 5, took
    assert RunStage.objects.get(run=second, name="dpo").status == StageStatus.CANCELLED
    assert ModelVersion.objects.filter(kind=ModelKind.POLICY).count() == 1  # nothing registered by round 2's DPO
    assert not (settings.MODEL_STORE / f"project-{project.id}/run-2/dpo").exists()
    assert not stage_children(settings.MODEL_STORE / f"project-{project.id}/run-2/dpo.work")


@pytest.mark.django_db
def test_a_bad_loss_is_refused_by_the_api_before_anything_is_queued(project, member, owner, api_as):
    arithmetic_project(project, member, prompts=12)  # enough to train on: only the settings are refused
    create = f"/api/projects/{project.id}/runs/create/"
    refused = api_as(owner).post(create, {"algorithm": "dpo", "config": {"dpo": {"loss_type": ["sigmoid", "dpo"]}}},
                                 format="json")
    assert refused.status_code == 400
    [problem] = refused.json()["config"]
    assert problem.startswith("dpo: unknown loss_type 'dpo': TRL's DPO accepts sigmoid, hinge, ipo,")
    refused = api_as(owner).post(create, {"algorithm": "dpo", "config": {
        "dpo": {"loss_type": ["sigmoid", "ipo"], "loss_weights": [1.0]}}}, format="json")
    assert refused.status_code == 400 and "loss_weights has 1 weight for 2 loss types" in str(refused.json())
    assert not TrainingRun.objects.exists()

    created = api_as(owner).post(create, {"algorithm": "dpo", "config": {"dpo": {"loss_type": "ipo"}}}, format="json")
    assert created.status_code == 201
    assert [s["name"] for s in created.json()["stages"]] == ["base", "sft", "dpo"]
    assert created.json()["algorithm"] == "dpo"


@pytest.mark.django_db
def test_the_training_page_offers_dpo(client, project, owner):
    client.force_login(owner)
    page = client.get(reverse("training:runs", args=[project.id]))
    assert page.status_code == 200 and b'<option value="dpo">' in page.content
