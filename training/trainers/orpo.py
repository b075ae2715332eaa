"""One reference-free stage: ORPO (`trl.experimental.orpo.ORPOTrainer`) from the base model on the preference pairs.

ORPO is SFT and preference learning at once: its loss is the chosen reply's NLL minus beta (the paper's
lambda) times log sigmoid of the log odds ratio, log(p_c / (1 - p_c)) - log(p_r / (1 - p_r)), where p is
the reply's mean per-token probability. It needs no SFT model, no reference and no reward model, so the
recipe is the one stage, from the base. The trainer is a Hugging Face Trainer, so checkpoints and
`resume_from_checkpoint` work as in SFT. Around TRL:

- ORPOTrainer tokenizes each pair itself (chat template, prompt, then each reply) and, where prompt and
  reply are longer than max_length, cuts the reply to max_length minus the longer reply's length, which
  can still leave a sequence longer than max_length, or than the model's context. Pairs whose tokenized
  chosen or rejected sequence is longer than max_length are left out instead (`pairs_too_long`).
- TRL's NLL term is over the whole chosen sequence, prompt tokens included (its concatenated_forward);
  the odds ratio is over reply tokens only.
- TRL's configs turn gradient checkpointing on by default; here the `gradient_checkpointing` setting decides.
- With a LoRA adapter (the `adapter` setting) ORPO trains the adapter on the base, whose weights stay as they
  are; the version is the adapter plus the base, with a merged copy (adapters.py).

Held-out evaluation (`evaluate_orpo`) on the pairs of the preference test split, tokenized by the trainer
itself: the share of pairs whose log odds ratio favours the chosen reply (the figure TRL logs as
rewards/accuracies while it trains), the mean log odds ratio and its mean log sigmoid (ORPO's preference
term), the mean margin beta * (mean log p_chosen - mean log p_rejected) that TRL logs as rewards/margins,
and the chosen replies' per-token NLL; each also for the base model on the same pairs (`..._base`), which
is what ORPO moved from. No KL to the base is recorded: the base is no chat model, and ORPO is meant to
move far from it (it is its SFT as well); no win rate either: an ORPO round has no reward model to judge.
"""

import math

from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl.experimental.orpo import ORPOConfig, ORPOTrainer

from . import adapters
from .common import (
    Job,
    ProgressCallback,
    adapter_config,
    publish,
    save_for,
    start_work,
    training_arguments,
)
from .data import stage_rows
from .evaluate import masked_nll

# Our names for what ORPOTrainer logs, beside its own: the charts show reward_accuracy for both preference stages.
_LOGGED = {"rewards/accuracies": "reward_accuracy", "rewards/margins": "mean_margin"}


class _PreferenceProgress(ProgressCallback):
    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = dict(logs or {})
        for theirs, ours in _LOGGED.items():
            if theirs in logs:
                logs.setdefault(ours, logs[theirs])
        super().on_log(args, state, control, logs=logs, **kwargs)


def _fits(max_length: int):
    return lambda row: max(len(row["chosen_input_ids"]), len(row["rejected_input_ids"])) <= max_length


def train(job: Job) -> None:
    c = job.config
    args = training_arguments(job, ORPOConfig, max_length=c["max_length"], beta=c["beta"],
                              activation_checkpointing=c["gradient_checkpointing"])
    main = args.process_index == 0
    checkpoint = start_work(job, args)
    tokenizer = AutoTokenizer.from_pretrained(job.base_model)
    policy = AutoModelForCausalLM.from_pretrained(job.base_model, attn_implementation=c["attn_implementation"],
                                                  dtype=job.load_dtype)
    lora = adapter_config(job, policy, tokenizer)
    rows = stage_rows("orpo", job.train_path)
    held_out = stage_rows("orpo", job.eval_path, limit=c["eval_max_rows"]) if job.eval_path else []
    callback = _PreferenceProgress(job, start_fields={"adapter": job.adapter})
    # The held-out pairs go in only to be tokenized as the training pairs are (eval_strategy is "no").
    trainer = ORPOTrainer(model=policy, args=args, train_dataset=Dataset.from_list(rows),
                          eval_dataset=Dataset.from_list(held_out) if held_out else None,
                          processing_class=tokenizer, callbacks=[callback], peft_config=lora)
    # Trainer builds its dataloader from train_dataset when train() starts: the pairs left out here are not trained on.
    trainer.train_dataset = trainer.train_dataset.filter(_fits(c["max_length"]))
    dropped = len(rows) - len(trainer.train_dataset)
    if not len(trainer.train_dataset):
        raise ValueError(f"every one of the {len(rows)} pairs is longer than max_length ({c['max_length']}) "
                         "tokens: nothing would be trained on")
    callback.start_fields.update(pairs_too_long=dropped, trl_config={
        "beta": trainer.beta, "max_length": trainer.max_length,
        "activation_checkpointing": trainer.args.activation_checkpointing,
    })
    trainer.train(resume_from_checkpoint=checkpoint)
    pairs = trainer.eval_dataset.filter(_fits(c["max_length"])) if held_out else None
    publish(job, main=main, wait=trainer.accelerator.wait_for_everyone,
            save=save_for(job, trainer, model_class=AutoModelForCausalLM),
            evaluate=lambda folder: evaluate_orpo(str(folder), pairs, c, base_dir=job.base_model,
                                                  eval_rows=len(held_out), pad_id=tokenizer.pad_token_id),
            train_metrics={**callback.summary, "pairs_too_long": dropped})


def _log1mexp(x: float) -> float:
    """log(1 - exp(x)) for x < 0, computed stably (as TRL's log1mexp)."""
    return math.log(-math.expm1(x)) if x > -math.log(2) else math.log1p(-math.exp(x))


def _preference_figures(model, pairs, *, pad_id: int, batch_size: int, beta: float) -> dict:
    """Mean per-token log p of each pair's chosen and rejected reply (the tokens TRL's labels mark), and the
    figures ORPO is judged by."""
    def mean_logps(side: str) -> list[float]:
        sequences = list(pairs[f"{side}_input_ids"])
        masks = [[int(label != -100) for label in labels] for labels in pairs[f"{side}_labels"]]
        return [-total / max(count, 1) for total, count in masked_nll(model, sequences, masks, pad_id=pad_id,
                                                                      batch_size=batch_size)]

    chosen, rejected = mean_logps("chosen"), mean_logps("rejected")
    # A reply's mean log p is below 0; at 0 (a reply the model is sure of) its odds are infinite.
    clamp = -1e-6
    log_odds = [(c - r) - (_log1mexp(min(c, clamp)) - _log1mexp(min(r, clamp))) for c, r in zip(chosen, rejected)]
    n = len(log_odds)
    return {
        "preference_accuracy": sum(x > 0 for x in log_odds) / n,
        "mean_log_odds": sum(log_odds) / n,
        # log sigmoid(x) = -log(1 + e^-x), computed without overflow for large -x.
        "mean_log_odds_ratio": sum(min(x, 0.0) - math.log1p(math.exp(-abs(x))) for x in log_odds) / n,
        "mean_margin": beta * sum(c - r for c, r in zip(chosen, rejected)) / n,
        "chosen_nll": -sum(chosen) / n,
    }


def evaluate_orpo(policy_dir: str, pairs: Dataset | None, config: dict, *, base_dir: str, eval_rows: int,
                  pad_id: int) -> dict:
    """Return held-out preference accuracy, log odds and margins of the policy, and the base's beside them."""
    import torch

    if not eval_rows:
        return {"eval_rows": 0}
    metrics = {"eval_rows": eval_rows, "eval_pairs": len(pairs)}
    if not len(pairs):
        return metrics
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for suffix, model_dir in (("", policy_dir), ("_base", base_dir)):
        model = adapters.pretrained(AutoModelForCausalLM, model_dir).to(device).eval()  # an adapter: merged in its base
        figures = _preference_figures(model, pairs, pad_id=pad_id, batch_size=config["per_device_eval_batch_size"],
                                      beta=config["beta"])
        metrics.update({f"{name}{suffix}": value for name, value in figures.items()})
        del model
    return metrics
