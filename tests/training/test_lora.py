"""LoRA adapters: a round whose stages train peft adapters instead of all weights.

A real round on a tiny registered base, run in this process through the worker's own code (each stage a
real child): SFT, the reward model and the RL stage each register an adapter version (peft's files, the
tokenizer, the base recorded, a merged copy beside it); generation through the SFT version writes text
as its merged copy does; the reward model reloaded from its registered adapter gets the held-out accuracy
it was registered with, its trained score head saved in the adapter; the RL stage is handed the merged
copies and trains its adapter. Without a child: embeddings that had to grow are saved with the adapter,
the setting is checked, and a stage that cannot train an adapter refuses to register full weights.
"""

import json
from pathlib import Path

import pytest
from django.conf import settings

from training.models import ModelKind, ModelVersion, RunStatus
from training.services import runs, supervisor
from training.trainers import stages
from training.trainers.config import config_problems, stage_config
from tests.training.test_dpo import TEXTS, with_held_out_pairs

LORA = {"type": "lora", "r": 8, "alpha": 16, "dropout": 0.0}
RL_STAGE = "ppo" if "ppo" in stages.RECIPES else "rloo"  # PPO where the installed TRL has it


@pytest.fixture
def stores(tmp_path, settings):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"
    settings.MODEL_STORE = tmp_path / "models"
    return tmp_path


def tiny_tokenizer_and_model():
    from training.trainers.scratch import gpt_from_config, tokenizer_train

    tokenizer = tokenizer_train(TEXTS, vocab_size=300)
    return tokenizer, gpt_from_config(tokenizer, layers=1, heads=2, width=32, context=128)


def registered_base(project) -> ModelVersion:
    """A tiny base model registered for the project, as a first round would have left it: no base stage to run."""
    folder = f"project-{project.id}/base-tiny"
    tokenizer, model = tiny_tokenizer_and_model()
    model.save_pretrained(settings.MODEL_STORE / folder)
    tokenizer.save_pretrained(settings.MODEL_STORE / folder)
    return ModelVersion.objects.create(project=project, kind=ModelKind.BASE, version=1, folder=folder)


def tokenizer_of(version):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(settings.MODEL_STORE / version.folder)


def summary(folder: Path) -> dict:
    return json.loads((folder / "platform_training.json").read_text())


def adapter_tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


@pytest.mark.slow
@pytest.mark.training
@pytest.mark.django_db(transaction=True)
def test_a_lora_round_registers_adapters_that_generate_score_as_trained_and_train_the_next_stage(
    project, member, owner, stores
):
    import torch

    from training.generation import SamplingSettings, backend_for
    from training.trainers import evaluate
    from training.trainers.policy import scored_model

    with_held_out_pairs(project, member)
    base = registered_base(project)
    rl = {"ppo": {"total_episodes": 8, "eval_max_rows": 4}, "rloo": {"max_steps": 2, "eval_max_rows": 4}}[RL_STAGE]
    run = runs.run_create(project=project, by=owner, preset="tiny", recipe=RL_STAGE, seed=5, config={
        "sft": {"max_steps": 4, "adapter": LORA},
        "reward": {"max_steps": 16, "learning_rate": 3e-3, "adapter": LORA},
        RL_STAGE: {**rl, "adapter": LORA},
    })
    assert supervisor.run_execute(run_id=run.id) == RunStatus.SUCCEEDED, run.error
    versions = {v.kind: v for v in ModelVersion.objects.filter(project=project, run=run)}
    sft, reward, policy = (versions[kind] for kind in (ModelKind.SFT, ModelKind.REWARD, ModelKind.POLICY))
    store = settings.MODEL_STORE
    folders = {kind: store / v.folder for kind, v in versions.items()}

    # Each version is peft's adapter and the tokenizer, with the base it needs recorded and a merged copy beside.
    for folder in folders.values():
        assert (folder / "adapter_config.json").is_file() and (folder / "adapter_model.safetensors").is_file()
        assert not (folder / "config.json").exists() and (folder / "tokenizer.json").is_file()
        assert (folder / "merged" / "config.json").is_file() and (folder / "merged" / "tokenizer.json").is_file()
    assert summary(folders[ModelKind.SFT])["adapter"]["base"] == str(store / base.folder)
    assert {**summary(folders[ModelKind.SFT])["adapter"], "base": None} == {
        **LORA, "target_modules": "all-linear", "base": None, "merged": "merged",
        "embedding_rows": len(tokenizer_of(base)), "new_tokens": []}
    # A stage after an adapter version is handed its merged copy: to start from, and as its reward model.
    merged_sft = str(folders[ModelKind.SFT] / "merged")
    assert summary(folders[ModelKind.REWARD])["adapter"]["base"] == merged_sft
    assert summary(folders[ModelKind.POLICY])["adapter"]["base"] == merged_sft
    spec = json.loads((store / f"project-{project.id}/run-{run.number}/{RL_STAGE}.work/spec.json").read_text())
    assert spec["base_model"] == merged_sft and spec["reward_model"] == str(folders[ModelKind.REWARD] / "merged")

    # Generation through the registered SFT version (as candidates and chat load it) writes text, the same
    # text as from its merged copy. Sampled: four steps from random weights repeat a special token greedily.
    asked = [[{"role": "user", "content": "What is 2 + 3?"}], [{"role": "user", "content": "What is 7 + 1?"}]]
    sampled = SamplingSettings(temperature=1.0, max_new_tokens=8, seed=1)
    replies = backend_for(kind="transformers", model_dir=str(folders[ModelKind.SFT]), device="cpu",
                          min_new_tokens=8).generate(asked, n=2, settings=sampled)
    assert all(text.strip() for reply in replies for text in reply)
    assert replies == backend_for(kind="transformers", model_dir=merged_sft, device="cpu",
                                  min_new_tokens=8).generate(asked, n=2, settings=sampled)

    # The reward model reloaded from its registered adapter: the held-out accuracy and margin it was
    # registered with, and the score head it trained, which the adapter file holds (peft's modules_to_save).
    pairs = str(settings.SNAPSHOT_STORE / reward.snapshot.folder / "preference-test.jsonl")
    config = summary(folders[ModelKind.REWARD])["config"]
    again = evaluate.evaluate_reward(str(folders[ModelKind.REWARD]), pairs, config)
    assert again["eval_rows"] == reward.metrics["eval_rows"] > 0
    assert again["reward_accuracy"] == reward.metrics["reward_accuracy"]
    assert again["mean_margin"] == pytest.approx(reward.metrics["mean_margin"], abs=1e-6)
    saved = {k: v for k, v in adapter_tensors(folders[ModelKind.REWARD]).items() if ".score." in k}
    assert len(saved) == 1
    head = scored_model(str(folders[ModelKind.REWARD]), pad_token_id=0, attn_implementation="sdpa").score.weight
    assert torch.equal(head.detach(), next(iter(saved.values())))

    # The RL stage trained its adapter from the SFT model: its LoRA B matrices start at zero and moved.
    assert {"mean_reward", "kl"} <= set(policy.metrics) and policy.parent == sft and policy.reward_model == reward
    lora_b = [t for k, t in adapter_tensors(folders[ModelKind.POLICY]).items() if "lora_B" in k]
    assert lora_b and any(t.abs().sum() > 0 for t in lora_b)


def test_embeddings_that_had_to_grow_are_trained_and_saved_with_the_adapter(tmp_path):
    """A tokenizer with a token its weights lack (a pad token added, as an adopted base may have been given)."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from training.trainers import adapters
    from training.trainers.common import Job, adapter_config

    tokenizer, model = tiny_tokenizer_and_model()
    rows = model.get_input_embeddings().num_embeddings
    model.save_pretrained(tmp_path / "base")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|tool|>"]})
    tokenizer.save_pretrained(tmp_path / "base")  # one token more than the weights have rows
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    job = Job(stage="sft", out_dir=tmp_path / "out", work_dir=tmp_path / "work", train_path=None, eval_path=None,
              config={"adapter": LORA}, progress=None, base_model=str(tmp_path / "base"))
    lora = adapter_config(job, model, tokenizer)
    assert job.adapter["new_tokens"] == [rows] and lora.trainable_token_indices == [rows]
    peft_model = get_peft_model(model, lora)
    with torch.no_grad():  # what training would do to the new row
        peft_model.get_input_embeddings().token_adapter.trainable_tokens_delta["default"].fill_(0.5)
    peft_model.save_pretrained(tmp_path / "out")
    tokenizer.save_pretrained(tmp_path / "out")
    trained_row = peft_model.merge_and_unload().get_input_embeddings().weight[rows].detach().clone()

    assert any("wte" in key for key in adapter_tensors(tmp_path / "out"))  # the grown embeddings, saved
    reloaded = adapters.pretrained(AutoModelForCausalLM, tmp_path / "out", base_dir=str(tmp_path / "base"))
    assert reloaded.get_input_embeddings().num_embeddings == rows + 1
    assert torch.equal(reloaded.get_input_embeddings().weight[rows], trained_row)


def test_the_adapter_setting_is_checked():
    def problems(stage, adapter):
        return config_problems(stage, stage_config(stage, "tiny", {"adapter": adapter}), train_rows=100,
                               check_models=False)

    for stage in ("sft", "reward", "dpo", "rloo"):
        assert problems(stage, LORA) == [] and problems(stage, None) == [] and problems(stage, "auto") == []
        assert stage_config(stage, "tiny")["adapter"] == "auto"
    for bad in ({"type": "lora", "r": 0}, {"type": "ia3"}, {"type": "lora", "alpha": -1}, {"type": "lora", "x": 1},
                {"type": "lora", "dropout": 1.0}, "full", {"type": "lora", "r": 16.0}):
        [problem] = problems("sft", bad)
        assert problem.startswith("adapter must be a LoRA adapter (") and problem.endswith(f"not {bad!r}")
    assert problems("base", LORA) == [f"adapter must be null, not {LORA!r}"]
    assert stage_config("base", "tiny")["adapter"] is None


def test_auto_trains_all_weights_below_the_rule_and_lora_at_or_above_it(tmp_path, monkeypatch):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from training.trainers import common

    # The presets' models from scratch: all under the rule's 50M parameters but the gpu preset's.
    for preset in stages.PRESET_NAMES:
        shape = stage_config("base", preset)
        with torch.device("meta"):
            size = GPT2LMHeadModel(GPT2Config(vocab_size=shape["vocab_size"], n_positions=shape["context"],
                                              n_embd=shape["width"], n_layer=shape["layers"],
                                              n_head=shape["heads"])).num_parameters()
        assert (size >= stages.LORA_FROM_PARAMETERS) == (preset == "gpu"), (preset, size)

    tokenizer, model = tiny_tokenizer_and_model()
    job = common.Job(stage="sft", out_dir=tmp_path, work_dir=tmp_path, train_path=None, eval_path=None,
                     config={"adapter": "auto"}, progress=None)
    assert common.adapter_config(job, model, tokenizer) is None and job.adapter is None and job.adapter_chosen
    monkeypatch.setattr(common, "LORA_FROM_PARAMETERS", model.num_parameters())
    lora = common.adapter_config(job, model, tokenizer)
    assert (lora.r, lora.lora_alpha, lora.target_modules) == (16, 32, "all-linear") and job.adapter["r"] == 16


def test_a_stage_set_an_adapter_whose_trainer_never_asked_registers_nothing(tmp_path):
    from training.trainers.common import Job, publish

    job = Job(stage="custom", out_dir=tmp_path / "out", work_dir=tmp_path, train_path=None, eval_path=None,
              config={"adapter": LORA}, progress=None)
    with pytest.raises(ValueError, match="does not train adapters"):
        publish(job, main=True, wait=lambda: None, save=lambda folder: None, evaluate=lambda folder: {},
                train_metrics={})
    assert not (tmp_path / "out").exists()
