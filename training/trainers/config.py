"""Stage configuration: a stage's settings under a preset, and the reasons to refuse a run before it starts.

Importable without torch, transformers or TRL: the web process validates a run with it before
anything is queued, and the training child runs the same checks again before it loads a model.
Each stage's settings (defaults, types, ranges), presets and own checks live in its registry entry
(`stages.py`); this module resolves and checks them.

    config = stage_config("ppo", "tiny", {"kl_coef": 0.1})
    problems = config_problems("ppo", config, train_rows=40, eval_rows=8,
                               model_dir="/store/sft-3", reward_model_dir="/store/rm-3")
"""

import json
from pathlib import Path

from pydantic import ValidationError

from .stages import AUTO, DPO_LOSS_TYPES, MIN_VOCAB, PRESET_COMMON, PRESET_NAMES, STAGES, dpo_loss_types, type_name

__all__ = ["AUTO", "DPO_LOSS_TYPES", "MIN_VOCAB", "PRESETS", "STAGES", "config_problems", "dpo_loss_types",
           "model_context", "stage_config", "tokenizer_facts"]
PRESETS = PRESET_NAMES


def stage_config(stage: str, preset: str, overrides: dict | None = None) -> dict:
    """Return the stage's defaults, overlaid with the preset's values and then `overrides`.

    Unknown override keys are kept, so that `config_problems` can name them.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    if preset not in PRESET_NAMES:
        raise ValueError(f"unknown preset {preset!r}; expected one of {', '.join(PRESET_NAMES)}")
    entry = STAGES[stage]
    return {**entry.defaults(), **PRESET_COMMON[preset], **entry.presets.get(preset, {}), **(overrides or {})}


def settings_problems(stage: str, config: dict) -> list[str]:
    """Check `config` against the stage's typed settings; name each setting that is wrong and why."""
    settings = STAGES[stage].settings
    try:
        settings.model_validate(config)
    except ValidationError as error:
        problems = {}
        for item in error.errors():
            key = str(item["loc"][0])
            value = config.get(key)
            if item["type"] == "extra_forbidden":
                problems[key] = f"unknown setting {key!r} for the {stage} stage"
            elif item["type"] == "greater_than":
                problems[key] = f"{key} must be greater than {item['ctx']['gt']:g}, not {value!r}"
            elif item["type"] == "greater_than_equal":
                problems[key] = f"{key} must not be negative, not {value!r}"
            elif item["type"] == "finite_number":
                problems[key] = f"{key} must be a finite number, not {value!r}"
            else:
                problems.setdefault(key, f"{key} must be {type_name(settings.model_fields[key].annotation)}, "
                                         f"not {value!r}")
        return list(problems.values())
    return []


def config_problems(stage: str, config: dict, *, train_rows: int, eval_rows: int = 0,
                    model_dir: str | None = None, reward_model_dir: str | None = None,
                    processes: int = 1, check_models: bool = True) -> list[str]:
    """Return human-readable reasons to refuse this run; empty when it may start.

    `check_models=False` checks the settings and rows only: for a round whose earlier stages
    have not built the models a later stage starts from yet.

    `model_dir` is the model the stage starts from (for "base", the directory to adopt, or None
    to build from scratch; for "dpo", the SFT model, its reference too); `reward_model_dir` the
    reward model of a stage that learns from one; `processes` how many training processes
    `accelerate launch` starts.
    """
    if stage not in STAGES:
        return [f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}"]
    entry = STAGES[stage]
    problems = settings_problems(stage, config)
    if problems:
        return problems
    c = {**entry.defaults(), **config}
    if c["max_steps"] == 0 or c["max_steps"] < -1:
        problems.append(f"max_steps must be -1 (run num_train_epochs) or greater than 0, not {c['max_steps']}")
    elif c["max_steps"] == -1 and c["num_train_epochs"] <= 0:
        problems.append("num_train_epochs must be greater than 0 when max_steps is -1")
    if processes < 1:
        problems.append(f"processes must be at least 1, not {processes}")
        return problems

    adopting = entry.starts_from is None and model_dir is not None
    if check_models and (entry.starts_from is not None or adopting):
        problems += _model_problems(stage, model_dir, c, adopting=adopting)
    if not adopting and train_rows < max(c["min_train_rows"], 1):
        problems.append(f"too few rows to train on: {train_rows} (at least {max(c['min_train_rows'], 1)} "
                        f"for the {stage} stage at this preset)")
    if entry.checks:
        problems += entry.checks(c, train_rows=train_rows, processes=processes, adopting=adopting)
    if check_models and entry.needs_reward_model:
        problems += _reward_model_problems(model_dir, reward_model_dir)
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
    starts_from = STAGES[stage].starts_from
    name = {None: "base model to adopt", "base": "base model", "sft": "SFT model"}.get(starts_from, f"{starts_from} model")
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
        if "response_length" not in c and c["max_length"] > context:
            problems.append(f"max_length ({c['max_length']}) is longer than the {name}'s context ({context})")
        if "response_length" in c and c["response_length"] >= context:
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
