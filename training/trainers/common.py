"""What every stage shares: the run's settings, device choices, the progress callback,
checkpoint bookkeeping, and publishing the finished model atomically."""

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import TrainerCallback

from . import adapters
from .folders import partial_dir
from .config import AUTO
from .progress import Progress, numeric
from .stages import ADAPTER_AUTO, LORA_FROM_PARAMETERS, Adapter

CHECKPOINTS = "checkpoints"
SUMMARY_FILE = adapters.SUMMARY_FILE  # platform_training.json


@dataclass
class Job:
    """One stage's spec, read from the spec file, with its merged config."""

    stage: str
    out_dir: Path
    work_dir: Path
    train_path: str | None
    eval_path: str | None
    config: dict
    progress: Progress
    seed: int = 0
    resume: bool = False
    base_model: str | None = None
    reward_model: str | None = None
    previous_policy: str | None = None
    texts_for_tokenizer: list[str] = field(default_factory=list)
    # The LoRA adapter the stage trains (the `adapter` setting resolved by adapter_config), None for all weights;
    # adapter_chosen says the trainer asked, which a stage that was set an adapter must have done.
    adapter: dict | None = None
    adapter_chosen: bool = False

    @property
    def checkpoints(self) -> Path:
        return self.work_dir / CHECKPOINTS

    @property
    def cuda(self) -> bool:
        return torch.cuda.is_available()

    def setting(self, key: str) -> bool:
        """Resolve a true/false/"auto" setting: "auto" means on when CUDA is present."""
        value = self.config[key]
        if value != AUTO:
            return bool(value)
        if key == "bf16":
            return self.cuda and torch.cuda.is_bf16_supported()
        return self.cuda

    @property
    def load_dtype(self) -> str:
        """The dtype a stage loads the models it trains in: as saved on CUDA with bf16 on, float32 otherwise.

        Without CUDA the Trainer runs no mixed precision, so a base saved in bf16 (SmolLM2-135M as released and
        as converted from its GGUF file) would train with bf16 weights and optimizer state: 3 full SFT steps at
        lr 1e-5 changed 1.7% of its weights (smaller updates round away), against all of them in float32. And
        slower: 85 s a step on a CPU without bf16 instructions (bench/lora_bench.py), 1.2-1.4 times float32's on
        one with AMX. The same holds on CUDA with bf16 off.
        """
        return AUTO if self.cuda and self.setting("bf16") else "float32"

    @property
    def optim(self) -> str:
        if self.config["optim"] != AUTO:
            return self.config["optim"]
        return "adamw_torch_fused" if self.cuda else "adamw_torch"

    def use_tf32(self) -> None:
        """Let float32 matmuls use TF32 tensor cores where tf32 is on (CUDA only)."""
        if self.setting("tf32"):
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True


def training_arguments(job: Job, cls, **extra):
    """Build a TRL config (a TrainingArguments) from the job's config, for the HF-Trainer stages."""
    c = job.config
    job.use_tf32()
    kwargs = dict(
        output_dir=str(job.checkpoints),
        learning_rate=c["learning_rate"],
        num_train_epochs=c["num_train_epochs"],
        max_steps=c["max_steps"],
        per_device_train_batch_size=c["per_device_train_batch_size"],
        per_device_eval_batch_size=c["per_device_eval_batch_size"],
        gradient_accumulation_steps=c["gradient_accumulation_steps"],
        logging_steps=c["logging_steps"],
        save_strategy="steps",
        save_steps=c["save_every"],
        save_total_limit=c["save_total_limit"],
        weight_decay=c["weight_decay"],
        warmup_steps=c["warmup_steps"],
        lr_scheduler_type=c["lr_scheduler_type"],
        optim=job.optim,
        bf16=job.setting("bf16"),
        torch_compile=job.setting("torch_compile"),
        use_cpu=not job.cuda,
        seed=job.seed + c["seed_offset"],
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,  # no worker processes: a cancelled run must die with its process group
        eval_strategy="no",
        save_only_model=False,
    )
    # Always said: TRL's configs turn checkpointing on by default, which recomputes every activation in the
    # backward pass, while the setting says false. (transformers 5's name; `gradient_checkpointing` warns.)
    kwargs["activation_checkpointing"] = bool(c["gradient_checkpointing"])
    kwargs.update(extra)
    return cls(**kwargs)


# Largest vocabulary for which SFT materialises the logits (TRL's plain "nll" loss): at 64 rows of 1024
# tokens and 32k tokens of vocabulary they take about 8 GB in float32; above it, TRL's "chunked_nll".
FULL_LOGITS_MAX_VOCAB = 32768
COMPILED_PAD_MULTIPLE = 64


def padded_batch_arguments(job: Job, *, vocab_size: int | None = None, group_by_length: bool = False) -> dict:
    """Return the extra TrainingArguments that keep a GPU busy on batches of padded chats; none without CUDA.

    Seen on an H100 at the gpu preset (bench/gpu_throughput.py): a random batch of 64 chats was padded
    to about 700 tokens for about 400 real ones per row; TRL's default SFT loss ("chunked_nll") loops in
    Python over checkpointed 256-token chunks, whose count it reads from the GPU (without compile, with
    TRL's defaults: about 0.7 s a step); grouped by length with the plain loss but not padded to a multiple,
    torch.compile recompiled on new lengths and on lengths that were no multiple of 8
    (TORCH_LOGS=recompiles), about 1 step/s over steps 10 to 60. With all three, compiling ended within
    the first two steps and SFT ran 6.4 steps/s, 159k non-padding tokens/s. CPU runs (tests, the demo)
    keep TRL's defaults.
    """
    if not job.cuda:
        return {}
    extra = {}
    if group_by_length:
        # Rows of about the same length share a batch (LengthGroupedSampler: random across groups of
        # 50 batches), so a batch pads to its own rows' length, not to the longest of 64 random ones.
        extra["train_sampling_strategy"] = "group_by_length"
    if job.setting("torch_compile"):
        # A few aligned shapes: the compiled graphs go dynamic once and stop recompiling.
        extra["pad_to_multiple_of"] = COMPILED_PAD_MULTIPLE
    if vocab_size is not None and vocab_size <= FULL_LOGITS_MAX_VOCAB:
        extra["loss_type"] = "nll"  # one matmul and one fused loss; the logits are small at this vocabulary
    return extra


def fit_vocabulary(model, tokenizer) -> list[int]:
    """Grow the model's embeddings to the tokenizer's tokens (one given a pad token its weights lack); return
    the ids of the rows added."""
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) <= rows:
        return []
    model.resize_token_embeddings(len(tokenizer))
    return list(range(rows, len(tokenizer)))


def adapter_config(job: Job, model, tokenizer, *, task_type: str = "CAUSAL_LM",
                   modules_to_save: list[str] | None = None):
    """Return the peft LoraConfig the stage trains, for a TRL trainer's `peft_config`; None to train all weights.

    The `adapter` setting's "auto" resolves by the size of the model the stage starts from
    (stages.LORA_FROM_PARAMETERS). Embeddings first grow to the tokenizer (fit_vocabulary); under LoRA the
    new rows train as peft's trainable tokens and are saved with the adapter. The choice is kept on the job
    for publish to record.
    """
    new_tokens = fit_vocabulary(model, tokenizer)
    setting = job.config.get("adapter")
    if setting == AUTO:
        setting = ADAPTER_AUTO if model.num_parameters() >= LORA_FROM_PARAMETERS else None
    job.adapter_chosen = True
    if setting is None:
        job.adapter = None
        return None
    adapter = Adapter.model_validate(setting).model_dump()
    job.adapter = {**adapter, "embedding_rows": model.get_input_embeddings().num_embeddings, "new_tokens": new_tokens}
    return adapters.lora_config(adapter, task_type=task_type, new_tokens=new_tokens, modules_to_save=modules_to_save)


def save_for(job: Job, trainer, *, model_class, float32: bool = False, **load) -> Callable[[Path], None]:
    """Return publish's `save` for an HF-Trainer stage: the trainer's save_model (all weights, or peft's adapter
    files) and the tokenizer, then for an adapter its merged copy (adapters.write_merged; `load` goes to the
    base's from_pretrained there), for all weights their bf16 copy where the stage started from one
    (store_as_started, unless `float32`)."""
    def save(folder: Path) -> None:
        trainer.save_model(str(folder))
        if not trainer.accelerator.is_main_process:
            return
        if job.adapter:
            adapters.write_merged(folder, model_class=model_class, base_dir=job.base_model, **load)
        elif not float32:
            store_as_started(job, folder, model_class=model_class, **load)

    return save


BF16 = "bfloat16"


def saved_dtype(model_dir) -> str | None:
    """The dtype a model directory's config.json says its weights are saved in (transformers 4 wrote torch_dtype)."""
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config.get("dtype") or config.get("torch_dtype")


def store_as_started(job: Job, folder: Path, *, model_class, **load) -> None:
    """Rewrite the whole model saved in `folder` in bf16 when the model the stage started from was saved so.

    A stage trains in float32 on a CPU (Job.load_dtype) and the Trainer saves what it trained: SmolLM2-135M's SFT
    version would be 538 MB where its base is 269 MB, and bf16 keeps more than the precision its 4-bit file had.
    Rounding drops what moved a weight by less than half a bf16 step: after 3 SFT steps at lr 1e-5, 2.9% of its
    weights differed from the base's, all of them in the float32 checkpoint. The saved copy is loaded in bf16 and saved
    again through transformers (tied weights, shards and config.json's dtype as from_pretrained expects them),
    into a sibling whose files replace the float32 ones.
    """
    if saved_dtype(job.base_model) != BF16 or saved_dtype(folder) == BF16:
        return
    model = model_class.from_pretrained(folder, dtype=torch.bfloat16, **load)
    staging = folder.with_name(folder.name + ".bf16")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    del model
    for old in [*folder.glob("model*.safetensors"), *folder.glob("model.safetensors.index.json")]:
        old.unlink()
    for new in staging.iterdir():
        os.replace(new, folder / new.name)
    staging.rmdir()


# Our names for the figures the job layer charts, from the names each trainer logs.
_ALIASES = {
    "learning_rate": ("learning_rate", "lr"),
    "reward_accuracy": ("accuracy",),
    "mean_reward": ("objective/scores", "reward"),
    "kl": ("objective/kl", "kl"),
}


def normalise(logs: dict, *, vf_coef: float | None = None) -> dict:
    """Return the trainer's numeric logs plus our names (loss, learning_rate, reward_accuracy, mean_reward, kl)."""
    metrics = numeric(logs)
    for ours, theirs in _ALIASES.items():
        for name in theirs:
            if name in metrics and ours not in metrics:
                metrics[ours] = metrics[name]
    if "loss" not in metrics and "loss/policy_avg" in metrics:  # PPO: the objective it minimises
        metrics["loss"] = metrics["loss/policy_avg"] + (vf_coef or 0.0) * metrics.get("loss/value_avg", 0.0)
    return metrics


class ProgressCallback(TrainerCallback):
    """Report steps, metrics and checkpoints to the progress file as a Trainer runs.

    `step_offset` and `episode_offset` shift PPO's counters, which restart at 0 on every
    `train()`, so that a resumed run reports its true global step.
    """

    def __init__(self, job: Job, *, step_offset: int = 0, episode_offset: int = 0, logs_every_step: bool = False,
                 vf_coef: float | None = None, start_fields: dict | None = None):
        self.job = job
        self.step_offset = step_offset
        self.episode_offset = episode_offset
        self.logs_every_step = logs_every_step
        self.vf_coef = vf_coef
        self.start_fields = start_fields or {}
        self.summary: dict = {}
        self.last_metrics: dict = {}
        self._last_emit = 0.0
        self.total = 0

    def step_of(self, state) -> int:
        return self.step_offset + state.global_step

    def on_train_begin(self, args, state, control, **kwargs):
        self.total = self.step_offset + state.max_steps
        ranks = [args.process_index]
        if args.world_size > 1:
            from accelerate.utils import gather_object

            # Every process answers: proof in the progress file that all of them joined the run.
            ranks = gather_object([args.process_index])
        self.job.progress.start(stage=self.job.stage, total=self.total, step=self.step_of(state),
                                world_size=args.world_size, ranks=ranks, **self.start_fields)

    def on_step_end(self, args, state, control, **kwargs):
        step = self.step_of(state)
        logged = self.logs_every_step or (args.logging_steps and state.global_step % args.logging_steps == 0)
        if not logged and (time.time() - self._last_emit >= 1.0 or state.global_step >= state.max_steps):
            self._emit(step, {})
        if self.job.config["step_delay_s"]:
            time.sleep(self.job.config["step_delay_s"])

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = dict(logs or {})
        if "train_runtime" in logs:  # the summary Trainer logs once training is over
            self.summary = numeric(logs)
            return
        if "episode" in logs:
            logs["episode"] = self.episode_offset + logs["episode"]
        self.last_metrics = normalise(logs, vf_coef=self.vf_coef)
        self._emit(self.step_of(state), self.last_metrics)

    def on_save(self, args, state, control, **kwargs):
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        self.job.progress.checkpoint(step=self.step_of(state), path=str(path))

    def _emit(self, step: int, metrics: dict) -> None:
        self._last_emit = time.time()
        self.job.progress.step(step=step, total=self.total, metrics=metrics)


def is_complete_checkpoint(path: Path) -> bool:
    # Trainer writes trainer_state.json last: a checkpoint without it was cut short by a kill.
    return (path / "trainer_state.json").exists()


def last_checkpoint(folder: Path) -> Path | None:
    """Return the newest complete HF checkpoint in `folder`, removing any cut short after it."""
    if not folder.is_dir():
        return None
    found = sorted(
        (p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
    )
    while found and not is_complete_checkpoint(found[-1]):
        shutil.rmtree(found.pop(), ignore_errors=True)
    return found[-1] if found else None


def prepare_work_dir(job: Job, main: bool) -> None:
    """Create the work dir; a run that does not resume starts with no checkpoints of an earlier try."""
    if main:
        job.work_dir.mkdir(parents=True, exist_ok=True)
        if not job.resume:
            shutil.rmtree(job.checkpoints, ignore_errors=True)


def start_work(job: Job, args) -> str | None:
    """Prepare work_dir (main process first) and return the checkpoint to resume from, if any."""
    with args.main_process_first(desc="work dir"):
        main = args.process_index == 0
        prepare_work_dir(job, main)
        checkpoint = last_checkpoint(job.checkpoints) if job.resume else None
    return str(checkpoint) if checkpoint else None


def publish(job: Job, *, main: bool, wait: Callable[[], None], save: Callable[[Path], None],
            evaluate: Callable[[Path], dict], train_metrics: dict) -> dict | None:
    """Save the model beside out_dir, evaluate it, then rename it into place and report done.

    `save` runs in every process (DeepSpeed gathers weights collectively); evaluation and the
    rename only in the main one. A run killed before the rename leaves no out_dir.
    """
    if isinstance(job.config.get("adapter"), dict) and not job.adapter_chosen:
        # A stage whose trainer never asked adapter_config trained all weights: say so rather than register them.
        raise ValueError(f"the {job.stage} stage does not train adapters, and its adapter setting asks for one: "
                         "set adapter to null")
    partial = partial_dir(job.out_dir)
    if main:
        job.out_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(partial, ignore_errors=True)
    wait()
    save(partial)
    wait()
    if not main:
        return None
    metrics = evaluate(partial)
    job.progress.eval(metrics)
    everything = {**train_metrics, **metrics}
    (partial / SUMMARY_FILE).write_text(json.dumps(
        {"stage": job.stage, "config": job.config, "seed": job.seed, "metrics": numeric(everything),
         "data": {"train": job.train_path, "eval": job.eval_path}, "base_model": job.base_model,
         "reward_model": job.reward_model, "previous_policy": job.previous_policy,
         # An adapter version: what loads it needs its base (adapters.adapter_base reads it here).
         "adapter": {**job.adapter, "base": job.base_model, "merged": adapters.MERGED} if job.adapter else None},
        indent=2, default=str,
    ))
    if job.out_dir.exists():
        # A finished model is already there (an earlier try that died before reporting done):
        # swap it out so the rename below still lands whole.
        stale = job.out_dir.parent / f".{job.out_dir.name}.replaced"
        shutil.rmtree(stale, ignore_errors=True)
        os.replace(job.out_dir, stale)
        os.replace(partial, job.out_dir)
        shutil.rmtree(stale, ignore_errors=True)
    else:
        os.replace(partial, job.out_dir)
    job.progress.done(out_dir=str(job.out_dir), metrics=everything)
    return everything
