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
import re
from pathlib import Path

from pydantic import ValidationError

from .stages import AUTO, DPO_LOSS_TYPES, MIN_VOCAB, PRESET_COMMON, PRESET_NAMES, STAGES, dpo_loss_types, type_name

__all__ = ["AUTO", "DPO_LOSS_TYPES", "MIN_VOCAB", "PRESETS", "STAGES", "adoption_problems", "config_problems",
           "context_problems", "dpo_loss_types", "has_generation_markers", "model_context", "stage_config",
           "tokenizer_facts"]
PRESETS = PRESET_NAMES
# A {% generation %} block's opening tag, with Jinja's whitespace control ({%- generation -%}), as TRL's
# has_generation_markers reads it: a substring test for "generation" also matches `add_generation_prompt`,
# which nearly every chat template has.
GENERATION_MARKER = re.compile(r"\{%-?\s*generation\s*-?%\}")


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
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


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
    template = _chat_template(folder, tok_config)
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


def _chat_template(folder: Path, tok_config: dict) -> str | None:
    template = tok_config.get("chat_template")
    if (folder / "chat_template.jinja").exists():
        template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    if isinstance(template, list):  # several named templates: the default one is what chats use
        template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    return template


def has_generation_markers(template: str | None) -> bool:
    """Whether a chat template marks assistant turns with {% generation %} blocks (TRL's assistant_only_loss)."""
    return bool(template) and GENERATION_MARKER.search(template) is not None


def model_context(model_dir: str) -> int | None:
    config = _json(Path(model_dir) / "config.json")
    config = config.get("text_config", config)
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        if isinstance(config.get(key), int):
            return config[key]
    return None


# ---------------------------------------------------------------------------------------------
# Adopting a directory as the base: what it must be, read from its JSON files and file names only
# (the web process checks it when a round is created; the base stage's child again before loading it)

# Class names AutoModelForCausalLM loads: Llama/Qwen/Mistral/SmolLM are ...ForCausalLM; GPT-2's own is GPT2LMHeadModel.
CAUSAL_LM_SUFFIXES = ("ForCausalLM", "LMHeadModel")
# A tokenizer transformers can build without running code: a fast tokenizer.json, a sentencepiece
# model, or byte-level BPE / WordPiece vocabulary files.
TOKENIZER_FILES = (("tokenizer.json",), ("tokenizer.model",), ("vocab.json", "merges.txt"), ("vocab.txt",))
PICKLED_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt")


def adoption_problems(model_dir: str) -> list[str]:
    """Return the reasons to refuse adopting `model_dir` as a base model; empty when it may be adopted.

    The model's context against each stage's rows is `context_problems`.
    """
    folder = Path(model_dir)
    config = _json(folder / "config.json")
    if not config:
        return [f"{model_dir} holds no model (no readable config.json)"]
    return [*causal_lm_problems(config), *remote_code_problems(folder), *weights_problems(folder),
            *tokenizer_files_problems(folder), *chat_template_problems(folder)]


def causal_lm_problems(config: dict) -> list[str]:
    """Refuse a model that is not a causal language model, by the architectures its config.json names."""
    architectures = [a for a in config.get("architectures") or [] if isinstance(a, str)]
    if not architectures:
        return ["its config.json names no architecture, so nothing says it is a causal language model"]
    if not any(a.endswith(CAUSAL_LM_SUFFIXES) for a in architectures):
        return [f"it is a {', '.join(architectures)}, not a causal language model (a ...ForCausalLM)"]
    return []


def remote_code_problems(folder: Path) -> list[str]:
    """Refuse a model that would run its own Python code to load: a directory an admin names must never run code."""
    problems = []
    for name in ("config.json", "tokenizer_config.json"):
        found = _json(folder / name)
        for part in (found, found.get("text_config") if isinstance(found.get("text_config"), dict) else {}):
            keys = [k for k in ("auto_map", "trust_remote_code") if part.get(k)]
            if keys:
                problems.append(f"its {name} asks for {' and '.join(keys)}: a base model must load without running "
                                "code of its own")
                break
    return problems


def weights_problems(folder: Path) -> list[str]:
    """Refuse weights that are not safetensors: a pickled .bin or .pt file runs code when it is loaded."""
    for index in sorted(folder.glob("*.safetensors.index.json")):
        weight_map = _json(index).get("weight_map")
        shards = set(map(str, weight_map.values())) if isinstance(weight_map, dict) else set()
        # A shard is a file of this directory: an index must not reach outside it (../, absolute paths).
        strays = sorted(s for s in shards if Path(s).name != s or s.startswith(".") or not s.endswith(".safetensors"))
        if strays or not shards:
            return [f"its {index.name} names shards that are not .safetensors files of the directory: "
                    f"{', '.join(strays) or 'none'}"]
        missing = sorted(s for s in shards if not (folder / s).is_file())
        if missing:
            return [f"its {index.name} names shards that are missing: {', '.join(missing)}"]
        return []
    if any(folder.glob("*.safetensors")):
        return []
    pickled = sorted(p.name for pattern in PICKLED_WEIGHTS for p in folder.glob(pattern))
    if pickled:
        return [f"its weights are only pickled files ({', '.join(pickled)}), which run code when loaded: "
                "convert them to safetensors"]
    return ["it has no weights (no *.safetensors file)"]


def tokenizer_files_problems(folder: Path) -> list[str]:
    """Refuse a model whose tokenizer cannot be built from its files."""
    if any(all((folder / name).is_file() for name in files) for files in TOKENIZER_FILES):
        return []
    return ["its tokenizer files are missing (no tokenizer.json, tokenizer.model, or vocab.json with merges.txt, "
            "or vocab.txt)"]


def chat_template_problems(folder: Path) -> list[str]:
    """Refuse a model with no chat template: the chat format it was trained on would be a guess.

    An admin gives one by writing it into the directory (chat_template.jinja), as transformers saves it.
    """
    if _chat_template(folder, _json(folder / "tokenizer_config.json")):
        return []
    return ["it has no chat template (none in tokenizer_config.json or chat_template.jinja): give it the one "
            "the model was trained with, as chat_template.jinja"]


def context_problems(model_dir: str, c: dict, *, name: str) -> list[str]:
    """Refuse a stage whose longest row (`max_length`, or a PPO/RLOO reply) does not fit the model's context."""
    context = model_context(model_dir)
    if context is None:
        return []
    if "response_length" in c:
        if c["response_length"] >= context:
            return [f"response_length ({c['response_length']}) leaves no room for a prompt in the {name}'s "
                    f"context ({context})"]
    elif c["max_length"] > context:
        return [f"max_length ({c['max_length']}) is longer than the {name}'s context ({context})"]
    return []


def _model_problems(stage: str, model_dir: str | None, c: dict, *, adopting: bool) -> list[str]:
    starts_from = STAGES[stage].starts_from
    name = {None: "base model to adopt", "base": "base model", "sft": "SFT model"}.get(starts_from, f"{starts_from} model")
    if not model_dir:
        return [f"the {stage} stage needs a {name} directory"]
    if adopting:
        # The same checks the round had when it was created: the directory may have changed since.
        problems = [f"the {name}: {p}" for p in adoption_problems(model_dir)]
        return problems + context_problems(model_dir, c, name=name)
    if not (Path(model_dir) / "config.json").exists():
        return [f"the {name} directory {model_dir} holds no model (no config.json)"]
    facts = tokenizer_facts(model_dir)
    problems = []
    if not facts["eos"]:
        problems.append(f"the {name}'s tokenizer has no EOS token")
    # Adopting a model repairs a missing or shared pad token (it adds one); later stages must not meet it.
    if not facts["pad"]:
        problems.append(f"the {name}'s tokenizer has no pad token")
    elif facts["pad"] == facts["eos"]:
        problems.append(f"pad token equals EOS ({facts['eos']!r}) in the {name}'s tokenizer: TRL's PPO cuts "
                        "replies at EOS and finds their ends by the pad token, so the two must differ")
    # A template without {% generation %} markers is no reason to refuse SFT: it trains on each chat's last reply
    # as a completion of the turns before it (sft.py), which masks the prompt without markers.
    if not facts["chat_template"]:
        problems.append(f"the {name}'s tokenizer has no chat template")
    return problems + context_problems(model_dir, c, name=name)


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
