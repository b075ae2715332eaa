"""A run is refused before it starts, with the reason, by the checks the web process and the child share."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from training.trainers.config import DPO_LOSS_TYPES, PRESETS, STAGES, config_problems, stage_config
from training.trainers.launch import child_command

REPO = Path(__file__).resolve().parents[2]
TEXTS = [f"What is {a} + {b}? {a + b}" for a in range(10) for b in range(10)]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Model folders as the stages write them: a policy, its reward model, and two that must be refused."""
    from transformers import GPT2ForSequenceClassification

    from training.trainers.scratch import gpt_from_config, tokenizer_train

    root = tmp_path_factory.mktemp("models")
    tokenizer = tokenizer_train(TEXTS, vocab_size=300)
    policy = gpt_from_config(tokenizer, layers=1, heads=2, width=16, context=128)
    policy.save_pretrained(root / "sft")
    tokenizer.save_pretrained(root / "sft")
    shape = {k: v for k, v in policy.config.to_dict().items() if k not in ("id2label", "label2id")}
    reward = GPT2ForSequenceClassification(policy.config.__class__(**shape, num_labels=1))
    reward.save_pretrained(root / "rm")
    tokenizer.save_pretrained(root / "rm")

    tokenizer.pad_token = tokenizer.eos_token
    policy.save_pretrained(root / "pad-is-eos")
    tokenizer.save_pretrained(root / "pad-is-eos")

    other = tokenizer_train([t.replace("What", "How much") + " apples" for t in TEXTS], vocab_size=320)
    reward.save_pretrained(root / "rm-other-tokenizer")
    other.save_pretrained(root / "rm-other-tokenizer")
    return {name: str(root / name) for name in ("sft", "rm", "pad-is-eos", "rm-other-tokenizer")}


def ppo_problems(models, *, train_rows=40, model="sft", reward="rm", processes=1, **overrides):
    config = stage_config("ppo", "tiny", overrides)
    return config_problems("ppo", config, train_rows=train_rows, eval_rows=8, model_dir=models[model],
                           reward_model_dir=models[reward], processes=processes)


def test_a_sound_config_has_no_problems(models):
    assert ppo_problems(models) == []
    for stage in ("sft", "reward"):
        assert config_problems(stage, stage_config(stage, "tiny", {}), train_rows=40, model_dir=models["sft"]) == []
    assert config_problems("base", stage_config("base", "tiny", {}), train_rows=40) == []
    assert config_problems("rloo", stage_config("rloo", "tiny", {}), train_rows=40, model_dir=models["sft"],
                           reward_model_dir=models["rm"]) == []


def test_pad_token_equal_to_eos_is_refused(models):
    [problem] = ppo_problems(models, model="pad-is-eos", reward="pad-is-eos")[:1]
    assert "pad token equals EOS" in problem
    sft = config_problems("sft", stage_config("sft", "tiny", {}), train_rows=40, model_dir=models["pad-is-eos"])
    assert any("pad token equals EOS" in p for p in sft)


def test_batch_not_dividing_by_mini_batches_is_refused(models):
    [problem] = ppo_problems(models, num_mini_batches=3)
    assert "does not divide by num_mini_batches (3)" in problem and "= 4" in problem
    # The global batch counts every process: 4 x 1 x 3 processes = 12 divides by 3, but each process's 4 does not.
    assert any("num_mini_batches" in p for p in ppo_problems(models, num_mini_batches=3, processes=3))
    assert ppo_problems(models, num_mini_batches=2) == []


def test_dataset_smaller_than_one_batch_is_refused(models):
    problems = ppo_problems(models, train_rows=7, per_device_train_batch_size=4, gradient_accumulation_steps=2,
                            min_train_rows=1)
    assert problems == ["dataset smaller than one batch: 7 prompts for a batch of 8 (TRL's PPO would wait forever "
                        "for a full batch)"]
    assert any("smaller than one batch" in p for p in ppo_problems(models, train_rows=12, processes=4,
                                                                    min_train_rows=1))


def test_reward_model_with_another_tokenizer_is_refused(models):
    [problem] = ppo_problems(models, reward="rm-other-tokenizer")
    assert "reward model's tokenizer differs from the policy's" in problem
    [problem] = ppo_problems(models, reward="sft")
    assert "not a sequence classifier" in problem


def test_too_few_rows_are_refused(models):
    assert config_problems("sft", stage_config("sft", "tiny", {}), train_rows=2, model_dir=models["sft"]) == [
        "too few rows to train on: 2 (at least 4 for the sft stage at this preset)",
        "dataset smaller than one batch: 2 conversations for a batch of 4 (4 per device x 1 accumulation x 1 processes)",
    ]
    # The reward model as well: a batch larger than the data would train on one short batch a step.
    assert config_problems("reward", stage_config("reward", "tiny", {"min_train_rows": 1}), train_rows=3,
                           model_dir=models["sft"]) == [
        "dataset smaller than one batch: 3 pairs for a batch of 4 (4 per device x 1 accumulation x 1 processes)"]
    assert any("too few rows" in p for p in config_problems("base", stage_config("base", "small", {}), train_rows=10))


def test_unknown_keys_and_wrong_types_are_named(models):
    problems = config_problems("sft", stage_config("sft", "tiny", {"learning_rat": 1e-3, "max_steps": "ten",
                                                                   "bf16": "maybe", "per_device_train_batch_size": 0}),
                               train_rows=40, model_dir=models["sft"])
    assert problems == [
        "max_steps must be an integer, not 'ten'",
        "per_device_train_batch_size must be greater than 0, not 0",
        "bf16 must be true, false or \"auto\", not 'maybe'",
        "unknown setting 'learning_rat' for the sft stage",
    ]
    assert config_problems("ppo", stage_config("ppo", "tiny", {}), train_rows=40, model_dir=None,
                           reward_model_dir=None) == ["the ppo stage needs a SFT model directory",
                                                      "the RL stage needs a reward model directory"]
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        stage_config("sft", "huge", {})


def test_presets_cover_every_stage():
    for preset in PRESETS:
        for stage in STAGES:
            config = stage_config(stage, preset, {})
            assert config["per_device_train_batch_size"] > 0
    assert stage_config("base", "gpu", {})["width"] == 768 and stage_config("base", "tiny", {})["width"] == 64


def dpo_problems(models, *, train_rows=40, model="sft", processes=1, **overrides):
    return config_problems("dpo", stage_config("dpo", "tiny", overrides), train_rows=train_rows, eval_rows=8,
                           model_dir=models[model], processes=processes)


def test_dpo_losses_and_batches_are_checked_before_training(models):
    assert dpo_problems(models) == []
    assert dpo_problems(models, loss_type=["sigmoid", "ipo"], loss_weights=[1.0, 0.5], beta=0.5) == []
    assert dpo_problems(models, loss_type="dpo") == [
        f"unknown loss_type 'dpo': TRL's DPO accepts {', '.join(DPO_LOSS_TYPES)}"]
    assert dpo_problems(models, loss_type=["sigmoid", "ipo"], loss_weights=[1.0]) == [
        "loss_weights has 1 weight for 2 loss types (sigmoid, ipo): give one weight per loss type, or none for 1 each"]
    assert dpo_problems(models, loss_type="ipo", loss_weights=[1, -1]) == [
        "loss_weights must be numbers of at least 0, not [1, -1]"]
    assert dpo_problems(models, loss_type=[]) == ["loss_type must be a loss name or a non-empty list of them, not []"]
    assert dpo_problems(models, loss_type=3) == ["loss_type must be a string or a list, not 3"]
    assert dpo_problems(models, beta=0) == ["beta must be greater than 0, not 0"]
    assert dpo_problems(models, loss_type="exo_pair") == [
        "the exo_pair loss needs label_smoothing above 0 (the EXO paper suggests 1e-3)"]
    assert dpo_problems(models, loss_type="exo_pair", label_smoothing=1e-3) == []
    # A pair is a row: the batch counts pairs over every process, as for the other stages.
    assert dpo_problems(models, train_rows=7, per_device_train_batch_size=4, gradient_accumulation_steps=2,
                        min_train_rows=1) == [
        "dataset smaller than one batch: 7 pairs for a batch of 8 (4 per device x 2 accumulation x 1 processes)"]
    assert any("smaller than one batch" in p for p in dpo_problems(models, train_rows=12, processes=4, min_train_rows=1))
    assert dpo_problems(models, max_length=256) == ["max_length (256) is longer than the SFT model's context (128)"]
    assert any("pad token equals EOS" in p for p in dpo_problems(models, model="pad-is-eos"))
    assert config_problems("dpo", stage_config("dpo", "tiny", {}), train_rows=40, model_dir=None) == [
        "the dpo stage needs a SFT model directory"]


def test_the_dpo_losses_are_those_trl_trains_with():
    """config.py may not import TRL, so its list of DPO losses is written out: this is where a TRL pin that
    adds or drops one shows."""
    import inspect

    from trl import DPOConfig, DPOTrainer

    assert re.findall(r'loss_type == "(\w+)"', inspect.getsource(DPOTrainer._compute_loss)) == list(DPO_LOSS_TYPES)
    documented = re.findall(r"`'(\w+)'`", DPOConfig.__dataclass_fields__["loss_type"].metadata["help"])
    assert documented == list(DPO_LOSS_TYPES)


def test_the_child_refuses_a_bad_config_with_an_error_event(models, tmp_path):
    train = tmp_path / "prompts.jsonl"
    train.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": t}]}) + "\n" for t in TEXTS[:6]))
    spec = {"stage": "ppo", "out_dir": str(tmp_path / "out"), "work_dir": str(tmp_path / "work"),
            "data": {"train": str(train), "eval": None}, "base_model": models["sft"], "reward_model": models["rm"],
            "preset": "tiny", "config": {"per_device_train_batch_size": 8}, "progress_file": str(tmp_path / "p.jsonl")}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    result = subprocess.run(child_command(str(tmp_path / "spec.json")), cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2
    [event] = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert event["event"] == "error" and "dataset smaller than one batch: 6 prompts" in event["message"]
    assert not (tmp_path / "out").exists()


def test_config_and_launch_load_without_torch_or_django():
    code = ("import sys, training.trainers.config, training.trainers.launch, training.trainers.run; "
            "print(sorted(m for m in ('torch', 'transformers', 'trl', 'django') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    for source in (REPO / "training" / "trainers").glob("*.py"):
        assert not re.search(r"^\s*(from|import)\s+django", source.read_text(), re.MULTILINE), source


def test_child_command_for_one_process_several_cpus_and_gpus():
    assert child_command("/s.json") == [sys.executable, "-m", "training.trainers.run", "/s.json"]
    cpu = child_command("/s.json", processes=2, main_process_port=29555)
    assert cpu[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert "--multi_gpu" in cpu and "--cpu" not in cpu and cpu[cpu.index("--num_processes") + 1] == "2"
    assert cpu[-3:] == ["-m", "training.trainers.run", "/s.json"]
    gpus = child_command("/s.json", gpus=4, zero_stage=3)
    config = Path(gpus[gpus.index("--config_file") + 1])
    assert config.name == "zero3.yaml" and gpus[gpus.index("--num_processes") + 1] == "4"
    for stage in (2, 3):  # the accelerate config names a DeepSpeed config that exists, of its ZeRO stage
        accelerate_config = yaml.safe_load((REPO / f"platform/accelerate/zero{stage}.yaml").read_text())
        assert accelerate_config["distributed_type"] == "DEEPSPEED"
        deepspeed = json.loads((REPO / accelerate_config["deepspeed_config"]["deepspeed_config_file"]).read_text())
        assert deepspeed["zero_optimization"]["stage"] == stage
    assert child_command("/s.json", gpus=1) == [sys.executable, "-m", "training.trainers.run", "/s.json"]


def test_the_child_names_a_bad_line_before_loading_torch(models, tmp_path):
    train = tmp_path / "sft.jsonl"
    chat = [{"role": "user", "content": "What is 1 + 1?"}, {"role": "assistant", "content": "2"}]
    good = json.dumps({"messages": chat})
    train.write_text("\n".join([good] * 5 + ['{"messages": "2"}', good]) + "\n")
    spec = {"stage": "sft", "out_dir": str(tmp_path / "out"), "work_dir": str(tmp_path / "work"),
            "data": {"train": str(train), "eval": None}, "base_model": models["sft"],
            "progress_file": str(tmp_path / "p.jsonl")}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    # A torch that cannot be imported, ahead of the real one: the child must refuse the line without
    # it (a stopwatch would say the same only on an idle machine).
    (tmp_path / "no-torch" / "torch").mkdir(parents=True)
    (tmp_path / "no-torch" / "torch" / "__init__.py").write_text("raise ImportError('torch was imported')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "no-torch"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(child_command(str(tmp_path / "spec.json")), cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 2, result.stderr[-2000:]
    [event] = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert event["message"] == f"refused: {train}, line 6: messages must be a list of {{role, content}} messages"


def test_the_gpu_batch_arguments_are_ones_trl_accepts(tmp_path, monkeypatch):
    """On CUDA, SFT groups rows by length, pads to a multiple of 64 under torch.compile and uses the
    plain loss (bench/gpu_throughput.py); on CPU none of it. CI has no GPU, so the names and values
    are checked here against the installed TRL, which a rename would break."""
    from trl import RewardConfig, SFTConfig

    from training.trainers import common
    from training.trainers.progress import Progress

    job = common.Job(stage="sft", out_dir=tmp_path, work_dir=tmp_path, train_path=None, eval_path=None,
                     config=stage_config("sft", "gpu", {}), progress=Progress(None))
    assert common.padded_batch_arguments(job, vocab_size=8192, group_by_length=True) == {}
    monkeypatch.setattr(common.Job, "cuda", property(lambda self: True))
    sft = common.padded_batch_arguments(job, vocab_size=8192, group_by_length=True)
    assert sft == {"train_sampling_strategy": "group_by_length", "pad_to_multiple_of": 64, "loss_type": "nll"}
    assert "loss_type" not in common.padded_batch_arguments(job, vocab_size=50_000)
    args = SFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], **sft)
    assert (args.train_sampling_strategy, args.pad_to_multiple_of, args.loss_type) == ("group_by_length", 64, "nll")
    reward = common.padded_batch_arguments(job)
    assert RewardConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], **reward).pad_to_multiple_of == 64
