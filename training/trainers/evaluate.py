"""Evaluate a finished model on the held-out split, in the main process after training.

- base: held-out loss and perplexity of the text.
- sft: held-out loss on assistant tokens, and BLEU, ROUGE-L and exact match of greedy replies
  against the held-out demonstrations (sacrebleu and rouge-score directly: `evaluate.load()`
  would fetch metric code from a hub).
- reward: accuracy on held-out pairs (chosen scored above rejected) and the mean margin.
- ppo / rloo: mean reward of the policy's sampled replies to held-out prompts, their KL against
  the SFT (reference) model, and win rates against the SFT model and the previous policy as
  judged by the reward model. The win rates are labelled optimistic: the policy was optimised
  against that very reward model.

Every function caps the rows it reads at `eval_max_rows` and returns {"eval_rows": 0} without
a held-out file. Replies are generated as the platform generates them everywhere else, through
training.generation.local (model_load and generate_ids), in the dtype the model was saved in on CUDA
and in float32 on a CPU, whose bf16 matrix products are many times slower (adapters.pretrained).
A model directory may be a LoRA adapter: it loads as its base with the adapter merged in (adapters.py).
"""

import math

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)

from training.generation import SamplingSettings
from training.generation.local import SAVED, LoadedModel, generate_ids, model_load

from . import adapters
from .data import prompt_rows, stage_rows


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _pad_right(sequences: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def masked_nll(model, sequences: list[list[int]], masks: list[list[int]], *, pad_id: int, batch_size: int,
               temperature: float = 1.0) -> list[tuple[float, int]]:
    """Return (summed negative log-likelihood, token count) per sequence over the tokens its mask marks."""
    device = next(model.parameters()).device
    out = []
    for chunk in _batches(list(zip(sequences, masks)), batch_size):
        ids, attention = _pad_right([s for s, _ in chunk], pad_id, device)
        target_mask, _ = _pad_right([m for _, m in chunk], 0, device)
        logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float() / temperature
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        keep = target_mask[:, 1:].bool()
        for row in range(len(chunk)):
            out.append((-logprobs[row][keep[row]].sum().item(), int(keep[row].sum().item())))
    return out


def _loss_metrics(nll: list[tuple[float, int]]) -> dict:
    tokens = sum(n for _, n in nll)
    if not tokens:
        return {}
    loss = sum(s for s, _ in nll) / tokens
    return {"eval_loss": loss, "perplexity": math.exp(min(loss, 50.0)), "eval_tokens": tokens}


def _generation_model(model_dir: str) -> LoadedModel:
    """Load a model to generate from, in the dtype it was saved in (float32 on a CPU), kept only while it is used.

    keep=False: the process evaluating still holds the model it trained, and models evaluated one
    after another should not all stay loaded.
    """
    return model_load(model_dir, dtype=SAVED if torch.cuda.is_available() else "float32", keep=False)


def _settings(*, temperature: float, max_new_tokens: int, seed: int) -> SamplingSettings:
    # A run's seed may be negative, which SamplingSettings refuses; torch takes it modulo 2**64 anyway.
    return SamplingSettings(temperature=temperature, max_new_tokens=max_new_tokens, seed=seed % 2**64)


def evaluate_base(model_dir: str, eval_path: str | None, config: dict) -> dict:
    if not eval_path:
        return {"eval_rows": 0}
    rows = stage_rows("base", eval_path, limit=config["eval_max_rows"])
    # Loss only, nothing generated: not through model_load, which wants a chat template a base model may lack.
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = adapters.pretrained(AutoModelForCausalLM, model_dir).to(_device()).eval()
    context = min(config["max_length"], model.config.max_position_embeddings)
    sequences = [tokenizer(r["text"])["input_ids"][:context] for r in rows]
    sequences = [s for s in sequences if len(s) > 1]
    nll = masked_nll(model, sequences, [[1] * len(s) for s in sequences], pad_id=tokenizer.pad_token_id,
                     batch_size=config["per_device_eval_batch_size"]) if sequences else []
    return {"eval_rows": len(rows), **_loss_metrics(nll)}


def evaluate_sft(model_dir: str, eval_path: str | None, config: dict, *, seed: int = 0) -> dict:
    if not eval_path:
        return {"eval_rows": 0}
    # Imported only when there is something to score: rouge_score alone takes about a second.
    import sacrebleu
    from rouge_score import rouge_scorer

    from .sft import loss_mask  # here: sft imports this module

    rows = stage_rows("sft", eval_path, limit=config["eval_max_rows"])
    loaded = _generation_model(model_dir)
    tokenizer, model = loaded.tokenizer, loaded.model
    context = min(config["max_length"], model.config.max_position_embeddings)
    sequences, masks, prompts, references = [], [], [], []
    for row in rows:
        # The tokens training put in the loss: marked assistant turns, or without markers the last reply.
        ids, mask = loss_mask(tokenizer, row["messages"])
        sequences.append(ids[:context])
        masks.append(mask[:context])
        last = max((i for i, m in enumerate(row["messages"]) if m["role"] == "assistant"), default=None)
        if last is None:
            continue
        prompt = tokenizer.apply_chat_template(row["messages"][:last], tokenize=True, add_generation_prompt=True,
                                               return_dict=False)
        new_tokens = config["eval_max_new_tokens"]
        if len(prompt) + new_tokens <= model.config.max_position_embeddings:
            prompts.append(prompt)
            references.append(row["messages"][last]["content"])
    pad = tokenizer.pad_token_id
    metrics = {"eval_rows": len(rows), **_loss_metrics(
        masked_nll(model, sequences, masks, pad_id=pad, batch_size=config["per_device_eval_batch_size"]))}
    if prompts:
        greedy = _settings(temperature=0, max_new_tokens=config["eval_max_new_tokens"], seed=seed)
        replies = generate_ids(loaded, prompts, settings=greedy, batch_size=config["per_device_eval_batch_size"])
        hypotheses = [tokenizer.decode(r, skip_special_tokens=True).strip() for r in replies]
        scorer = rouge_scorer.RougeScorer(["rougeL"])
        metrics.update({
            "bleu": sacrebleu.corpus_bleu(hypotheses, [references]).score,
            "rouge_l": sum(scorer.score(ref, hyp)["rougeL"].fmeasure for ref, hyp in zip(references, hypotheses))
            / len(references),
            "exact_match": sum(h == r.strip() for h, r in zip(hypotheses, references)) / len(references),
            "generated_rows": len(references),
        })
    return metrics


class RewardScorer:
    """Score chats with a reward model: the chat template, right padding, the head's one logit."""

    def __init__(self, model_dir: str, *, max_length: int, batch_size: int):
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = adapters.pretrained(AutoModelForSequenceClassification, model_dir, num_labels=1)
        self.model = model.to(_device()).eval()
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.max_length = min(max_length, getattr(self.model.config, "max_position_embeddings", max_length))
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, chats: list[list[dict]]) -> list[float]:
        device = next(self.model.parameters()).device
        # Keep the end of a long chat: the reward is read at its last token.
        sequences = [self.tokenizer.apply_chat_template(c, tokenize=True, return_dict=False)[-self.max_length:]
                     for c in chats]
        scores = []
        for chunk in _batches(sequences, self.batch_size):
            ids, mask = _pad_right(chunk, self.tokenizer.pad_token_id, device)
            scores += self.model(input_ids=ids, attention_mask=mask).logits[:, 0].float().tolist()
        return scores


def evaluate_reward(model_dir: str, eval_path: str | None, config: dict) -> dict:
    if not eval_path:
        return {"eval_rows": 0}
    rows = stage_rows("reward", eval_path, limit=config["eval_max_rows"])
    if not rows:  # an empty held-out split, or eval_max_rows 0: nothing to score
        return {"eval_rows": 0}
    score = RewardScorer(model_dir, max_length=config["max_length"], batch_size=config["per_device_eval_batch_size"])
    chosen = score([r["prompt"] + r["chosen"] for r in rows])
    rejected = score([r["prompt"] + r["rejected"] for r in rows])
    pairs = list(zip(chosen, rejected))
    return {
        "eval_rows": len(rows),
        "reward_accuracy": sum(c > r for c, r in pairs) / len(pairs),
        "mean_margin": sum(c - r for c, r in pairs) / len(pairs),
    }


def _win_rate(ours: list[float], theirs: list[float]) -> float:
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(ours, theirs)) / len(ours)


def evaluate_policy(policy_dir: str, eval_path: str | None, config: dict, *, reference_dir: str,
                    reward_dir: str, previous_dir: str | None = None, seed: int = 0) -> dict:
    """Mean reward, KL against the reference, and optimistic win rates, on held-out prompts."""
    if not eval_path:
        return {"eval_rows": 0}
    rows = prompt_rows(eval_path, limit=config["eval_max_rows"])
    batch, length, temperature = config["per_device_eval_batch_size"], config["response_length"], config["temperature"]
    sampled = _settings(temperature=temperature, max_new_tokens=length, seed=seed)
    score = RewardScorer(reward_dir, max_length=config["max_length"], batch_size=batch)

    def replies_of(model_dir: str, *, with_kl: bool = False):
        loaded = _generation_model(model_dir)
        tokenizer, model = loaded.tokenizer, loaded.model
        room = model.config.max_position_embeddings - length
        prompts = [tokenizer.apply_chat_template(r["prompt"], tokenize=True, add_generation_prompt=True,
                                                 return_dict=False)[-room:] for r in rows]
        replies = generate_ids(loaded, prompts, settings=sampled, batch_size=batch)
        texts = [tokenizer.decode(r, skip_special_tokens=True) for r in replies]
        chats = [r["prompt"] + [{"role": "assistant", "content": t}] for r, t in zip(rows, texts)]
        kl = None
        if with_kl:
            # KL(policy || reference) on the policy's own samples, both at the sampling temperature,
            # as PPO's objective/kl measures it: sum over reply tokens of log p - log p_ref.
            reference = _generation_model(reference_dir).model
            sequences = [p + r for p, r in zip(prompts, replies)]
            masks = [[0] * len(p) + [1] * len(r) for p, r in zip(prompts, replies)]
            pad = tokenizer.pad_token_id
            ours = masked_nll(model, sequences, masks, pad_id=pad, batch_size=batch, temperature=temperature)
            theirs = masked_nll(reference, sequences, masks, pad_id=pad, batch_size=batch, temperature=temperature)
            kl = sum(t[0] - o[0] for o, t in zip(ours, theirs)) / len(rows)
            del reference
        del loaded, model
        return score(chats), kl, sum(len(r) for r in replies) / len(replies)

    rewards, kl, mean_length = replies_of(policy_dir, with_kl=True)
    metrics = {"eval_rows": len(rows), "mean_reward": sum(rewards) / len(rewards), "kl": kl,
               "mean_reply_tokens": mean_length}
    reference_rewards, _, _ = replies_of(reference_dir)
    metrics["mean_reward_sft"] = sum(reference_rewards) / len(reference_rewards)
    metrics["win_rate_vs_sft_optimistic"] = _win_rate(rewards, reference_rewards)
    if previous_dir:
        previous_rewards, _, _ = replies_of(previous_dir)
        metrics["mean_reward_previous"] = sum(previous_rewards) / len(previous_rewards)
        metrics["win_rate_vs_previous_optimistic"] = _win_rate(rewards, previous_rewards)
    return metrics
