"""Stage configuration: presets, defaults, and the reasons to refuse a run before it starts.

Importable without torch, transformers or TRL: the web process validates a run with it before
anything is queued, and the training child runs the same checks again before it loads a model.

    config = stage_config("ppo", "tiny", {"kl_coef": 0.1})
    problems = config_problems("ppo", config, train_rows=40, eval_rows=8,
                               model_dir="/store/sft-3", reward_model_dir="/store/rm-3")

Keys (every stage unless marked):
  learning_rate, num_train_epochs, max_steps (-1: run num_train_epochs), per_device_train_batch_size,
  per_device_eval_batch_size, gradient_accumulation_steps, max_length (tokens per training sequence),
  logging_steps, save_every (optimizer steps, or PPO updates, between checkpoints), save_total_limit,
  weight_decay, warmup_steps, lr_scheduler_type, optim ("auto": fused AdamW on CUDA), bf16, tf32 and
  torch_compile (true, false or "auto": on when CUDA is present), attn_implementation ("sdpa": PyTorch's
  fused attention, its flash kernel on a GPU), gradient_checkpointing, seed_offset,
  eval_max_rows (held-out rows evaluated at most), eval_max_new_tokens (sft),
  min_train_rows (fewer rows is refused as too few),
  step_delay_s (seconds to sleep after every step: 0 in every preset; tests and demos set it so that a
  run is still going when they cancel it).
  base: layers, heads, width, context, vocab_size (a model built from scratch; ignored when adopting),
  packing (true: the text is cut into full blocks of max_length tokens; false: one padded row per
  document, each starting at position 0, for corpora of short documents that must be read from
  their start).
  ppo: total_episodes (null: num_train_epochs x rows), num_ppo_epochs, num_mini_batches, kl_coef,
  response_length, temperature, local_rollout_forward_batch_size, missing_eos_penalty, cliprange,
  cliprange_value, vf_coef, gamma, lam, whiten_rewards, kl_estimator.
  rloo: num_generations, response_length, kl_coef, temperature, num_iterations.
  dpo: beta (the higher, the closer the policy stays to the SFT model, its reference), loss_type (one of
  DPO_LOSS_TYPES or a list of them, summed), loss_weights (null: 1 each; else one number per loss type),
  label_smoothing (the flip probability of robust, aot and aot_unpaired; EXO's epsilon, which exo_pair
  needs above 0), eval_max_new_tokens (reply length sampled for the held-out KL).
"""

import json
from pathlib import Path

STAGES = ("base", "sft", "reward", "ppo", "rloo", "dpo")
# The losses TRL 1.12's DPOTrainer accepts (trl/trainer/dpo_config.py, `loss_type`); a test compares them
# with the installed TRL, since this module may not import it.
DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")
AUTO = "auto"

_COMMON = {
    "learning_rate": 5e-5,
    "num_train_epochs": 1.0,
    "max_steps": -1,
    "per_device_train_batch_size": 8,
    "per_device_eval_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "max_length": 512,
    "logging_steps": 10,
    "save_every": 200,
    "save_total_limit": 2,
    "weight_decay": 0.0,
    "warmup_steps": 0,
    "lr_scheduler_type": "linear",
    "optim": AUTO,
    "bf16": AUTO,
    "tf32": AUTO,
    "torch_compile": False,
    "attn_implementation": "sdpa",
    "gradient_checkpointing": False,
    "seed_offset": 0,
    "eval_max_rows": 200,
    "min_train_rows": 8,
    "step_delay_s": 0.0,
}

DEFAULTS = {
    "base": {**_COMMON, "learning_rate": 5e-4, "layers": 6, "heads": 4, "width": 256, "context": 512, "packing": True,
             "vocab_size": 8192},
    "sft": {**_COMMON, "learning_rate": 2e-4, "num_train_epochs": 3.0, "eval_max_new_tokens": 64},
    "reward": {**_COMMON, "learning_rate": 5e-5},
    "ppo": {**_COMMON, "learning_rate": 3e-6, "total_episodes": None, "num_ppo_epochs": 4, "num_mini_batches": 1,
            "kl_coef": 0.05, "response_length": 53, "temperature": 0.7, "local_rollout_forward_batch_size": 64,
            "missing_eos_penalty": 1.0, "cliprange": 0.2, "cliprange_value": 0.2, "vf_coef": 0.1, "gamma": 1.0,
            "lam": 0.95, "whiten_rewards": False, "kl_estimator": "k1", "save_every": 20, "logging_steps": 1},
    "rloo": {**_COMMON, "learning_rate": 3e-6, "num_generations": 2, "response_length": 53, "kl_coef": 0.05,
             "temperature": 0.7, "num_iterations": 1, "save_every": 20, "logging_steps": 1},
    "dpo": {**_COMMON, "learning_rate": 5e-6, "beta": 0.1, "loss_type": "sigmoid", "loss_weights": None,
            "label_smoothing": 0.0, "eval_max_new_tokens": 32},
}

# Shapes: tiny is a model of about 0.1M parameters for tests on CPU; small about 7M, trainable on a CPU
# in minutes; gpu the GPT-2-small shape (about 88M with an 8k vocabulary) at batch sizes an H100 fills.
PRESETS = {
    "tiny": {
        "all": {"per_device_train_batch_size": 4, "per_device_eval_batch_size": 8, "max_length": 128,
                "logging_steps": 1, "save_every": 10, "eval_max_rows": 16, "min_train_rows": 4},
        "base": {"layers": 2, "heads": 2, "width": 64, "context": 256, "vocab_size": 512, "max_steps": 20,
                 "learning_rate": 3e-3},
        "sft": {"max_steps": 20, "learning_rate": 3e-3, "eval_max_new_tokens": 8},
        "reward": {"max_steps": 20, "learning_rate": 1e-3},
        "ppo": {"total_episodes": 32, "num_ppo_epochs": 1, "response_length": 8, "learning_rate": 1e-4,
                "local_rollout_forward_batch_size": 8, "save_every": 4},
        "rloo": {"max_steps": 8, "response_length": 8, "learning_rate": 1e-4, "save_every": 4},
        "dpo": {"max_steps": 8, "learning_rate": 1e-3, "save_every": 4, "eval_max_new_tokens": 8},
    },
    "small": {
        "all": {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 2, "max_length": 512,
                "logging_steps": 10, "eval_max_rows": 200, "min_train_rows": 32},
        "base": {"layers": 6, "heads": 4, "width": 256, "context": 512, "vocab_size": 8192, "num_train_epochs": 1.0},
        "sft": {"num_train_epochs": 3.0},
        "reward": {"num_train_epochs": 1.0},
        "ppo": {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 2, "num_mini_batches": 2,
                "response_length": 48, "logging_steps": 1},
        "rloo": {"per_device_train_batch_size": 8, "num_generations": 4, "response_length": 48, "logging_steps": 1},
        "dpo": {"learning_rate": 5e-5, "num_train_epochs": 1.0},
    },
    # The demo loop (manage.py demo_rounds): a model of about half a million parameters on the demo's short
    # arithmetic replies, sized so that a whole round runs in minutes on a 2-core CPU. The base model
    # reads each short pretraining document from position 0 (packing off): packed into blocks, where a
    # fact sits anywhere, a model this small with learned positions did not learn the sums at all.
    "demo": {
        "all": {"per_device_train_batch_size": 16, "per_device_eval_batch_size": 32, "max_length": 128,
                "logging_steps": 5, "save_every": 100, "eval_max_rows": 200, "min_train_rows": 16},
        "base": {"layers": 2, "heads": 4, "width": 128, "context": 128, "vocab_size": 1024, "learning_rate": 2e-3,
                 "num_train_epochs": 6.0, "warmup_steps": 20, "packing": False, "per_device_train_batch_size": 64,
                 "max_length": 64},
        "sft": {"learning_rate": 1e-3, "num_train_epochs": 10.0, "eval_max_new_tokens": 12},
        "reward": {"learning_rate": 5e-4, "num_train_epochs": 2.0},
        "ppo": {"per_device_train_batch_size": 16, "num_mini_batches": 2, "total_episodes": 1024, "num_ppo_epochs": 4,
                "response_length": 10, "learning_rate": 6e-5, "kl_coef": 0.2, "temperature": 1.0,
                "local_rollout_forward_batch_size": 32,
                "save_every": 8, "logging_steps": 1},
        "rloo": {"per_device_train_batch_size": 16, "num_generations": 4, "response_length": 10,
                 "learning_rate": 1e-4, "max_steps": 32, "save_every": 8, "logging_steps": 1},
        "dpo": {"learning_rate": 1e-4, "num_train_epochs": 2.0, "eval_max_new_tokens": 12},
    },
    "gpu": {
        "all": {"per_device_train_batch_size": 64, "per_device_eval_batch_size": 64, "max_length": 1024,
                "logging_steps": 10, "save_every": 500, "eval_max_rows": 500, "min_train_rows": 64,
                "bf16": AUTO, "tf32": AUTO, "optim": AUTO, "torch_compile": AUTO, "attn_implementation": "sdpa"},
        "base": {"layers": 12, "heads": 12, "width": 768, "context": 1024, "vocab_size": 8192,
                 "learning_rate": 6e-4, "warmup_steps": 100},
        "sft": {"num_train_epochs": 3.0, "eval_max_new_tokens": 128},
        "reward": {"per_device_train_batch_size": 32, "num_train_epochs": 1.0},
        "ppo": {"per_device_train_batch_size": 16, "gradient_accumulation_steps": 4, "num_mini_batches": 1,
                "response_length": 128, "local_rollout_forward_batch_size": 64, "torch_compile": False,
                "save_every": 20},
        "rloo": {"per_device_train_batch_size": 16, "gradient_accumulation_steps": 4, "num_generations": 4,
                 "response_length": 128, "torch_compile": False, "save_every": 50},
        # A pair is two sequences, and a frozen reference runs beside the policy. Not compiled, as PPO and
        # RLOO: not yet measured on a GPU.
        "dpo": {"per_device_train_batch_size": 32, "num_train_epochs": 1.0, "eval_max_new_tokens": 128,
                "torch_compile": False},
    },
}

_INT, _FLOAT, _BOOL, _STR, _NONE = (int,), (int, float), (bool,), (str,), (type(None),)
_AUTO_BOOL = ("auto-bool",)
_STR_OR_LIST, _LIST = (str, list), (list,)
TYPES = {
    "learning_rate": _FLOAT, "num_train_epochs": _FLOAT, "max_steps": _INT, "per_device_train_batch_size": _INT,
    "per_device_eval_batch_size": _INT, "gradient_accumulation_steps": _INT, "max_length": _INT,
    "logging_steps": _INT, "save_every": _INT, "save_total_limit": _INT, "weight_decay": _FLOAT,
    "warmup_steps": _INT, "lr_scheduler_type": _STR, "optim": _STR, "bf16": _AUTO_BOOL, "tf32": _AUTO_BOOL,
    "torch_compile": _AUTO_BOOL, "attn_implementation": _STR, "gradient_checkpointing": _BOOL, "seed_offset": _INT,
    "eval_max_rows": _INT, "eval_max_new_tokens": _INT, "min_train_rows": _INT, "step_delay_s": _FLOAT,
    "layers": _INT, "heads": _INT, "width": _INT, "context": _INT, "vocab_size": _INT, "packing": _BOOL,
    "total_episodes": _INT + _NONE, "num_ppo_epochs": _INT, "num_mini_batches": _INT, "kl_coef": _FLOAT,
    "response_length": _INT, "temperature": _FLOAT, "local_rollout_forward_batch_size": _INT,
    "missing_eos_penalty": _FLOAT + _NONE, "cliprange": _FLOAT, "cliprange_value": _FLOAT, "vf_coef": _FLOAT,
    "gamma": _FLOAT, "lam": _FLOAT, "whiten_rewards": _BOOL, "kl_estimator": _STR,
    "num_generations": _INT, "num_iterations": _INT,
    "beta": _FLOAT, "loss_type": _STR_OR_LIST, "loss_weights": _LIST + _NONE, "label_smoothing": _FLOAT,
}
_POSITIVE = {
    "per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps", "max_length",
    "logging_steps", "save_every", "save_total_limit", "eval_max_new_tokens", "layers", "heads", "width", "context",
    "vocab_size", "total_episodes", "num_ppo_epochs", "num_mini_batches", "response_length",
    "local_rollout_forward_batch_size", "num_generations", "num_iterations", "learning_rate", "temperature", "beta",
}
_NON_NEGATIVE = {"eval_max_rows", "min_train_rows", "step_delay_s", "weight_decay", "warmup_steps", "kl_coef",
                 "seed_offset", "num_train_epochs", "label_smoothing"}
# 256 byte symbols and the five chat special tokens of scratch.tokenizer_train.
MIN_VOCAB = 261


def stage_config(stage: str, preset: str, overrides: dict | None = None) -> dict:
    """Return the stage's defaults, overlaid with the preset's values and then `overrides`.

    Unknown override keys are kept, so that `config_problems` can name them.
    """
    if stage not in DEFAULTS:
        raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
    return {**DEFAULTS[stage], **PRESETS[preset]["all"], **PRESETS[preset].get(stage, {}), **(overrides or {})}


def _type_ok(value, expected) -> bool:
    if expected is _AUTO_BOOL:
        return isinstance(value, bool) or value == AUTO
    if isinstance(value, bool):  # bool is an int: accept it only where a bool is meant
        return bool in expected
    return isinstance(value, expected)


def _type_name(expected) -> str:
    if expected is _AUTO_BOOL:
        return 'true, false or "auto"'
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list",
             type(None): "null"}
    return " or ".join(dict.fromkeys(names[t] for t in expected if not (t is int and float in expected)))


def config_problems(stage: str, config: dict, *, train_rows: int, eval_rows: int = 0,
                    model_dir: str | None = None, reward_model_dir: str | None = None,
                    processes: int = 1, check_models: bool = True) -> list[str]:
    """Return human-readable reasons to refuse this run; empty when it may start.

    `check_models=False` checks the settings and rows only: for a round whose earlier stages
    have not built the models a later stage starts from yet.

    `model_dir` is the model the stage starts from (for "base", the directory to adopt, or None
    to build from scratch; for "dpo", the SFT model, its reference too); `reward_model_dir` the
    reward model of a PPO or RLOO stage;
    `processes` how many training processes `accelerate launch` starts.
    """
    if stage not in DEFAULTS:
        return [f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}"]
    problems = []
    known = DEFAULTS[stage]
    for key, value in config.items():
        if key not in known:
            problems.append(f"unknown setting {key!r} for the {stage} stage")
        elif not _type_ok(value, TYPES[key]):
            problems.append(f"{key} must be {_type_name(TYPES[key])}, not {value!r}")
        elif key in _POSITIVE and value is not None and value <= 0:
            problems.append(f"{key} must be greater than 0, not {value!r}")
        elif key in _NON_NEGATIVE and value < 0:
            problems.append(f"{key} must not be negative, not {value!r}")
    if problems:
        return problems
    c = {**known, **config}
    if c["max_steps"] == 0 or c["max_steps"] < -1:
        problems.append(f"max_steps must be -1 (run num_train_epochs) or greater than 0, not {c['max_steps']}")
    elif c["max_steps"] == -1 and c["num_train_epochs"] <= 0:
        problems.append("num_train_epochs must be greater than 0 when max_steps is -1")
    if processes < 1:
        problems.append(f"processes must be at least 1, not {processes}")
        return problems

    adopting = stage == "base" and model_dir is not None
    if check_models and (stage != "base" or adopting):
        problems += _model_problems(stage, model_dir, c, adopting=adopting)
    if stage == "base" and not adopting:
        if c["vocab_size"] < MIN_VOCAB:
            problems.append(f"vocab_size must be at least {MIN_VOCAB} (256 byte symbols and 5 chat tokens), "
                            f"not {c['vocab_size']}")
        if c["width"] % c["heads"]:
            problems.append(f"width ({c['width']}) must divide by heads ({c['heads']})")
        if c["max_length"] > c["context"]:
            problems.append(f"max_length ({c['max_length']}) is longer than the model's context ({c['context']})")

    if not adopting and train_rows < max(c["min_train_rows"], 1):
        problems.append(f"too few rows to train on: {train_rows} (at least {max(c['min_train_rows'], 1)} "
                        f"for the {stage} stage at this preset)")
    local_batch = c["per_device_train_batch_size"] * c["gradient_accumulation_steps"]
    global_batch = local_batch * processes
    if stage == "ppo":
        nmb = c["num_mini_batches"]
        if global_batch % nmb or local_batch % nmb:
            problems.append(
                f"batch ({c['per_device_train_batch_size']} per device x {c['gradient_accumulation_steps']} "
                f"accumulation x {processes} processes = {global_batch}) does not divide by num_mini_batches ({nmb})")
        elif c["whiten_rewards"] and local_batch // nmb < 8:
            problems.append("whiten_rewards needs at least 8 rows per mini-batch and process, "
                            f"not {local_batch // nmb}")
        if train_rows < global_batch:
            problems.append(f"dataset smaller than one batch: {train_rows} prompts for a batch of {global_batch} "
                            "(TRL's PPO would wait forever for a full batch)")
        if c["kl_estimator"] not in ("k1", "k3"):
            problems.append(f"kl_estimator must be 'k1' or 'k3', not {c['kl_estimator']!r}")
    if stage == "rloo":
        generations = c["num_generations"]
        if generations < 2:
            problems.append(f"num_generations must be at least 2 (RLOO's baseline leaves one out), not {generations}")
        elif global_batch % generations:
            problems.append(f"batch ({global_batch}) does not divide by num_generations ({generations})")
        elif train_rows < global_batch // generations:
            problems.append(f"dataset smaller than one batch: {train_rows} prompts for a batch of "
                            f"{global_batch // generations} prompts x {generations} generations")
    if stage == "dpo":
        problems += _dpo_problems(c)
        if train_rows < global_batch:
            problems.append(f"dataset smaller than one batch: {train_rows} pairs for a batch of {global_batch} "
                            f"({c['per_device_train_batch_size']} per device x {c['gradient_accumulation_steps']} "
                            f"accumulation x {processes} processes)")
    if check_models and stage in ("ppo", "rloo"):
        problems += _reward_model_problems(model_dir, reward_model_dir)
    return problems


def dpo_loss_types(value) -> list[str]:
    """Return loss_type as the list TRL's DPOConfig makes of it (a string is one loss)."""
    return [value] if isinstance(value, str) else list(value)


def _dpo_problems(c: dict) -> list[str]:
    """Refuse before anything loads what TRL's DPO would refuse late: an unknown loss only at the first
    training step, loss weights of the wrong length when DPOConfig is built, exo_pair without smoothing
    once both models are loaded."""
    losses = dpo_loss_types(c["loss_type"])
    if not losses or not all(isinstance(loss, str) for loss in losses):
        return [f"loss_type must be a loss name or a non-empty list of them, not {c['loss_type']!r}"]
    problems = []
    unknown = [loss for loss in losses if loss not in DPO_LOSS_TYPES]
    if unknown:
        problems.append(f"unknown loss_type {', '.join(map(repr, unknown))}: TRL's DPO accepts "
                        f"{', '.join(DPO_LOSS_TYPES)}")
    weights = c["loss_weights"]
    if weights is not None:
        if not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights):
            problems.append(f"loss_weights must be numbers of at least 0, not {weights!r}")
        elif len(weights) != len(losses):
            problems.append(f"loss_weights has {len(weights)} weight{'s' if len(weights) != 1 else ''} for "
                            f"{len(losses)} loss type{'s' if len(losses) != 1 else ''} ({', '.join(losses)}): "
                            "give one weight per loss type, or none for 1 each")
    if c["label_smoothing"] >= 0.5:
        problems.append(f"label_smoothing must be below 0.5 (the chance a preference was flipped), "
                        f"not {c['label_smoothing']}")
    elif "exo_pair" in losses and c["label_smoothing"] == 0:
        problems.append("the exo_pair loss needs label_smoothing above 0 (the EXO paper suggests 1e-3)")
    return problems


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _token(value) -> str | None:
    """A special token as tokenizer files write it: a string, or an AddedToken dict."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def tokenizer_facts(model_dir: str) -> dict:
    """Read a model directory's tokenizer facts from its JSON files: pad, eos, chat template, vocab."""
    folder = Path(model_dir)
    tok_config = _json(folder / "tokenizer_config.json")
    special = _json(folder / "special_tokens_map.json")
    tok_json = _json(folder / "tokenizer.json")
    template = tok_config.get("chat_template")
    if (folder / "chat_template.jinja").exists():
        template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    if isinstance(template, list):  # several named templates: the default one is what chats use
        template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    model = tok_json.get("model") or {}
    vocab = model.get("vocab") if isinstance(model.get("vocab"), dict) else None
    if vocab is None and (folder / "vocab.json").exists():
        vocab = _json(folder / "vocab.json")
    if vocab is not None:
        vocab = {**vocab, **{t["content"]: t["id"] for t in tok_json.get("added_tokens", [])}}
    return {
        "pad": _token(tok_config.get("pad_token")) or _token(special.get("pad_token")),
        "eos": _token(tok_config.get("eos_token")) or _token(special.get("eos_token")),
        "chat_template": template,
        "vocab": vocab,
    }


def model_context(model_dir: str) -> int | None:
    config = _json(Path(model_dir) / "config.json")
    config = config.get("text_config", config)
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        if isinstance(config.get(key), int):
            return config[key]
    return None


def _model_problems(stage: str, model_dir: str | None, c: dict, *, adopting: bool) -> list[str]:
    name = {"base": "base model to adopt", "sft": "base model", "reward": "SFT model", "ppo": "SFT model",
            "rloo": "SFT model", "dpo": "SFT model"}[stage]
    if not model_dir:
        return [f"the {stage} stage needs a {name} directory"]
    if not (Path(model_dir) / "config.json").exists():
        return [f"the {name} directory {model_dir} holds no model (no config.json)"]
    facts = tokenizer_facts(model_dir)
    problems = []
    if not facts["eos"] and not adopting:
        problems.append(f"the {name}'s tokenizer has no EOS token")
    # Adopting a model repairs a missing or shared pad token (it adds one); later stages must not meet it.
    if not adopting:
        if not facts["pad"]:
            problems.append(f"the {name}'s tokenizer has no pad token")
        elif facts["pad"] == facts["eos"]:
            problems.append(f"pad token equals EOS ({facts['eos']!r}) in the {name}'s tokenizer: TRL's PPO cuts "
                            "replies at EOS and finds their ends by the pad token, so the two must differ")
        template = facts["chat_template"]
        if not template:
            problems.append(f"the {name}'s tokenizer has no chat template")
        elif stage == "sft" and "generation" not in template:
            problems.append(f"the {name}'s chat template has no {{% generation %}} markers, so the loss cannot be "
                            "limited to assistant tokens")
    context = model_context(model_dir)
    if context is not None:
        if stage in ("sft", "reward", "dpo") and c["max_length"] > context:
            problems.append(f"max_length ({c['max_length']}) is longer than the {name}'s context ({context})")
        if stage in ("ppo", "rloo") and c["response_length"] >= context:
            problems.append(f"response_length ({c['response_length']}) leaves no room for a prompt in the "
                            f"{name}'s context ({context})")
    return problems


def _reward_model_problems(model_dir: str | None, reward_model_dir: str | None) -> list[str]:
    if not reward_model_dir:
        return ["the RL stage needs a reward model directory"]
    config = _json(Path(reward_model_dir) / "config.json")
    if not config:
        return [f"the reward model directory {reward_model_dir} holds no model (no config.json)"]
    problems = []
    architectures = config.get("architectures") or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        problems.append(f"the reward model is a {', '.join(architectures) or 'model of unknown kind'}, "
                        "not a sequence classifier with a score head")
    labels = config.get("num_labels", len(config.get("id2label") or {}) or None)
    if labels not in (None, 1):
        problems.append(f"the reward model has {labels} labels; a reward model has 1")
    if model_dir and (Path(model_dir) / "config.json").exists():
        policy, reward = tokenizer_facts(model_dir), tokenizer_facts(reward_model_dir)
        if policy["vocab"] is None or reward["vocab"] is None:
            problems.append("cannot compare the reward model's tokenizer with the policy's (no tokenizer.json)")
        elif policy["vocab"] != reward["vocab"] or policy["pad"] != reward["pad"] or policy["eos"] != reward["eos"]:
            problems.append("the reward model's tokenizer differs from the policy's: PPO hands the reward model "
                            "the policy's token ids, so both must share one tokenizer")
    return problems
