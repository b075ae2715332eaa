"""Stage 3 without a reward model: DPO (`trl.DPOTrainer`) on the preference pairs.

The policy starts from the SFT model and so does its frozen reference. DPO's implicit reward of a
reply is beta * (log p_policy - log p_reference), summed over the reply's tokens; the loss (TRL's
`loss_type`, one or several weighted) pushes the chosen reply's above the rejected one's. The trainer
is a Hugging Face Trainer, so checkpoints and `resume_from_checkpoint` work as in SFT. Around TRL:

- DPOTrainer makes pad = EOS when the tokenizer has none; the SFT model's tokenizer has its own pad
  (config.config_problems refuses one equal to EOS), so the policy's replies still end at EOS.
- The SFT model's tokenizer is the one handed to the trainer, and `save_model` saves it beside the
  policy: the published model and its tokenizer come from one place, as for every other stage.
- TRL's configs turn gradient checkpointing on by default; here the `gradient_checkpointing` setting decides.
- With a LoRA adapter no reference is loaded: TRL computes the reference's log-probabilities with the
  adapter switched off, which is the SFT model the adapter started from.
- An unknown loss fails only at the first step, inside TRL: config.config_problems refuses it first.

Held-out evaluation (`evaluate_dpo`) on the preference test split: the share of pairs whose chosen
reply gets the higher implicit reward (the figure TRL logs as rewards/accuracies while it trains),
the mean margin, and the KL of the policy to the SFT model on its own samples for the held-out
prompts, as the RL stages measure it. Win rates need a reward model to judge, and a DPO round has none.
"""

import json

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

from . import adapters
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
from .config import dpo_loss_types
from .data import stage_rows
from .evaluate import masked_nll

# Our names for what DPOTrainer logs, beside its own: the charts show reward_accuracy for both reward stages.
_LOGGED = {"rewards/accuracies": "reward_accuracy", "rewards/margins": "mean_margin"}


class _PreferenceProgress(ProgressCallback):
    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = dict(logs or {})
        for theirs, ours in _LOGGED.items():
            if theirs in logs:
                logs.setdefault(ours, logs[theirs])
        super().on_log(args, state, control, logs=logs, **kwargs)


def train(job: Job) -> None:
    c = job.config
    args = training_arguments(
        job, DPOConfig, max_length=c["max_length"], beta=c["beta"], loss_type=dpo_loss_types(c["loss_type"]),
        loss_weights=c["loss_weights"], label_smoothing=c["label_smoothing"],
        activation_checkpointing=c["gradient_checkpointing"], **padded_batch_arguments(job),
    )
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
    rows = stage_rows("dpo", job.train_path)
    callback = _PreferenceProgress(job, start_fields={"adapter": job.adapter})
    trainer = DPOTrainer(model=policy, ref_model=reference, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer, callbacks=[callback], peft_config=lora)
    # TRL drops pairs whose prompt alone fills max_length (truncated at the end, no reply token would be left).
    dropped = len(rows) - len(trainer.train_dataset)
    if not len(trainer.train_dataset):
        raise ValueError(f"every one of the {len(rows)} pairs has a prompt of max_length ({c['max_length']}) "
                         "tokens or more: nothing of a reply would be trained on")
    # What the trainer itself resolved and will use, for the record in the start event.
    callback.start_fields.update(pairs_too_long=dropped, trl_config={
        "loss_type": list(trainer.loss_types), "loss_weights": list(trainer.loss_weights), "beta": trainer.beta,
        "label_smoothing": trainer.label_smoothing, "max_length": trainer.args.max_length,
        "activation_checkpointing": trainer.args.activation_checkpointing,
    })
    trainer.train(resume_from_checkpoint=checkpoint)
    publish(job, main=main, wait=trainer.accelerator.wait_for_everyone,
            save=save_for(job, trainer, model_class=AutoModelForCausalLM),
            evaluate=lambda folder: evaluate_dpo(str(folder), job.eval_path, c, reference_dir=job.base_model,
                                                 seed=job.seed),
            train_metrics={**callback.summary, "pairs_too_long": dropped})


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _causal_lm(model_dir: str, device) -> torch.nn.Module:
    return adapters.pretrained(AutoModelForCausalLM, model_dir).to(device).eval()


def _chat_ids(tokenizer, messages: list[dict], *, add_generation_prompt: bool = False) -> list[int]:
    return list(tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt,
                                              return_dict=False))


@torch.no_grad()
def _sample(model, tokenizer, prompts: list[list[int]], *, max_new_tokens: int, batch_size: int,
            seed: int) -> list[list[int]]:
    """Return one reply per prompt sampled at temperature 1, cut after its first EOS (kept).

    Plain `generate` on left-padded batches: training.generation, the platform's way to generate, is
    being rewritten as this is written, and a KL estimate needs nothing of it but unbiased samples.
    """
    device = next(model.parameters()).device
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    torch.manual_seed(seed % 2**63)
    replies = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        width = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(chunk):
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        output = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=True,
                                temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=max_new_tokens,
                                eos_token_id=eos, pad_token_id=pad)
        for row in output[:, width:].tolist():
            reply = row[:row.index(eos) + 1] if eos in row else row
            while reply and reply[-1] == pad:
                reply.pop()
            replies.append(reply)
    return replies


def evaluate_dpo(policy_dir: str, eval_path: str | None, config: dict, *, reference_dir: str, seed: int = 0) -> dict:
    """Return held-out preference accuracy and mean margin of the implicit reward, and KL to the reference."""
    if not eval_path:
        return {"eval_rows": 0}
    rows = stage_rows("dpo", eval_path, limit=config["eval_max_rows"])
    device, batch, beta = _device(), config["per_device_eval_batch_size"], config["beta"]
    tokenizer = AutoTokenizer.from_pretrained(policy_dir)
    policy, reference = _causal_lm(policy_dir, device), _causal_lm(reference_dir, device)
    pad = tokenizer.pad_token_id
    context = min(config["max_length"], policy.config.max_position_embeddings)

    # Each pair tokenized as DPOTrainer does: the prompt with the assistant marker, then the reply is what
    # prompt + reply adds to it, cut at the end to max_length; pairs whose prompt fills it are left out.
    sequences, masks, prompts = [], [], {}
    for row in rows:
        prompt = _chat_ids(tokenizer, row["prompt"], add_generation_prompt=True)
        if len(prompt) >= context:
            continue
        for reply in (row["chosen"], row["rejected"]):
            full = _chat_ids(tokenizer, row["prompt"] + reply)[:context]
            sequences.append(full)
            masks.append([0] * len(prompt) + [1] * (len(full) - len(prompt)))
        prompts.setdefault(json.dumps(row["prompt"]), prompt)
    metrics = {"eval_rows": len(rows), "eval_pairs": len(sequences) // 2}
    if not sequences:
        return metrics
    ours = masked_nll(policy, sequences, masks, pad_id=pad, batch_size=batch)
    theirs = masked_nll(reference, sequences, masks, pad_id=pad, batch_size=batch)
    # log p_policy - log p_reference = nll_reference - nll_policy.
    rewards = [beta * (t - o) for (o, _), (t, _) in zip(ours, theirs)]
    chosen, rejected = rewards[0::2], rewards[1::2]
    pairs = len(chosen)
    metrics.update({
        "preference_accuracy": sum(c > r for c, r in zip(chosen, rejected)) / pairs,
        "mean_margin": sum(c - r for c, r in zip(chosen, rejected)) / pairs,
        "mean_reward_chosen": sum(chosen) / pairs,
        "mean_reward_rejected": sum(rejected) / pairs,
    })

    metrics.update(kl_to_reference(policy, reference, tokenizer, list(prompts.values()),
                                   max_new_tokens=config["eval_max_new_tokens"], batch_size=batch, seed=seed))
    return metrics


def kl_to_reference(policy, reference, tokenizer, prompts: list[list[int]], *, max_new_tokens: int, batch_size: int,
                    seed: int) -> dict:
    """KL(policy || reference) on the policy's own replies to `prompts` (token ids): the mean over prompts of the
    sum over reply tokens of log p - log p_ref, as the RL stages' evaluation measures it (there at their
    temperature). DPO's and KTO's evaluations both report it."""
    pad = tokenizer.pad_token_id
    room = policy.config.max_position_embeddings - max_new_tokens
    asked = [p[-room:] for p in prompts]
    replies = _sample(policy, tokenizer, asked, max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed)
    sampled = [p + r for p, r in zip(asked, replies)]
    reply_masks = [[0] * len(p) + [1] * len(r) for p, r in zip(asked, replies)]
    ours = masked_nll(policy, sampled, reply_masks, pad_id=pad, batch_size=batch_size)
    theirs = masked_nll(reference, sampled, reply_masks, pad_id=pad, batch_size=batch_size)
    return {
        "kl": sum(t - o for (o, _), (t, _) in zip(ours, theirs)) / len(asked),
        "mean_reply_tokens": sum(len(r) for r in replies) / len(replies),
        "kl_prompts": len(asked),
    }
