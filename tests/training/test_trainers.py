"""A whole round through the child process the job layer starts: base from scratch, SFT, reward
model, PPO and RLOO on arithmetic, with real TRL trainers on tiny models on CPU.

The stage fixtures are module-scoped: each later stage trains on the models of the earlier ones.
"""

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from training.trainers.launch import child_command

pytestmark = [pytest.mark.slow, pytest.mark.training]

REPO = Path(__file__).resolve().parents[2]


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def question(a: int, b: int) -> str:
    return f"What is {a} + {b}?"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("round")


@pytest.fixture(scope="module")
def data(root):
    """Snapshot files as the exporters write them (with provenance the trainers must ignore), split 80/20."""
    rng = random.Random(0)
    pairs = [(a, b) for a in range(10) for b in range(10)]
    rng.shuffle(pairs)
    splits = {"train": pairs[:80], "eval": pairs[80:]}
    folder = root / "data"
    folder.mkdir()

    def user(a, b):
        return [{"role": "user", "content": question(a, b)}]

    def reply(text):
        return [{"role": "assistant", "content": str(text)}]

    files = {}
    for split, items in splits.items():
        files["text", split] = write_jsonl(folder / f"text-{split}.jsonl", [
            {"text": f"{question(a, b)} {a + b}. The sum of {a} and {b} is {a + b}."} for a, b in items])
        files["sft", split] = write_jsonl(folder / f"sft-{split}.jsonl", [
            {"messages": user(a, b) + reply(a + b), "provenance": {"root_id": i}} for i, (a, b) in enumerate(items)])
        files["reward", split] = write_jsonl(folder / f"pref-{split}.jsonl", [
            {"prompt": user(a, b), "chosen": reply(a + b), "rejected": reply(a + b + 1 + rng.randrange(5)),
             "provenance": {"at": "2026-01-01", "chosen": {"source": "annotator"}}} for a, b in items])
        files["prompts", split] = write_jsonl(folder / f"prompts-{split}.jsonl", [
            {"prompt": user(a, b), "provenance": {"root_id": 1}} for a, b in items])
    files["extra_text"] = write_jsonl(folder / "extra.jsonl", [{"text": "Plus, minus, times; sums of digits."}])
    return files


def spec_file(root: Path, name: str, stage: str, train: str, eval: str | None, **fields) -> Path:
    spec = {"stage": stage, "out_dir": str(root / "models" / name), "work_dir": str(root / "work" / name),
            "data": {"train": train, "eval": eval}, "base_model": None, "preset": "tiny", "config": {}, "seed": 0,
            "resume": False, "progress_file": str(root / f"{name}.progress.jsonl"), **fields}
    path = root / f"{name}.spec.json"
    path.write_text(json.dumps(spec))
    return path


def events(spec_path: Path) -> list[dict]:
    progress = Path(json.loads(spec_path.read_text())["progress_file"])
    return [json.loads(line) for line in progress.read_text().splitlines()] if progress.exists() else []


def start(spec_path: Path, **launch) -> subprocess.Popen:
    # A process group of its own, as the job layer starts it, so that a cancel reaches every process.
    return subprocess.Popen(child_command(str(spec_path), **launch), cwd=REPO, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run(spec_path: Path, **launch) -> list[dict]:
    """Run a stage to the end; return the events it appended (a resumed run appends to the same file)."""
    before = len(events(spec_path))
    child = start(spec_path, **launch)
    output, _ = child.communicate(timeout=300)
    assert child.returncode == 0, output[-3000:]
    return events(spec_path)[before:]


def kill_after_first_checkpoint(spec_path: Path) -> tuple[dict, float]:
    """Start a run, SIGTERM its process group once a checkpoint is reported, and return that checkpoint."""
    child = start(spec_path)
    deadline = time.time() + 120
    while time.time() < deadline:
        checkpoints = [e for e in events(spec_path) if e["event"] == "checkpoint"]
        if checkpoints or child.poll() is not None:
            break
        time.sleep(0.05)
    assert checkpoints, child.communicate()[0][-3000:]
    killed_at = time.time()
    os.killpg(child.pid, signal.SIGTERM)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGTERM
    return checkpoints[0], time.time() - killed_at


def resumed(spec_path: Path) -> Path:
    spec = json.loads(spec_path.read_text())
    path = spec_path.with_name(spec_path.name.replace(".spec", ".resume.spec"))
    path.write_text(json.dumps({**spec, "resume": True}))
    return path


def check_events(stream: list[dict], stage: str) -> dict:
    """Assert the progress stream's shape: start, progress steps up to total, eval, done last; return done."""
    assert stream[0]["event"] == "start" and stream[0]["stage"] == stage
    total = stream[0]["total"]
    steps = [e["step"] for e in stream if e["event"] == "progress"]
    assert steps == sorted(steps) and steps[-1] == total
    assert [e["event"] for e in stream[-2:]] == ["eval", "done"]
    assert all(isinstance(e["time"], float) for e in stream)
    return stream[-1]


def loads(out_dir: str, kind: str = "causal"):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    model_class = AutoModelForSequenceClassification if kind == "reward" else AutoModelForCausalLM
    return model_class.from_pretrained(out_dir), tokenizer


@pytest.fixture(scope="module")
def base(root, data):
    spec = spec_file(root, "base", "base", data["text", "train"], data["text", "eval"],
                     data={"train": data["text", "train"], "eval": data["text", "eval"],
                           "texts_for_tokenizer": [data["extra_text"], data["sft", "train"]]},
                     config={"max_steps": 12, "save_every": 6})
    return spec, run(spec)


@pytest.fixture(scope="module")
def sft(root, data, base):
    """SFT killed by SIGTERM after its first checkpoint, then resumed to the end."""
    spec = spec_file(root, "sft", "sft", data["sft", "train"], data["sft", "eval"],
                     base_model=str(root / "models/base"),
                     config={"max_steps": 10, "save_every": 4, "step_delay_s": 0.25})
    checkpoint, dying = kill_after_first_checkpoint(spec)
    first = events(spec)
    again = resumed(spec)
    return spec, checkpoint, dying, first, run(again)


@pytest.fixture(scope="module")
def reward(root, data, sft):
    """The reward stage runs the gpu preset at a tiny shape: the code path GPU runs take, checked on CPU."""
    spec = spec_file(root, "rm", "reward", data["reward", "train"], data["reward", "eval"],
                     base_model=str(root / "models/sft"), preset="gpu",
                     config={"max_steps": 20, "per_device_train_batch_size": 4, "per_device_eval_batch_size": 8,
                             "max_length": 128, "eval_max_rows": 16, "min_train_rows": 4, "logging_steps": 1,
                             "learning_rate": 1e-3, "save_every": 10})
    return spec, run(spec)


@pytest.fixture(scope="module")
def ppo(root, data, reward):
    """PPO killed by SIGTERM after its first checkpoint, then resumed: 24 episodes = 6 updates of 4."""
    spec = spec_file(root, "ppo", "ppo", data["prompts", "train"], data["prompts", "eval"],
                     base_model=str(root / "models/sft"), reward_model=str(root / "models/rm"),
                     config={"total_episodes": 24, "save_every": 2, "step_delay_s": 0.25, "eval_max_rows": 8})
    checkpoint, dying = kill_after_first_checkpoint(spec)
    first = events(spec)
    assert not (root / "models/ppo").exists()
    return spec, checkpoint, dying, first, run(resumed(spec))


def test_base_from_scratch_trains_a_tokenizer_and_a_gpt(base, data):
    spec, stream = base
    done = check_events(stream, "base")
    assert stream[0]["total"] == 12 and stream[0]["world_size"] == 1
    assert [e["step"] for e in stream if e["event"] == "checkpoint"] == [6, 12]
    assert all("loss" in e["metrics"] and "learning_rate" in e["metrics"] for e in stream if e["event"] == "progress")
    assert done["metrics"]["eval_rows"] == 16 and done["metrics"]["perplexity"] > 1
    model, tokenizer = loads(done["out_dir"])
    # The tokenizer learned the project's words, and its chat template marks assistant turns for SFT.
    assert len(tokenizer.tokenize("What is")) <= 3 and "{% generation %}" in tokenizer.chat_template
    assert model.config.n_layer == 2 and model.config.vocab_size == len(tokenizer)


def test_sft_killed_mid_run_resumes_from_its_checkpoint(sft, root):
    spec, checkpoint, dying, first, second = sft
    assert dying < 5, "the child must die promptly on SIGTERM"
    assert checkpoint["step"] == 4 and Path(checkpoint["path"]).name == "checkpoint-4"
    assert "done" not in [e["event"] for e in first]
    assert max(e["step"] for e in first if e["event"] == "progress") < 10
    # The resumed run starts at the newest checkpoint (4, unless the kill came late), not at 0.
    saved = max(e["step"] for e in first if e["event"] == "checkpoint")
    assert second[0]["step"] == saved and second[0]["total"] == 10
    assert [e["step"] for e in second if e["event"] == "progress"] == list(range(saved + 1, 11))
    done = check_events(second, "sft")
    metrics = done["metrics"]
    for key in ("eval_loss", "bleu", "rouge_l", "exact_match"):
        assert key in metrics
    assert metrics["eval_rows"] == 16 and 0 <= metrics["rouge_l"] <= 1 and 0 <= metrics["bleu"] <= 100
    loads(done["out_dir"])
    summary = json.loads((Path(done["out_dir"]) / "platform_training.json").read_text())
    assert summary["stage"] == "sft" and summary["metrics"]["eval_loss"] == metrics["eval_loss"]


def test_reward_model_reports_accuracy_on_held_out_pairs(reward):
    spec, stream = reward
    done = check_events(stream, "reward")
    assert "reward_accuracy" in [k for e in stream if e["event"] == "progress" for k in e["metrics"]]
    assert 0 <= done["metrics"]["reward_accuracy"] <= 1 and done["metrics"]["eval_rows"] == 16
    model, tokenizer = loads(done["out_dir"], "reward")
    assert model.config.num_labels == 1 and model.config.pad_token_id == tokenizer.pad_token_id
    # PPO reads rewards through `.score` on the backbone named by base_model_prefix.
    assert hasattr(model, "score") and hasattr(model, model.base_model_prefix)

    from training.trainers.evaluate import evaluate_reward

    # A held-out split read with eval_max_rows 0 is no held-out figure, not a division by zero.
    held_out = json.loads(spec.read_text())["data"]["eval"]
    assert evaluate_reward(done["out_dir"], held_out, {"eval_max_rows": 0, "max_length": 128,
                                                       "per_device_eval_batch_size": 8}) == {"eval_rows": 0}


def test_gpu_preset_code_path_runs_at_a_tiny_shape_on_cpu(reward):
    spec, stream = reward
    summary = json.loads((Path(stream[-1]["out_dir"]) / "platform_training.json").read_text())
    # The gpu preset's automatic choices: bf16, tf32, fused AdamW and torch.compile where CUDA is, off here.
    assert {summary["config"][k] for k in ("bf16", "tf32", "optim", "torch_compile")} == {"auto"}
    assert summary["config"]["attn_implementation"] == "sdpa" and summary["config"]["max_length"] == 128


def test_ppo_killed_mid_run_resumes_with_the_episodes_left(ppo, root):
    spec, checkpoint, dying, first, second = ppo
    assert dying < 5
    assert checkpoint["step"] == 2 and (Path(checkpoint["path"]) / "policy" / "model.safetensors").exists()
    assert "done" not in [e["event"] for e in first] and first[0]["total"] == 6
    # TRL's PPO restarts global_step at 0 on every train(): the resumed run reports true update numbers.
    saved = max(e["step"] for e in first if e["event"] == "checkpoint")  # 2, unless the kill came late
    assert second[0]["step"] == saved and second[0]["total"] == 6 and second[0]["resumed_from_step"] == saved
    progress = [e for e in second if e["event"] == "progress"]
    updates = list(range(saved + 1, 7))
    assert [e["step"] for e in progress] == updates
    assert [e["metrics"]["episode"] for e in progress] == [4 * k for k in updates]
    # The learning rate goes on down the whole run's linear schedule (1e-4 over 6 updates), not restarted.
    assert [e["metrics"]["learning_rate"] for e in progress] == pytest.approx([1e-4 * (7 - k) / 6 for k in updates])
    assert all({"mean_reward", "kl", "loss", "learning_rate"} <= e["metrics"].keys() for e in progress)
    done = check_events(second, "ppo")
    metrics = done["metrics"]
    assert metrics["episodes"] == 24 and metrics["updates"] == 6
    assert {"mean_reward", "kl", "win_rate_vs_sft_optimistic"} <= metrics.keys()
    assert "win_rate_vs_previous_optimistic" not in metrics  # no previous policy given
    model, tokenizer = loads(done["out_dir"])
    assert not list((root / "models").glob(".*partial"))


def test_rloo_trains_against_the_reward_model_and_wins_against_the_previous_policy(root, data, ppo):
    spec = spec_file(root, "rloo", "rloo", data["prompts", "train"], data["prompts", "eval"],
                     base_model=str(root / "models/sft"), reward_model=str(root / "models/rm"),
                     previous_policy=str(root / "models/ppo"), config={"max_steps": 4, "eval_max_rows": 8})
    stream = run(spec)
    done = check_events(stream, "rloo")
    assert stream[0]["total"] == 4
    assert all({"mean_reward", "kl"} <= e["metrics"].keys() for e in stream if e["event"] == "progress")
    metrics = done["metrics"]
    assert 0 <= metrics["win_rate_vs_previous_optimistic"] <= 1 and "mean_reward_previous" in metrics
    loads(done["out_dir"])


def test_sft_runs_in_two_processes_under_accelerate_launch(root, data, base):
    spec = spec_file(root, "sft-2p", "sft", data["sft", "train"], data["sft", "eval"],
                     base_model=str(root / "models/base"), config={"max_steps": 4, "eval_max_rows": 4})
    stream = run(spec, processes=2)
    # Both processes joined (the start event gathers every rank) and one stream came out of them.
    assert stream[0]["world_size"] == 2 and stream[0]["ranks"] == [0, 1]
    assert [e["event"] for e in stream].count("start") == 1
    # 4 steps of 4 rows per process and 2 processes: 32 rows seen, 0.4 of an epoch of 80.
    assert [e["metrics"]["epoch"] for e in stream if e["event"] == "progress"][-1] == pytest.approx(0.4)
    loads(check_events(stream, "sft")["out_dir"])


def test_base_adopts_a_local_model_giving_it_a_pad_token_and_keeping_its_chat_template(tmp_path, data):
    """A GPT-2-style directory (no pad token, a chat template without generation markers) becomes a base SFT can train.

    Its only special token is its EOS, so the pad token is a new one; its template is kept (SFT masks prompts
    without markers)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from training.trainers import run as run_module
    from training.trainers.config import config_problems, stage_config

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    bpe.train_from_iterator([question(a, b) for a in range(10) for b in range(10)], trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    # A model with no chat template at all is refused (config.chat_template_problems); this one has no markers.
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{{ eos_token }}{% endfor %}"
    eos = tokenizer.eos_token_id
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=1, n_head=2,
                               bos_token_id=eos, eos_token_id=eos)).save_pretrained(tmp_path / "gpt2-like")
    tokenizer.save_pretrained(tmp_path / "gpt2-like")
    refused = config_problems("sft", stage_config("sft", "tiny", {}), train_rows=80,
                              model_dir=str(tmp_path / "gpt2-like"))
    assert "the base model's tokenizer has no pad token" in refused

    spec = spec_file(tmp_path, "adopted", "base", None, data["text", "eval"],  # adopting trains on nothing
                     base_model=str(tmp_path / "gpt2-like"), config={"max_length": 64})
    assert run_module.main([str(spec)]) == 0  # in this process: adopting trains nothing
    stream = events(spec)
    assert [e["event"] for e in stream] == ["start", "eval", "done"] and stream[0]["total"] == 0
    done = stream[-1]
    assert done["metrics"]["pad_token_added"] == 1 and "chat_template_set" not in done["metrics"]
    model, adopted = loads(done["out_dir"])
    assert adopted.eos_token == "<|endoftext|>" and model.get_input_embeddings().num_embeddings >= len(adopted)
    assert adopted.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                       add_generation_prompt=True) == "hi<|endoftext|>"
    assert config_problems("sft", stage_config("sft", "tiny", {}), train_rows=80, model_dir=done["out_dir"]) == []
