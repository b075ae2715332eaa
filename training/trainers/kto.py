"""Stage 3 from replies judged one by one: KTO (`trl.KTOTrainer`) on the unpaired judgements.

The policy starts from the SFT model and so does its frozen reference. KTO's implicit reward of a reply is DPO's,
beta * (log p_policy - log p_reference) summed over the reply's tokens; where DPO pushes a chosen reply's above a
rejected one's, KTO pushes a desirable reply's above a reference point and an undesirable one's below it, the
point being the policy's KL to the reference, estimated on mismatched (prompt, reply) pairs of the same batch. It
needs no pairs: an accepted demonstration or a reply labelled poor is a row on its own. The trainer is a Hugging
Face Trainer, so checkpoints and `resume_from_checkpoint` work as in SFT. Around TRL:

- TRL 1.12 has KTO in its core (`trl.KTOTrainer`); `trl.experimental.kto` is a deprecated alias of it.
- TRL pairs each row with its neighbour in a batch for the KL estimate (the replies of a batch rotated by one),
  so KTOConfig reads the rows in a fixed order. The export writes them tree by tree, which would fill a batch with
  replies to one prompt and make the "mismatched" pairs matched ones: the rows are shuffled here, once, by the
  round's seed, so a resumed run reads them in the same order.
- A batch of one row per device would make that KL term the row's own reward; TRL refuses it once both models are
  loaded, the stage's checks before anything loads. Both labels are needed (the stage's rows_checks): the job layer
  refuses a round without them before it trains SFT, and this stage again before it loads a model.
- The SFT model's tokenizer (its own pad, not EOS) is the one handed to the trainer and saved beside the policy.
- TRL's configs turn gradient checkpointing on by default; here the `gradient_checkpointing` setting decides.
- With a LoRA adapter no reference is loaded: TRL computes the reference's log-probabilities with the adapter off.
- TRL drops rows whose prompt alone fills max_length (no reply token would be left): counted as rows_too_long.

Held-out evaluation (`evaluate_kto`) on the unpaired test split: each reply's implicit reward (without the KL
reference point, as TRL logs rewards/chosen and rewards/rejected), the share of desirable replies whose reward is
above 0 and of undesirable ones below 0, their means, and the KL of the policy to the SFT model on its own samples
for the held-out prompts, as DPO measures it.
"""

import json
import random

from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import KTOConfig, KTOTrainer

from .common import (
    Job,
    ProgressCallback,
    adapter_config,
    fit_vocabulary,
    padded_batch_arguments,
    publish,
    save_for,
    start_work,
    training_arguments,
)
from .data import DataError, stage_rows
from .dpo import _causal_lm, _chat_ids, _device, kl_to_reference
from .evaluate import masked_nll
from .stages import STAGES

# Our names for what KTOTrainer logs, beside its own.
_LOGGED = {"rewards/margins": "mean_margin", "rewards/chosen": "mean_reward_desirable",
           "rewards/rejected": "mean_reward_undesirable"}


class _UnpairedProgress(ProgressCallback):
    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = dict(logs or {})
        for theirs, ours in _LOGGED.items():
            if theirs in logs:
                logs.setdefault(ours, logs[theirs])
        super().on_log(args, state, control, logs=logs, **kwargs)


def train(job: Job) -> None:
    c = job.config
    rows = stage_rows(job.stage, job.train_path)
    problems = STAGES[job.stage].rows_checks(rows)
    if problems:
        raise DataError("; ".join(problems))
    args = training_arguments(
        job, KTOConfig, max_length=c["max_length"], beta=c["beta"], loss_type=c["loss_type"],
        desirable_weight=c["desirable_weight"], undesirable_weight=c["undesirable_weight"],
        activation_checkpointing=c["gradient_checkpointing"], **padded_batch_arguments(job),
    )
    random.Random(args.seed).shuffle(rows)
    main = args.process_index == 0
    checkpoint = start_work(job, args)
    tokenizer = AutoTokenizer.from_pretrained(job.base_model)
    policy = AutoModelForCausalLM.from_pretrained(job.base_model, attn_implementation=c["attn_implementation"],
                                                  dtype=job.load_dtype)
    lora = adapter_config(job, policy, tokenizer)
    reference = None  # with an adapter, TRL's reference is the policy with its adapter switched off: no second copy
    if lora is None:
        reference = AutoModelForCausalLM.from_pretrained(job.base_model, attn_implementation=c["attn_implementation"],
                                                         dtype=job.load_dtype)
        fit_vocabulary(reference, tokenizer)
    callback = _UnpairedProgress(job, start_fields={"adapter": job.adapter})
    trainer = KTOTrainer(model=policy, ref_model=reference, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer, callbacks=[callback], peft_config=lora)
    kept = trainer.train_dataset["label"]
    dropped = len(rows) - len(kept)
    if not kept:
        raise ValueError(f"every one of the {len(rows)} rows has a prompt of max_length ({c['max_length']}) "
                         "tokens or more: nothing of a reply would be trained on")
    # What the trainer itself resolved and will use, for the record in the start event.
    callback.start_fields.update(rows_too_long=dropped, desirable_rows=sum(kept), undesirable_rows=len(kept) - sum(kept))
    callback.start_fields["trl_config"] = {
        "loss_type": trainer.loss_type, "beta": trainer.beta, "desirable_weight": trainer.desirable_weight,
        "undesirable_weight": trainer.undesirable_weight, "kl_term": trainer.calculate_KL,
        "max_length": trainer.args.max_length, "train_sampling_strategy": trainer.args.train_sampling_strategy,
        "activation_checkpointing": trainer.args.activation_checkpointing,
    }
    trainer.train(resume_from_checkpoint=checkpoint)
    publish(job, main=main, wait=trainer.accelerator.wait_for_everyone,
            save=save_for(job, trainer, model_class=AutoModelForCausalLM),
            evaluate=lambda folder: evaluate_kto(str(folder), job.eval_path, c, reference_dir=job.base_model,
                                                 seed=job.seed),
            train_metrics={**callback.summary, "rows_too_long": dropped})


def evaluate_kto(policy_dir: str, eval_path: str | None, config: dict, *, reference_dir: str, seed: int = 0) -> dict:
    """Return the held-out shares of desirable replies with an implicit reward above 0 and of undesirable ones
    below 0, the mean rewards, and KL to the reference."""
    if not eval_path:
        return {"eval_rows": 0}
    rows = stage_rows("kto", eval_path, limit=config["eval_max_rows"])
    device, batch, beta = _device(), config["per_device_eval_batch_size"], config["beta"]
    tokenizer = AutoTokenizer.from_pretrained(policy_dir)
    policy, reference = _causal_lm(policy_dir, device), _causal_lm(reference_dir, device)
    context = min(config["max_length"], policy.config.max_position_embeddings)

    # Each row tokenized as KTOTrainer does: the prompt with the assistant marker, then the reply is what
    # prompt + reply adds to it, cut at the end to max_length; rows whose prompt fills it are left out.
    sequences, masks, labels, prompts = [], [], [], {}
    for row in rows:
        prompt = _chat_ids(tokenizer, row["prompt"], add_generation_prompt=True)
        if len(prompt) >= context:
            continue
        full = _chat_ids(tokenizer, row["prompt"] + row["completion"])[:context]
        sequences.append(full)
        masks.append([0] * len(prompt) + [1] * (len(full) - len(prompt)))
        labels.append(row["label"])
        prompts.setdefault(json.dumps(row["prompt"]), prompt)
    metrics = {"eval_rows": len(rows), "eval_replies": len(sequences)}
    if not sequences:
        return metrics
    pad = tokenizer.pad_token_id
    ours = masked_nll(policy, sequences, masks, pad_id=pad, batch_size=batch)
    theirs = masked_nll(reference, sequences, masks, pad_id=pad, batch_size=batch)
    # log p_policy - log p_reference = nll_reference - nll_policy.
    rewards = [beta * (t - o) for (o, _), (t, _) in zip(ours, theirs)]
    desirable = [r for r, label in zip(rewards, labels) if label]
    undesirable = [r for r, label in zip(rewards, labels) if not label]
    right = sum(r > 0 for r in desirable) + sum(r < 0 for r in undesirable)
    metrics.update(eval_desirable=len(desirable), eval_undesirable=len(undesirable), label_accuracy=right / len(rewards))
    if desirable:
        metrics.update(desirable_accuracy=sum(r > 0 for r in desirable) / len(desirable),
                       mean_reward_desirable=sum(desirable) / len(desirable))
    if undesirable:
        metrics.update(undesirable_accuracy=sum(r < 0 for r in undesirable) / len(undesirable),
                       mean_reward_undesirable=sum(undesirable) / len(undesirable))
    if desirable and undesirable:
        metrics["mean_margin"] = metrics["mean_reward_desirable"] - metrics["mean_reward_undesirable"]

    # KL(policy || reference) on the policy's own replies to the distinct held-out prompts, as evaluate_dpo has it.
    metrics.update(kl_to_reference(policy, reference, tokenizer, list(prompts.values()),
                                   max_new_tokens=config["eval_max_new_tokens"], batch_size=batch, seed=seed))
    return metrics
