"""Stage 3: PPO against the reward model with `trl.experimental.ppo.PPOTrainer` (trl 1.12).

The policy and the frozen reference both start from the SFT model; the reward model and the
value model both from the reward model. Around the traps of trl 1.12's PPO:

- Reward and value models are read through `.score` and `base_model_prefix` (PPO calls the
  backbone and the head itself), and get the policy's token ids: both must be sequence
  classifiers with a `.score` head and the policy's tokenizer (checked before training).
- Replies are cut at the first EOS and their ends found by the pad token, so pad must differ
  from EOS (refused otherwise); `stop_token="eos"` is set, as TRL's default is no stop at all.
- The dataset is pre-tokenized `input_ids` only: the prompt through the chat template with
  `add_generation_prompt=True`, left-truncated to leave room for the reply.
- The global batch must divide by `num_mini_batches`, and a dataset smaller than one batch makes
  its endless data loader wait forever: both refused by config.config_problems.
- It builds its own `Accelerator()`, which ignores `args.bf16`: with bf16 on, the mixed precision
  is handed to it through ACCELERATE_MIXED_PRECISION.
- `train()` cannot resume, restarts `global_step` at 0 and never checks `should_training_stop`.
  So a run is a child process that is killed to cancel it; every `save_every` updates the policy
  and value weights, the optimizer state and the update count are saved (atomically) under
  work_dir/checkpoints/update-N; a resumed run loads them, trains only the updates left (with the
  learning-rate schedule of the whole run, moved on to where it stopped) and reports its steps
  and episodes offset by what was done before.

With a LoRA adapter (the `adapter` setting) only the policy trains one, as TRL's PPO does: the value
model still trains all its weights, and no reference is loaded (it is the policy with its adapter
switched off). A checkpoint's policy is then the adapter, and a resumed run trains that adapter on.
"""

import json
import math
import os
import shutil
import warnings
from pathlib import Path

import torch
from datasets import Dataset
from peft import PeftModel
from transformers import AutoModelForCausalLM, TrainerCallback
from trl.experimental.ppo import PPOConfig, PPOTrainer

from . import adapters, evaluate
from .common import Job, ProgressCallback, adapter_config, fit_vocabulary, prepare_work_dir, publish, store_as_started
from .data import stage_rows
from .policy import policy_tokenizer, scored_model

STATE_FILE = "ppo_state.json"


class ResumablePPOTrainer(PPOTrainer):
    """PPOTrainer whose optimizer and LR schedule can continue a run cut short.

    PPO sizes its schedule by the updates of this `train()` call; a resumed run instead keeps the
    schedule of the whole run and steps it on past the updates already done.
    """

    def __init__(self, *args, updates_done: int = 0, updates_total: int | None = None,
                 optimizer_state: dict | None = None, **kwargs):
        self._updates_done = updates_done
        self._updates_total = updates_total
        self._optimizer_state = optimizer_state
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        if self._optimizer_state is not None:
            optimizer.load_state_dict(self._optimizer_state)
        return optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        scheduler = super().create_scheduler(self._updates_total or num_training_steps, optimizer)
        with warnings.catch_warnings():  # stepping a scheduler before its optimizer: intended here
            warnings.simplefilter("ignore")
            for _ in range(self._updates_done):
                scheduler.step()
        return scheduler


def last_update_checkpoint(folder: Path) -> Path | None:
    found = [p for p in folder.glob("update-*") if (p / STATE_FILE).exists() and p.name.split("-")[-1].isdigit()]
    return max(found, key=lambda p: int(p.name.split("-")[-1]), default=None)


class UpdateCheckpoints(TrainerCallback):
    """Save policy, value model, optimizer and progress every `save_every` PPO updates."""

    def __init__(self, job: Job, *, updates_done: int, updates_total: int, batch_size: int):
        self.job = job
        self.updates_done = updates_done
        self.updates_total = updates_total
        self.batch_size = batch_size
        self.trainer = None  # set once the trainer exists

    def on_step_end(self, args, state, control, **kwargs):
        update = self.updates_done + state.global_step
        if update % self.job.config["save_every"] == 0 and update < self.updates_total:
            self.save(update)

    def save(self, update: int) -> None:
        trainer = self.trainer
        folder = self.job.checkpoints / f"update-{update}"
        partial = folder.with_name(folder.name + ".partial")
        if trainer.accelerator.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)
        save_weights(trainer, partial, value=True)
        if trainer.accelerator.is_main_process:
            if not trainer.is_deepspeed_enabled:  # DeepSpeed shards its optimizer: resumed runs start it afresh
                torch.save(trainer.optimizer.state_dict(), partial / "optimizer.pt")
            (partial / STATE_FILE).write_text(json.dumps({
                "update": update, "episodes": update * self.batch_size, "updates_total": self.updates_total,
                "batch_size": self.batch_size,
            }))
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(partial, folder)  # whole or absent: a kill mid-save leaves only a .partial
            older = sorted((p for p in self.job.checkpoints.glob("update-*") if p.name.split("-")[-1].isdigit()),
                           key=lambda p: int(p.name.split("-")[-1]))
            for stale in older[:-self.job.config["save_total_limit"]]:
                shutil.rmtree(stale, ignore_errors=True)
            self.job.progress.checkpoint(step=update, path=str(folder))
        trainer.accelerator.wait_for_everyone()


def save_weights(trainer, folder: Path, *, value: bool) -> None:
    """Save the policy (into `folder`, or `folder`/policy with the value model beside it in `folder`/value).

    Not PPOTrainer.save_model: under DDP it looks for `.policy` on the DDP wrapper, misses it, and
    saves the whole wrapper, whose tied embeddings safetensors refuses; and its other processes fail
    on an attribute `Trainer.__init__` would have set. Every process must call this: under DeepSpeed
    ZeRO-3 the weights are gathered collectively.
    """
    accelerator = trainer.accelerator
    weights = accelerator.get_state_dict(trainer.model)
    if not accelerator.is_main_process:
        return
    wrapper = accelerator.unwrap_model(trainer.model)
    parts = [("policy", wrapper.policy, "policy.")]
    if value:
        parts.append(("value", wrapper.value_model, "value_model."))
    for name, module, prefix in parts:
        module.save_pretrained(folder / name if value else folder,
                               state_dict={k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)})


def prompt_ids(tokenizer, rows: list[dict], *, room: int) -> list[list[int]]:
    """Tokenize prompts as the policy will see them, ending in the assistant marker; keep their last `room` tokens."""
    return [tokenizer.apply_chat_template(r["prompt"], tokenize=True, add_generation_prompt=True,
                                          return_dict=False)[-room:] for r in rows]


def train(job: Job) -> None:
    c = job.config
    job.use_tf32()
    bf16 = job.setting("bf16")
    if bf16:
        os.environ["ACCELERATE_MIXED_PRECISION"] = "bf16"  # PPOTrainer's own Accelerator() reads only this
    args = PPOConfig(
        output_dir=str(job.work_dir / "ppo-trainer"), learning_rate=c["learning_rate"],
        per_device_train_batch_size=c["per_device_train_batch_size"],
        per_device_eval_batch_size=c["per_device_eval_batch_size"],
        gradient_accumulation_steps=c["gradient_accumulation_steps"], num_ppo_epochs=c["num_ppo_epochs"],
        num_mini_batches=c["num_mini_batches"], kl_coef=c["kl_coef"], kl_estimator=c["kl_estimator"],
        response_length=c["response_length"], temperature=c["temperature"], stop_token="eos",
        missing_eos_penalty=c["missing_eos_penalty"], cliprange=c["cliprange"], cliprange_value=c["cliprange_value"],
        vf_coef=c["vf_coef"], gamma=c["gamma"], lam=c["lam"], whiten_rewards=c["whiten_rewards"],
        local_rollout_forward_batch_size=c["local_rollout_forward_batch_size"], num_sample_generations=0,
        lr_scheduler_type=c["lr_scheduler_type"], warmup_steps=c["warmup_steps"], weight_decay=c["weight_decay"],
        optim=job.optim, bf16=bf16, use_cpu=not job.cuda, report_to=[], save_strategy="no", logging_steps=1,
        disable_tqdm=True, dataloader_num_workers=0, seed=job.seed + c["seed_offset"],
    )
    main = args.process_index == 0
    # PPOConfig's own `world_size` field (None until the trainer fills it) hides TrainingArguments'
    # property, which args.main_process_first() needs: ask accelerate's state instead.
    world = args.distributed_state.num_processes
    with args.distributed_state.main_process_first():
        prepare_work_dir(job, main)
        resume_from = last_update_checkpoint(job.checkpoints) if job.resume else None
    state = json.loads((resume_from / STATE_FILE).read_text()) if resume_from else {"update": 0}

    tokenizer = policy_tokenizer(job)
    attention = c["attn_implementation"]
    # All weights resume from the checkpoint's policy; an adapter from the SFT model with the adapter saved so far.
    full_resume = resume_from and not adapters.is_adapter(resume_from / "policy")
    policy = AutoModelForCausalLM.from_pretrained(resume_from / "policy" if full_resume else job.base_model,
                                                  attn_implementation=attention, dtype=job.load_dtype)
    lora = adapter_config(job, policy, tokenizer)
    if lora and resume_from:
        # TRL takes either a config for a fresh adapter or a model that has one; the resumed one trains on.
        policy, lora = PeftModel.from_pretrained(policy, str(resume_from / "policy"), is_trainable=True), None
    # With an adapter the reference is the policy with its adapter switched off (TRL's null_ref_context).
    reference = None
    if not job.adapter:
        reference = AutoModelForCausalLM.from_pretrained(job.base_model, attn_implementation=attention,
                                                         dtype=job.load_dtype)
        fit_vocabulary(reference, tokenizer)
    room = policy.config.max_position_embeddings - c["response_length"]
    rows = stage_rows("ppo", job.train_path)
    train_set = Dataset.from_dict({"input_ids": prompt_ids(tokenizer, rows, room=room)})
    eval_rows = stage_rows("ppo", job.eval_path, limit=c["eval_max_rows"]) if job.eval_path else rows[:8]
    eval_set = Dataset.from_dict({"input_ids": prompt_ids(tokenizer, eval_rows, room=room)})

    batch_size = c["per_device_train_batch_size"] * c["gradient_accumulation_steps"] * world
    total_episodes = c["total_episodes"] or max(1, int(c["num_train_epochs"] * len(rows)))
    updates_total = math.ceil(total_episodes / batch_size)
    done = state["update"]
    if resume_from and state.get("batch_size") != batch_size:
        raise ValueError(f"cannot resume: the checkpoint was made with batch {state.get('batch_size')}, "
                         f"this run has {batch_size}")
    args.total_episodes = (updates_total - done) * batch_size
    args.seed += done  # a resumed run draws fresh prompt orders, not those of the updates already done

    optimizer_file = resume_from / "optimizer.pt" if resume_from else None
    callback = ProgressCallback(job, step_offset=done, episode_offset=done * batch_size, logs_every_step=True,
                                vf_coef=c["vf_coef"],
                                start_fields={"episodes_total": updates_total * batch_size,
                                              "resumed_from_step": done, "adapter": job.adapter})
    saver = UpdateCheckpoints(job, updates_done=done, updates_total=updates_total, batch_size=batch_size)
    pad = tokenizer.pad_token_id
    trainer = ResumablePPOTrainer(
        args=args, processing_class=tokenizer, model=policy, ref_model=reference, peft_config=lora,
        reward_model=scored_model(job.reward_model, pad_token_id=pad, attn_implementation=attention),
        value_model=scored_model(resume_from / "value" if resume_from else job.reward_model, pad_token_id=pad,
                                 attn_implementation=attention),
        train_dataset=train_set, eval_dataset=eval_set, callbacks=[callback, saver],
        updates_done=done, updates_total=updates_total,
        optimizer_state=torch.load(optimizer_file, weights_only=True) if optimizer_file and optimizer_file.exists()
        else None,
    )
    saver.trainer = trainer
    if done < updates_total:
        trainer.train()

    def save(folder: Path) -> None:
        save_weights(trainer, folder, value=False)
        if main:
            tokenizer.save_pretrained(folder)
            if job.adapter:
                adapters.write_merged(folder, model_class=AutoModelForCausalLM, base_dir=job.base_model)
            else:  # checkpoints keep float32 to resume from; the version is stored as the SFT model was
                store_as_started(job, folder, model_class=AutoModelForCausalLM)

    publish(job, main=main, wait=trainer.accelerator.wait_for_everyone, save=save,
            evaluate=lambda folder: evaluate.evaluate_policy(
                str(folder), job.eval_path, c, reference_dir=job.base_model, reward_dir=job.reward_model,
                previous_dir=job.previous_policy, seed=job.seed),
            train_metrics={"episodes": updates_total * batch_size, "updates": updates_total,
                           "resumed_from_step": done, **{f"last_{k}": v for k, v in callback.last_metrics.items()
                                                         if k in ("mean_reward", "kl", "loss")}})
