"""The grpo recipe (SFT, reward model, then GRPO against it and the installation's verifiable reward functions)
and the orpo recipe (one reference-free stage from the base, on the preference pairs).

Real rounds on a tiny registered base, run by a real worker: GRPO hands TRL the reward model and a reward
function the installation offers, by the path REWARD_FUNCTIONS gives, registers a policy with its held-out
evaluation, and a second round is cancelled mid-GRPO within 5 s; ORPO registers a policy trained from the base
with its held-out log odds. Both train a LoRA adapter (all weights: tests/training/test_recipes_worker.py) and
register adapter versions that generate as their merged copies do. The API refuses a reward function the
installation does not offer."""

import json

import pytest
from django.conf import settings
from django.urls import reverse

from tests.helpers import stop
from tests.platform.test_settings import load as settings_load
from tests.training.factories import arithmetic_project
from tests.training.test_dpo import QUICK_SFT, TEXTS, with_held_out_pairs
from tests.training.test_lora import LORA
from tests.training.test_runs_train import (
    cancel_mid_stage,
    stage_children,
    wait_for,
    worker,
)
from training import selectors
from training.models import (
    MetricPoint,
    ModelKind,
    ModelVersion,
    RunStage,
    RunStatus,
    StageStatus,
    TrainingRun,
)
from training.services import runs

ENDS_WITH_PERIOD = "tests.training.reward_functions.ends_with_period"
# The reward model only has to exist for GRPO to score with: two steps (and round 2's stages before GRPO, one).
QUICK_REWARD = {"max_steps": 2}


@pytest.fixture
def stores(tmp_path, settings):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"
    settings.MODEL_STORE = tmp_path / "models"
    return tmp_path


def registered_base(project) -> ModelVersion:
    """Register a tiny base model for the project, as a first round would have: its rounds then train no base."""
    from training.trainers.scratch import gpt_from_config, tokenizer_train

    folder = f"project-{project.id}/base-tiny"
    tokenizer = tokenizer_train(TEXTS, vocab_size=300)
    gpt_from_config(tokenizer, layers=1, heads=2, width=32, context=128).save_pretrained(settings.MODEL_STORE / folder)
    tokenizer.save_pretrained(settings.MODEL_STORE / folder)
    return ModelVersion.objects.create(project=project, kind=ModelKind.BASE, version=1, folder=folder)


def _start_event(stage_work_dir):
    return next(e for e in map(json.loads, (stage_work_dir / "progress.jsonl").read_text().splitlines())
                if e["event"] == "start")


def adapter_version_generates(folder, *, base_dir) -> None:
    """Check `folder` is a LoRA version (peft's files, the base recorded, merged/) whose trained adapter
    generates, through the platform's generation, what its merged copy does."""
    from safetensors.torch import load_file

    from training.generation import SamplingSettings, backend_for

    assert (folder / "adapter_config.json").is_file() and not (folder / "config.json").exists()
    assert (folder / "merged" / "config.json").is_file() and (folder / "merged" / "tokenizer.json").is_file()
    adapter = json.loads((folder / "platform_training.json").read_text())["adapter"]
    assert adapter["base"] == str(base_dir) and adapter["r"] == LORA["r"]
    lora_b = [t for k, t in load_file(folder / "adapter_model.safetensors").items() if "lora_B" in k]
    assert lora_b and any(t.abs().sum() > 0 for t in lora_b)  # B starts at zero: the adapter trained
    asked = [[{"role": "user", "content": "What is 2 + 3?"}]]
    sampled = SamplingSettings(temperature=1.0, max_new_tokens=8, seed=1)

    def replies(model_dir):
        return backend_for(kind="transformers", model_dir=str(model_dir), device="cpu",
                           min_new_tokens=8).generate(asked, n=2, settings=sampled)

    ours = replies(folder)
    assert all(text.strip() for reply in ours for text in reply) and ours == replies(folder / "merged")


@pytest.mark.slow
@pytest.mark.training
@pytest.mark.django_db(transaction=True)
def test_a_grpo_round_scores_with_the_reward_model_and_an_installation_reward_function_and_a_cancel_stops_grpo(
    project, member, owner, stores, settings, monkeypatch
):
    settings.REWARD_FUNCTIONS = [ENDS_WITH_PERIOD]
    monkeypatch.setenv("REWARD_FUNCTIONS", ENDS_WITH_PERIOD)  # the worker's own settings, read from its environment
    with_held_out_pairs(project, member)
    registered_base(project)
    grpo = {"reward_functions": ["ends_with_period"], "reward_weights": [1.0, 0.5], "kl_coef": 0.1, "adapter": LORA}
    run = runs.run_create(project=project, by=owner, preset="tiny", recipe="grpo", seed=3,
                          config={"sft": QUICK_SFT, "reward": QUICK_REWARD, "grpo": grpo})
    assert list(run.stages.values_list("name", flat=True)) == ["sft", "reward", "grpo"]
    process = worker(stores)
    try:
        wait_for(lambda: TrainingRun.objects.get(pk=run.pk).is_finished(), timeout=300, what="the GRPO round")
        run.refresh_from_db()
        assert run.status == RunStatus.SUCCEEDED, run.error

        # Round 2: cancel it while GRPO trains.
        second = runs.run_create(project=project, by=owner, preset="tiny", recipe="grpo", config={
            "sft": {**QUICK_SFT, "max_steps": 1}, "reward": {"max_steps": 1},
            "grpo": {"reward_functions": ["ends_with_period"], "max_steps": 400, "step_delay_s": 0.5}})
        took = cancel_mid_stage(second, "grpo", timeout=200)
    finally:
        stop(process)

    versions = {v.kind: v for v in ModelVersion.objects.filter(project=project, run=run)}
    assert set(versions) == {ModelKind.SFT, ModelKind.REWARD, ModelKind.POLICY}
    policy = versions[ModelKind.POLICY]
    assert policy.algorithm == "grpo" and policy.parent == versions[ModelKind.SFT]
    assert policy.reward_model == versions[ModelKind.REWARD] and policy.snapshot.kind == "prompts"
    # The child was handed the installation's path for the name the round chose, and nothing else.
    assert policy.config["overrides"]["reward_functions"] == [ENDS_WITH_PERIOD]
    metrics = policy.metrics
    assert {"mean_reward", "kl", "win_rate_vs_sft_optimistic", "mean_reward_sft", "train_runtime"} <= set(metrics)
    assert 0 <= metrics["reward_function/ends_with_period"] <= 1
    assert 0 <= metrics["reward_function/ends_with_period_sft"] <= 1

    # What TRL's GRPOTrainer itself resolved, inside the child: the reward model (by its folder's name), then
    # the function, with the weights asked for; and it logged the function's mean reward as it trained.
    start = _start_event(settings.MODEL_STORE / f"project-{project.id}/run-1/grpo.work")
    assert start["trl_config"]["reward_funcs"] == ["reward", "ends_with_period"]
    assert start["trl_config"]["reward_weights"] == [1.0, 0.5] and start["trl_config"]["beta"] == 0.1
    # Under LoRA TRL loads no reference: the SFT model is the policy with its adapter switched off.
    assert start["adapter"]["r"] == LORA["r"] and start["trl_config"]["reference_loaded"] is False
    adapter_version_generates(settings.MODEL_STORE / policy.folder,
                              base_dir=settings.MODEL_STORE / versions[ModelKind.SFT].folder)
    stage = RunStage.objects.get(run=run, name="grpo")
    assert stage.step == stage.total == 8
    logged = MetricPoint.objects.filter(stage=stage).values_list("values", flat=True)
    assert all(0 <= values["rewards/ends_with_period/mean"] <= 1 for values in logged) and logged
    assert {"loss", "mean_reward", "kl"} <= set(selectors.run_curves(run)["grpo"])

    second.refresh_from_db()
    assert second.status == RunStatus.CANCELLED and took < 5, took
    assert RunStage.objects.get(run=second, name="grpo").status == StageStatus.CANCELLED
    assert ModelVersion.objects.filter(kind=ModelKind.POLICY).count() == 1  # nothing registered by round 2's GRPO
    assert not (settings.MODEL_STORE / f"project-{project.id}/run-2/grpo").exists()
    assert not stage_children(settings.MODEL_STORE / f"project-{project.id}/run-2/grpo.work")


@pytest.mark.slow
@pytest.mark.training
@pytest.mark.django_db(transaction=True)
def test_an_orpo_round_trains_one_stage_from_the_base_on_the_pairs_with_no_reference_or_reward_model(
    project, member, owner, stores
):
    with_held_out_pairs(project, member)
    base = registered_base(project)
    run = runs.run_create(project=project, by=owner, preset="tiny", recipe="orpo",
                          config={"orpo": {"beta": 0.2, "adapter": LORA}})
    assert list(run.stages.values_list("name", flat=True)) == ["orpo"]
    process = worker(stores)
    try:
        wait_for(lambda: TrainingRun.objects.get(pk=run.pk).is_finished(), timeout=200, what="the ORPO round")
    finally:
        stop(process)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error

    [policy] = ModelVersion.objects.filter(project=project, run=run)
    assert policy.kind == ModelKind.POLICY and policy.algorithm == "orpo"
    assert policy.parent == base and policy.reward_model is None and policy.snapshot.kind == "preference"
    metrics = policy.metrics
    assert metrics["eval_pairs"] > 0
    for name in ("preference_accuracy", "preference_accuracy_base"):
        assert 0 <= metrics[name] <= 1
    assert {"mean_log_odds", "mean_log_odds_ratio", "mean_margin", "chosen_nll", "chosen_nll_base"} <= set(metrics)
    assert "kl" not in metrics and "mean_reward" not in metrics  # no reference to measure against, no reward model

    folder, base_folder = settings.MODEL_STORE / policy.folder, settings.MODEL_STORE / base.folder
    assert (folder / "tokenizer.json").read_text() == (base_folder / "tokenizer.json").read_text()
    summary = json.loads((folder / "platform_training.json").read_text())
    assert summary["stage"] == "orpo" and summary["base_model"] == str(base_folder) and summary["reward_model"] is None
    start = _start_event(settings.MODEL_STORE / f"project-{project.id}/run-1/orpo.work")
    assert start["trl_config"]["beta"] == 0.2 and start["pairs_too_long"] == 0
    adapter_version_generates(folder, base_dir=base_folder)
    stage = RunStage.objects.get(run=run, name="orpo")
    assert stage.step == stage.total == 8
    assert {"loss", "reward_accuracy"} <= set(selectors.run_curves(run)["orpo"])


@pytest.mark.django_db
def test_the_api_refuses_a_reward_function_the_installation_does_not_offer(
    project, member, owner, api_as, settings
):
    arithmetic_project(project, member, prompts=12)  # enough to train on: only the reward functions are refused
    create = f"/api/projects/{project.id}/runs/create/"

    def asking(*functions):
        return api_as(owner).post(create, {"recipe": "grpo", "config": {"grpo": {"reward_functions": list(functions)}}},
                                  format="json")

    settings.REWARD_FUNCTIONS = []  # as an installation is by default
    refused = asking("ends_with_period")
    assert refused.status_code == 400
    assert refused.json()["config"] == [("grpo: no reward function named 'ends_with_period' in this installation: "
                                         "it offers none (the REWARD_FUNCTIONS setting)")]
    settings.REWARD_FUNCTIONS = [ENDS_WITH_PERIOD]
    # A round names functions; a path, even the installation's own, is no name.
    for functions in (["ends_with_period", "os.system"], [ENDS_WITH_PERIOD]):
        refused = asking(*functions)
        assert refused.status_code == 400 and "it offers ends_with_period" in refused.json()["config"][0]
    assert not TrainingRun.objects.exists()

    created = asking("ends_with_period")
    assert created.status_code == 201 and created.json()["recipe"] == "grpo"
    assert [s["name"] for s in created.json()["stages"]] == ["base", "sft", "reward", "grpo"]


@pytest.mark.django_db
def test_the_training_page_offers_grpo_and_orpo(client, project, owner):
    client.force_login(owner)
    page = client.get(reverse("training:runs", args=[project.id]))
    assert b'<option value="grpo">' in page.content and b'<option value="orpo">' in page.content


def test_reward_functions_must_be_dotted_paths_of_distinct_names(tmp_path):
    for value, says in (("os.system,ends_with_period", "must list dotted paths"),
                        ("a.score,b.score", "two functions of the same name")):
        result = settings_load(tmp_path, REWARD_FUNCTIONS=value)
        assert result.returncode != 0 and "REWARD_FUNCTIONS" in result.stderr and says in result.stderr
    assert settings_load(tmp_path, REWARD_FUNCTIONS=f" {ENDS_WITH_PERIOD} ,").returncode == 0
