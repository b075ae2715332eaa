"""What the RL stages share (PPO, RLOO, GRPO): the policy's tokenizer and the reward model they score with.

Apart from ppo.py so that RLOO and GRPO import nothing of trl.experimental.ppo, which TRL 1.13 removed.
"""

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from . import adapters
from .common import Job


def scored_model(path: str, *, pad_token_id: int, attn_implementation: str):
    """Load a reward-shaped model (whole, or an adapter merged into its base) and check it has what PPO reads:
    a backbone and a `.score` head."""
    model = adapters.pretrained(AutoModelForSequenceClassification, path, num_labels=1,
                                attn_implementation=attn_implementation)
    if not isinstance(getattr(model, "score", None), torch.nn.Module) or not hasattr(model, model.base_model_prefix):
        raise ValueError(f"{path}: {type(model).__name__} has no `.score` head; TRL's PPO reads rewards and values "
                         "through `.score`")
    model.config.pad_token_id = pad_token_id
    return model


def policy_tokenizer(job: Job):
    """Return the policy's tokenizer, left-padding prompts, with pad and EOS checked apart."""
    tokenizer = AutoTokenizer.from_pretrained(job.base_model, padding_side="left")
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise ValueError("the policy's pad token must exist and differ from its EOS token")
    return tokenizer
