"""The training stages and the recipes built from them: one registry that names each stage with
everything it needs.

A stage is one `Stage` entry: its name and label, the dataset kind it reads, the model it starts
from, what it registers, its typed settings (a pydantic model: defaults, types and ranges), its
presets, its own checks, the module whose `train(job)` trains it, and how its model is evaluated.
A recipe is the stages a round runs after the base model. The job layer, the pages, the API
schema, `manage.py train --help` and the README's table all read these two tables, so a new stage
is one module and one `stage_register` call (tests/training/test_stages.py registers one).

Importable without torch, transformers or TRL: the web process checks a round with it before
anything is queued, and the training child checks again before it loads a model.

PPO is registered only where `trl.experimental.ppo` exists (TRL 1.12; removed in 1.13): with a TRL
without it the platform still installs, starts and trains every other recipe, and the ppo recipe
is refused with `unavailable_reason`.
"""

import importlib.util
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WrapValidator
from pydantic_core import PydanticCustomError

AUTO = "auto"
PRESET_NAMES = ("tiny", "small", "demo", "gpu")
# The columns a stage keeps of each dataset kind's rows (provenance and the rest are left out).
COLUMNS = {
    "pretraining": ("text",),
    "sft": ("messages",),
    "preference": ("prompt", "chosen", "rejected"),
    "unpaired": ("prompt", "completion", "label"),
    "prompts": ("prompt",),
    "flags": ("text", "label"),
}

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveNumber = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeNumber = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Number = Annotated[float, Field(allow_inf_nan=False)]
AutoBool = bool | Literal["auto"]  # "auto": on when CUDA is present

# The rule the `adapter` setting's "auto" follows: a stage that starts from a model of this many parameters or
# more trains the LoRA adapter below (r 16 on every linear layer), a smaller one all its weights. Every preset's
# model built from scratch is under it but the gpu preset's (about 88M); an adopted SmolLM2-135M is over it.
LORA_FROM_PARAMETERS = 50_000_000


class Adapter(BaseModel):
    """A LoRA adapter (peft's LoraConfig) a stage trains instead of all the model's weights."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    type: Literal["lora"]
    r: PositiveInt = 16  # the rank of each update
    alpha: PositiveNumber = 32.0  # the update is scaled by alpha / r
    dropout: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] = 0.05
    target_modules: str | list[str] = "all-linear"  # peft's name for every linear layer but the output one


ADAPTER_AUTO = {"type": "lora"}  # what "auto" trains on a model of LORA_FROM_PARAMETERS or more: the defaults above
AdapterChoice = Adapter | Literal["auto"] | None  # null: all weights


def _adapter_as_one_error(value, handler):
    # One error for the whole setting: pydantic's own would name a nested field ("r") under the setting's
    # name, and the refusal would read "adapter must be greater than 0".
    try:
        return handler(value)
    except ValidationError:
        raise PydanticCustomError("adapter", "not an adapter") from None


class Settings(BaseModel):
    """What every stage takes. Strict: a string is not a number and true is not 1."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    learning_rate: PositiveNumber = 5e-5
    num_train_epochs: NonNegativeNumber = 1.0
    max_steps: int = -1  # -1: run num_train_epochs
    per_device_train_batch_size: PositiveInt = 8
    per_device_eval_batch_size: PositiveInt = 8
    gradient_accumulation_steps: PositiveInt = 1
    max_length: PositiveInt = 512  # tokens per training sequence
    logging_steps: PositiveInt = 10
    save_every: PositiveInt = 200  # optimizer steps (PPO: updates) between checkpoints
    save_total_limit: PositiveInt = 2
    weight_decay: NonNegativeNumber = 0.0
    warmup_steps: NonNegativeInt = 0
    lr_scheduler_type: str = "linear"
    optim: str = AUTO  # "auto": fused AdamW on CUDA
    bf16: AutoBool = AUTO
    tf32: AutoBool = AUTO
    torch_compile: AutoBool = False
    attn_implementation: str = "sdpa"  # PyTorch's fused attention, its flash kernel on a GPU
    gradient_checkpointing: bool = False
    seed_offset: NonNegativeInt = 0
    eval_max_rows: NonNegativeInt = 200  # held-out rows evaluated at most
    min_train_rows: NonNegativeInt = 8  # fewer rows is refused as too few
    # Seconds to sleep after every step: 0 in every preset; tests and demos set it so that a run is
    # still going when they cancel it.
    step_delay_s: NonNegativeNumber = 0.0
    # {"type": "lora", "r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}: train a LoRA
    # adapter (registered as the adapter plus its base, with a merged copy); null: all weights; "auto": the rule
    # of LORA_FROM_PARAMETERS, by the size of the model the stage starts from.
    adapter: Annotated[AdapterChoice, WrapValidator(_adapter_as_one_error)] = "auto"


class BaseSettings(Settings):
    learning_rate: PositiveNumber = 5e-4
    adapter: None = None  # the base stage trains every weight of a model built from scratch, and none of one adopted
    # The shape of a model built from scratch (ignored when adopting one).
    layers: PositiveInt = 6
    heads: PositiveInt = 4
    width: PositiveInt = 256
    context: PositiveInt = 512
    vocab_size: PositiveInt = 8192
    # True: the text is cut into full blocks of max_length tokens; false: one padded row per document,
    # each from position 0, for corpora of short documents that must be read from their start.
    packing: bool = True


class SFTSettings(Settings):
    learning_rate: PositiveNumber = 2e-4
    num_train_epochs: NonNegativeNumber = 3.0
    eval_max_new_tokens: PositiveInt = 64


class RewardSettings(Settings):
    pass


class PPOSettings(Settings):
    learning_rate: PositiveNumber = 3e-6
    total_episodes: PositiveInt | None = None  # null: num_train_epochs x rows
    num_ppo_epochs: PositiveInt = 4
    num_mini_batches: PositiveInt = 1
    kl_coef: NonNegativeNumber = 0.05
    response_length: PositiveInt = 53
    temperature: PositiveNumber = 0.7
    local_rollout_forward_batch_size: PositiveInt = 64
    missing_eos_penalty: Number | None = 1.0
    cliprange: Number = 0.2
    cliprange_value: Number = 0.2
    vf_coef: Number = 0.1
    gamma: Number = 1.0
    lam: Number = 0.95
    whiten_rewards: bool = False
    kl_estimator: str = "k1"
    save_every: PositiveInt = 20
    logging_steps: PositiveInt = 1


class RLOOSettings(Settings):
    learning_rate: PositiveNumber = 3e-6
    num_generations: PositiveInt = 2
    response_length: PositiveInt = 53
    kl_coef: NonNegativeNumber = 0.05
    temperature: PositiveNumber = 0.7
    num_iterations: PositiveInt = 1
    save_every: PositiveInt = 20
    logging_steps: PositiveInt = 1


# The losses TRL 1.12's DPOTrainer accepts (trl/trainer/dpo_config.py, `loss_type`); a test compares them
# with the installed TRL, since this module may not import it.
DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")


class DPOSettings(Settings):
    learning_rate: PositiveNumber = 5e-6
    beta: PositiveNumber = 0.1  # the higher, the closer the policy stays to the SFT model, its reference
    loss_type: str | list = "sigmoid"  # one of DPO_LOSS_TYPES or a list of them, summed
    loss_weights: list | None = None  # null: 1 each; else one number per loss type
    # The flip probability of robust, aot and aot_unpaired; EXO's epsilon, which exo_pair needs above 0.
    label_smoothing: NonNegativeNumber = 0.0
    eval_max_new_tokens: PositiveInt = 32  # reply length sampled for the held-out KL


# The losses TRL 1.12's GRPOTrainer computes at token-level importance sampling (trl/trainer/grpo_config.py,
# `loss_type`): an unknown one fails only at the first training step. Its "luspo" is left out: it needs
# importance_sampling_level "sequence", which this stage does not set, and TRL refuses it after loading the models.
GRPO_LOSS_TYPES = ("dapo", "grpo", "dr_grpo", "bnpo", "cispo", "sapo", "vespo")
GRPO_SCALE_REWARDS = ("group", "batch", "none")


class GRPOSettings(Settings):
    learning_rate: PositiveNumber = 3e-6
    num_generations: PositiveInt = 2  # replies sampled per prompt; the group each one's advantage is taken within
    response_length: PositiveInt = 53  # tokens per sampled reply (TRL's max_completion_length)
    kl_coef: NonNegativeNumber = 0.05  # TRL's beta; 0 loads no reference model
    temperature: PositiveNumber = 0.7
    num_iterations: PositiveInt = 1
    epsilon: PositiveNumber = 0.2  # the clip range of the policy ratio
    loss_type: str = "dapo"  # one of GRPO_LOSS_TYPES
    scale_rewards: str = "group"  # one of GRPO_SCALE_REWARDS
    # Verifiable reward functions by name, scored beside the reward model: the names an installation offers in
    # its REWARD_FUNCTIONS setting (checked when the round is created); the job layer hands the child their paths.
    reward_functions: list[str] = []
    reward_weights: list[Number] | None = None  # null: 1 each; else the reward model's, then one per function
    save_every: PositiveInt = 20
    logging_steps: PositiveInt = 1


class ORPOSettings(Settings):
    learning_rate: PositiveNumber = 8e-6
    # ORPO's lambda: the weight of the odds-ratio term beside the chosen reply's NLL (TRL calls it beta).
    beta: PositiveNumber = 0.1


# The losses TRL 1.12's KTOTrainer accepts (trl/trainer/kto_config.py, `loss_type`); all but apo_zero_unpaired
# estimate a KL term from the other replies of the batch.
KTO_LOSS_TYPES = ("kto", "apo_zero_unpaired")


class KTOSettings(Settings):
    learning_rate: PositiveNumber = 5e-6
    beta: PositiveNumber = 0.1  # the higher, the closer the policy stays to the SFT model, its reference
    # Weights of the losses of desirable and undesirable rows, to counter unequal numbers of each: the KTO paper's
    # advice (which TRL repeats as a warning) is desirable_weight x desirable rows / (undesirable_weight x
    # undesirable rows) between 1 and 4/3.
    desirable_weight: PositiveNumber = 1.0
    undesirable_weight: PositiveNumber = 1.0
    loss_type: str = "kto"  # one of KTO_LOSS_TYPES
    eval_max_new_tokens: PositiveInt = 32  # reply length sampled for the held-out KL


class ScreenClassifierSettings(Settings):
    learning_rate: PositiveNumber = 5e-4
    num_train_epochs: NonNegativeNumber = 3.0
    max_length: PositiveInt = 256  # tokens of a message read; a longer one is read from its start
    # The probability of "harmful" above which the held-out precision and recall are measured; an admin who
    # chooses the classifier as the project's screen sets the threshold it holds or blocks at.
    eval_threshold: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] = 0.5


@dataclass(frozen=True)
class Stage:
    """One training stage, named once with everything the job layer, the pages and the trainer need."""

    name: str
    label: str
    reads: str  # the dataset kind it trains on (a key of COLUMNS)
    starts_from: str | None  # "base" or "sft": the model kind it starts from; None for the base stage
    registers: str  # the model kind it registers: base, sft, reward or policy
    settings: type[Settings]
    presets: dict[str, dict]  # preset name -> settings of this stage, over the preset's common ones
    module: str  # training.trainers.<module>.train(job) trains it
    evaluation: str  # how its model is measured on held-out data, in a line
    needs_reward_model: bool = False
    checks: Callable[..., list[str]] | None = None  # (config, train_rows=, processes=, adopting=) -> problems
    # Problems of the training rows taken together (the columns of `reads`), where counting them is not enough:
    # run on the exported train file before the round trains anything, and in the child before a model loads.
    rows_checks: Callable[[Iterable[dict]], list[str]] | None = None

    def defaults(self) -> dict:
        return self.settings().model_dump()


@dataclass(frozen=True)
class Recipe:
    """What a round trains after the base model: its stages in order."""

    name: str
    label: str
    stages: tuple[str, ...]
    description: str


STAGES: dict[str, Stage] = {}
RECIPES: dict[str, Recipe] = {}
# Recipes known but not available here, with the reason (PPO on a TRL without trl.experimental.ppo).
UNAVAILABLE: dict[str, str] = {}

# Settings every stage of a preset shares; a stage's own preset values go over these.
PRESET_COMMON = {
    # tiny: a model of about 0.1M parameters for tests on CPU.
    "tiny": {"per_device_train_batch_size": 4, "per_device_eval_batch_size": 8, "max_length": 128,
             "logging_steps": 1, "save_every": 10, "eval_max_rows": 16, "min_train_rows": 4},
    # small: about 7M parameters, trainable on a CPU in minutes.
    "small": {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 2, "max_length": 512,
              "logging_steps": 10, "eval_max_rows": 200, "min_train_rows": 32},
    # demo: the demo loop (manage.py demo_rounds), a model of about half a million parameters on the demo's
    # short arithmetic replies, sized so that a whole round runs in minutes on a 2-core CPU.
    "demo": {"per_device_train_batch_size": 16, "per_device_eval_batch_size": 32, "max_length": 128,
             "logging_steps": 5, "save_every": 100, "eval_max_rows": 200, "min_train_rows": 16},
    # gpu: the GPT-2-small shape (about 88M with an 8k vocabulary) at batch sizes an H100 fills.
    "gpu": {"per_device_train_batch_size": 64, "per_device_eval_batch_size": 64, "max_length": 1024,
            "logging_steps": 10, "save_every": 500, "eval_max_rows": 500, "min_train_rows": 64,
            "bf16": AUTO, "tf32": AUTO, "optim": AUTO, "torch_compile": AUTO, "attn_implementation": "sdpa"},
}


def stage_register(stage: Stage) -> Stage:
    """Add a stage to the registry (a test-only stage, a stage of an installation's own)."""
    unknown = set(stage.presets) - set(PRESET_NAMES)
    if unknown:
        raise ValueError(f"stage {stage.name}: unknown preset {', '.join(sorted(unknown))}")
    if stage.reads not in COLUMNS:
        raise ValueError(f"stage {stage.name}: reads {stage.reads!r}, not one of {', '.join(COLUMNS)}")
    STAGES[stage.name] = stage
    return stage


def recipe_register(recipe: Recipe) -> Recipe:
    missing = [name for name in recipe.stages if name not in STAGES]
    if missing:
        raise ValueError(f"recipe {recipe.name}: no stage named {', '.join(missing)}")
    RECIPES[recipe.name] = recipe
    return recipe


def stage_unregister(name: str) -> None:
    """Take a stage, and every recipe that uses it, out of the registry (tests)."""
    STAGES.pop(name, None)
    for recipe in [r for r in RECIPES.values() if name in r.stages]:
        RECIPES.pop(recipe.name)


def recipe_stages(recipe: str, *, with_base: bool) -> list[str]:
    """The stages a round of `recipe` runs, the base stage first when the project needs one."""
    return (["base"] if with_base else []) + list(RECIPES[recipe].stages)


def default_recipe() -> str:
    return "ppo" if "ppo" in RECIPES else "dpo"


def unavailable_reason(recipe: str) -> str:
    """Why `recipe` cannot run here ("" when it can, or when no such recipe exists)."""
    return UNAVAILABLE.get(recipe, "")


def type_name(annotation) -> str:
    """Describe a settings field's type as the refusals say it: "an integer", 'true, false or "auto"'."""
    if annotation == AutoBool:
        return 'true, false or "auto"'
    if annotation == AdapterChoice:
        return ('a LoRA adapter ({"type": "lora", "r": an integer above 0, "alpha": a number above 0, "dropout": '
                'from 0 to below 1, "target_modules": "all-linear" or a list of module names}), "auto" or null')
    if typing.get_origin(annotation) is Annotated:
        return type_name(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " or ".join(type_name(part) for part in typing.get_args(annotation))
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list",
             type(None): "null"}
    return names.get(typing.get_origin(annotation) or annotation, str(annotation))


# ---------------------------------------------------------------------------------------------
# Each stage's own checks, beyond its settings' types and ranges


def _base_checks(c: dict, *, train_rows: int, processes: int, adopting: bool) -> list[str]:
    if adopting:
        return []
    problems = []
    if c["vocab_size"] < MIN_VOCAB:
        problems.append(f"vocab_size must be at least {MIN_VOCAB} (256 byte symbols and 5 chat tokens), "
                        f"not {c['vocab_size']}")
    if c["width"] % c["heads"]:
        problems.append(f"width ({c['width']}) must divide by heads ({c['heads']})")
    if c["max_length"] > c["context"]:
        problems.append(f"max_length ({c['max_length']}) is longer than the model's context ({c['context']})")
    return problems


# 256 byte symbols and the five chat special tokens of scratch.tokenizer_train.
MIN_VOCAB = 261


def _batches(c: dict, processes: int) -> tuple[int, int]:
    local = c["per_device_train_batch_size"] * c["gradient_accumulation_steps"]
    return local, local * processes


def _one_batch_checks(rows_are: str):
    """Refuse data smaller than one global batch: Trainer would train on one short batch a step, and what the
    settings ask for (a batch of so many per step) would not be what ran."""

    def checks(c: dict, *, train_rows: int, processes: int, adopting: bool) -> list[str]:
        _, global_batch = _batches(c, processes)
        if train_rows >= global_batch:
            return []
        return [f"dataset smaller than one batch: {train_rows} {rows_are} for a batch of {global_batch} "
                f"({c['per_device_train_batch_size']} per device x {c['gradient_accumulation_steps']} accumulation "
                f"x {processes} processes)"]

    return checks


def _ppo_checks(c: dict, *, train_rows: int, processes: int, adopting: bool) -> list[str]:
    problems = []
    local_batch, global_batch = _batches(c, processes)
    nmb = c["num_mini_batches"]
    if global_batch % nmb or local_batch % nmb:
        problems.append(
            f"batch ({c['per_device_train_batch_size']} per device x {c['gradient_accumulation_steps']} "
            f"accumulation x {processes} processes = {global_batch}) does not divide by num_mini_batches ({nmb})")
    elif c["whiten_rewards"] and local_batch // nmb < 8:
        problems.append(f"whiten_rewards needs at least 8 rows per mini-batch and process, not {local_batch // nmb}")
    if train_rows < global_batch:
        problems.append(f"dataset smaller than one batch: {train_rows} prompts for a batch of {global_batch} "
                        "(TRL's PPO would wait forever for a full batch)")
    if c["kl_estimator"] not in ("k1", "k3"):
        problems.append(f"kl_estimator must be 'k1' or 'k3', not {c['kl_estimator']!r}")
    return problems


def _rloo_checks(c: dict, *, train_rows: int, processes: int, adopting: bool) -> list[str]:
    _, global_batch = _batches(c, processes)
    generations = c["num_generations"]
    if generations < 2:
        return [f"num_generations must be at least 2 (RLOO's baseline leaves one out), not {generations}"]
    if global_batch % generations:
        return [f"batch ({global_batch}) does not divide by num_generations ({generations})"]
    if train_rows < global_batch // generations:
        return [f"dataset smaller than one batch: {train_rows} prompts for a batch of "
                f"{global_batch // generations} prompts x {generations} generations"]
    return []


def dpo_loss_types(value) -> list[str]:
    """Return loss_type as the list TRL's DPOConfig makes of it (a string is one loss)."""
    return [value] if isinstance(value, str) else list(value)


def _dpo_checks(c: dict, *, train_rows: int, processes: int, adopting: bool) -> list[str]:
    """Refuse before anything loads what TRL's DPO would refuse late: an unknown loss only at the first
    training step, loss weights of the wrong length when DPOConfig is built, exo_pair without smoothing
    once both models are loaded."""
    problems = []
    _, global_batch = _batches(c, processes)
    if train_rows < global_batch:
        problems.append(f"dataset smaller than one batch: {train_rows} pairs for a batch of {global_batch} "
                        f"({c['per_device_train_batch_size']} per device x {c['gradient_accumulation_steps']} "
                        f"accumulation x {processes} processes)")
    losses = dpo_loss_types(c["loss_type"])
    if not losses or not all(isinstance(loss, str) for loss in losses):
        return problems + [f"loss_type must be a loss name or a non-empty list of them, not {c['loss_type']!r}"]
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


def _grpo_checks(c: dict, *, train_rows: int, processes: int, adopting: bool) -> list[str]:
    """Refuse before anything loads what TRL's GRPOConfig refuses when it is built (a generation batch that does
    not hold whole groups, fewer than 2 generations) and what GRPOTrainer refuses late: an unknown loss at the
    first step, reward weights of another count when the trainer is built."""
    problems = []
    _, global_batch = _batches(c, processes)  # TRL's generation batch: steps_per_generation defaults to accumulation
    generations = c["num_generations"]
    if generations < 2:
        problems.append(f"num_generations must be at least 2 (GRPO's advantage compares the replies to one "
                        f"prompt), not {generations}")
    elif global_batch % generations:
        problems.append(f"batch ({c['per_device_train_batch_size']} per device x {c['gradient_accumulation_steps']} "
                        f"accumulation x {processes} processes = {global_batch}) does not divide by num_generations "
                        f"({generations}): TRL's GRPO needs whole groups of replies to one prompt in a batch")
    elif train_rows < global_batch // generations:
        problems.append(f"dataset smaller than one batch: {train_rows} prompts for a batch of "
                        f"{global_batch // generations} prompts x {generations} generations")
    if c["loss_type"] not in GRPO_LOSS_TYPES:
        problems.append(f"loss_type must be one of {', '.join(GRPO_LOSS_TYPES)}, not {c['loss_type']!r}")
    if c["scale_rewards"] not in GRPO_SCALE_REWARDS:
        problems.append(f"scale_rewards must be one of {', '.join(GRPO_SCALE_REWARDS)}, not {c['scale_rewards']!r}")
    functions = c["reward_functions"]
    if not all(functions) or len(set(functions)) != len(functions):
        problems.append(f"reward_functions must name each function once, not {functions!r}")
    weights, sources = c["reward_weights"], 1 + len(functions)
    if weights is not None and len(weights) != sources:
        problems.append(f"reward_weights has {len(weights)} weight{'s' if len(weights) != 1 else ''} for {sources} "
                        f"reward source{'s' if sources != 1 else ''} (the reward model, then each of "
                        "reward_functions): give one weight each, or none for 1 each")
    return problems


def _kto_checks(c: dict, *, train_rows: int, processes: int, adopting: bool) -> list[str]:
    """Refuse before anything loads what TRL's KTO refuses once both models are loaded (a batch of one row per
    device) or fails on at the first step (an unknown loss)."""
    problems = []
    _, global_batch = _batches(c, processes)
    if train_rows < global_batch:
        problems.append(f"dataset smaller than one batch: {train_rows} rows for a batch of {global_batch} "
                        f"({c['per_device_train_batch_size']} per device x {c['gradient_accumulation_steps']} "
                        f"accumulation x {processes} processes)")
    if c["loss_type"] not in KTO_LOSS_TYPES:
        problems.append(f"loss_type must be one of {', '.join(KTO_LOSS_TYPES)}, not {c['loss_type']!r}")
    elif c["loss_type"] != "apo_zero_unpaired" and c["per_device_train_batch_size"] < 2:
        problems.append(f"per_device_train_batch_size must be at least 2 for the {c['loss_type']} loss, not "
                        f"{c['per_device_train_batch_size']}: KTO estimates its KL term from the other rows of the same "
                        "batch on one device, and with one row that term is the row's own reward")
    return problems


def _both_labels_checks(refusal: str):
    """Refuse train rows that all have the same `label`: `refusal` is said with the counts of true and false."""

    def checks(rows: Iterable[dict]) -> list[str]:
        true = false = 0
        for row in rows:
            true += row["label"]
            false += not row["label"]
        return [] if true and false else [refusal.format(true=true, false=false)]

    return checks


_kto_rows_checks = _both_labels_checks(
    "KTO needs both desirable and undesirable rows to train on, and the train split has {true} desirable and "
    "{false} undesirable: accept or reject demonstrations, label the quality of replies, or rank them")


_screen_rows_checks = _both_labels_checks(
    "the screen classifier needs both flagged and unflagged messages to train on, and the train split has {true} "
    "flagged toxic, spam or off task and {false} labelled without a flag")


def _orpo_checks(c: dict, *, train_rows: int, processes: int, adopting: bool) -> list[str]:
    _, global_batch = _batches(c, processes)
    if train_rows < global_batch:
        return [f"dataset smaller than one batch: {train_rows} pairs for a batch of {global_batch} "
                f"({c['per_device_train_batch_size']} per device x {c['gradient_accumulation_steps']} "
                f"accumulation x {processes} processes)"]
    return []


# ---------------------------------------------------------------------------------------------
# The platform's stages and recipes

stage_register(Stage(
    name="base", label="Base model", reads="pretraining", starts_from=None, registers="base",
    settings=BaseSettings, module="base_stage", checks=_base_checks,
    evaluation="held-out loss and perplexity",
    presets={
        "tiny": {"layers": 2, "heads": 2, "width": 64, "context": 256, "vocab_size": 512, "max_steps": 20,
                 "learning_rate": 3e-3},
        "small": {"layers": 6, "heads": 4, "width": 256, "context": 512, "vocab_size": 8192, "num_train_epochs": 1.0},
        # Each short pretraining document is read from position 0 (packing off): packed into blocks, where
        # a fact sits anywhere, a model this small with learned positions did not learn the sums at all.
        "demo": {"layers": 2, "heads": 4, "width": 128, "context": 128, "vocab_size": 1024, "learning_rate": 2e-3,
                 "num_train_epochs": 6.0, "warmup_steps": 20, "packing": False, "per_device_train_batch_size": 64,
                 "max_length": 64},
        "gpu": {"layers": 12, "heads": 12, "width": 768, "context": 1024, "vocab_size": 8192,
                "learning_rate": 6e-4, "warmup_steps": 100},
    },
))
stage_register(Stage(
    name="sft", label="Supervised fine-tuning", reads="sft", starts_from="base", registers="sft",
    settings=SFTSettings, module="sft", checks=_one_batch_checks("conversations"),
    evaluation="held-out loss, BLEU, ROUGE-L, exact match",
    presets={
        "tiny": {"max_steps": 20, "learning_rate": 3e-3, "eval_max_new_tokens": 8},
        "small": {"num_train_epochs": 3.0},
        "demo": {"learning_rate": 1e-3, "num_train_epochs": 10.0, "eval_max_new_tokens": 12},
        "gpu": {"num_train_epochs": 3.0, "eval_max_new_tokens": 128},
    },
))
stage_register(Stage(
    name="reward", label="Reward model", reads="preference", starts_from="sft", registers="reward",
    settings=RewardSettings, module="reward", checks=_one_batch_checks("pairs"),
    evaluation="held-out pair accuracy",
    presets={
        "tiny": {"max_steps": 20, "learning_rate": 1e-3},
        "small": {"num_train_epochs": 1.0},
        "demo": {"learning_rate": 5e-4, "num_train_epochs": 2.0},
        "gpu": {"per_device_train_batch_size": 32, "num_train_epochs": 1.0},
    },
))
_POLICY_EVALUATION = "mean reward, KL to the SFT model, win rate against the previous policy"


def ppo_available() -> bool:
    """Whether the installed TRL has trl.experimental.ppo, looked up on disk: importing trl here would
    cost the web process seconds, and this module must load without it."""
    trl = importlib.util.find_spec("trl")
    return bool(trl and trl.submodule_search_locations and any(
        (Path(folder) / "experimental" / "ppo").is_dir() for folder in trl.submodule_search_locations))


if ppo_available():
    stage_register(Stage(
        name="ppo", label="PPO", reads="prompts", starts_from="sft", registers="policy",
        settings=PPOSettings, module="ppo", checks=_ppo_checks, needs_reward_model=True,
        evaluation=_POLICY_EVALUATION,
        presets={
            "tiny": {"total_episodes": 32, "num_ppo_epochs": 1, "response_length": 8, "learning_rate": 1e-4,
                     "local_rollout_forward_batch_size": 8, "save_every": 4},
            "small": {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 2, "num_mini_batches": 2,
                      "response_length": 48, "logging_steps": 1},
            "demo": {"per_device_train_batch_size": 16, "num_mini_batches": 2, "total_episodes": 1024,
                     "num_ppo_epochs": 4, "response_length": 10, "learning_rate": 6e-5, "kl_coef": 0.2,
                     "temperature": 1.0, "local_rollout_forward_batch_size": 32, "save_every": 8, "logging_steps": 1},
            "gpu": {"per_device_train_batch_size": 16, "gradient_accumulation_steps": 4, "num_mini_batches": 1,
                    "response_length": 128, "local_rollout_forward_batch_size": 64, "torch_compile": False,
                    "save_every": 20},
        },
    ))
# RLOO and GRPO both sample a group of replies per prompt: they start from the same presets (neither is
# tuned on the demo yet).
_GROUP_SAMPLING_PRESETS = {
    "tiny": {"max_steps": 8, "response_length": 8, "learning_rate": 1e-4, "save_every": 4},
    "small": {"per_device_train_batch_size": 8, "num_generations": 4, "response_length": 48, "logging_steps": 1},
    "demo": {"per_device_train_batch_size": 16, "num_generations": 4, "response_length": 10,
             "learning_rate": 1e-4, "max_steps": 32, "save_every": 8, "logging_steps": 1},
    "gpu": {"per_device_train_batch_size": 16, "gradient_accumulation_steps": 4, "num_generations": 4,
            "response_length": 128, "torch_compile": False, "save_every": 50},
}
stage_register(Stage(
    name="rloo", label="RLOO", reads="prompts", starts_from="sft", registers="policy",
    settings=RLOOSettings, module="rloo", checks=_rloo_checks, needs_reward_model=True,
    evaluation=_POLICY_EVALUATION,
    presets=_GROUP_SAMPLING_PRESETS,
))
stage_register(Stage(
    name="dpo", label="DPO", reads="preference", starts_from="sft", registers="policy",
    settings=DPOSettings, module="dpo", checks=_dpo_checks,
    evaluation="held-out preference accuracy and margin of the implicit reward, KL to the SFT model",
    presets={
        "tiny": {"max_steps": 8, "learning_rate": 1e-3, "save_every": 4, "eval_max_new_tokens": 8},
        "small": {"learning_rate": 5e-5, "num_train_epochs": 1.0},
        # DPO's loss plus the chosen reply's NLL, weighted 1:1 (RPO, Pang et al. 2024; TRL's "sft" loss type). On
        # the demo plain DPO lowered the chosen replies' likelihood with the rejected ones' and the policy
        # rambled (", the answer is 5, the answer is 5, the"): 46% on the hidden check against SFT's 48-51%, KL
        # 13 to SFT; with the NLL term 78-84% after one epoch (bench/recipe_compare.py; README).
        "demo": {"learning_rate": 1e-4, "beta": 0.25, "num_train_epochs": 1.0, "loss_type": ["sigmoid", "sft"],
                 "loss_weights": [1.0, 1.0], "eval_max_new_tokens": 12},
        # A pair is two sequences, and a frozen reference runs beside the policy. Not compiled, as PPO and
        # RLOO: not yet measured on a GPU.
        "gpu": {"per_device_train_batch_size": 32, "num_train_epochs": 1.0, "eval_max_new_tokens": 128,
                "torch_compile": False},
    },
))
stage_register(Stage(
    name="kto", label="KTO", reads="unpaired", starts_from="sft", registers="policy",
    settings=KTOSettings, module="kto", checks=_kto_checks, rows_checks=_kto_rows_checks,
    evaluation="held-out share of desirable replies with an implicit reward above 0 and of undesirable ones below "
               "0, and their mean rewards, KL to the SFT model",
    presets={
        "tiny": {"max_steps": 8, "learning_rate": 1e-3, "save_every": 4, "eval_max_new_tokens": 8},
        "small": {"learning_rate": 5e-5, "num_train_epochs": 1.0},
        "demo": {"learning_rate": 1e-4, "num_train_epochs": 2.0, "eval_max_new_tokens": 12},
        # A row is two sequences (its own reply and another row's, for the KL term), each through the policy and
        # the frozen reference, as DPO's pair. Not compiled: not yet measured on a GPU.
        "gpu": {"per_device_train_batch_size": 32, "num_train_epochs": 1.0, "eval_max_new_tokens": 128,
                "torch_compile": False},
    },
))
stage_register(Stage(
    name="grpo", label="GRPO", reads="prompts", starts_from="sft", registers="policy",
    settings=GRPOSettings, module="grpo", checks=_grpo_checks, needs_reward_model=True,
    evaluation=f"{_POLICY_EVALUATION}, each reward function's mean",
    presets=_GROUP_SAMPLING_PRESETS,
))
stage_register(Stage(
    name="orpo", label="ORPO", reads="preference", starts_from="base", registers="policy",
    settings=ORPOSettings, module="orpo", checks=_orpo_checks,
    evaluation="held-out preference accuracy and mean log odds of chosen over rejected, beside the base model's",
    presets={
        "tiny": {"max_steps": 8, "learning_rate": 1e-3, "save_every": 4},
        "small": {"learning_rate": 5e-5, "num_train_epochs": 3.0},
        # ORPO is SFT and preference in one stage, from the base: it trains as long as the demo's SFT does.
        "demo": {"learning_rate": 1e-3, "num_train_epochs": 10.0},
        "gpu": {"per_device_train_batch_size": 32, "num_train_epochs": 3.0, "torch_compile": False},
    },
))

stage_register(Stage(
    name="screen", label="Screen classifier", reads="flags", starts_from="base", registers="screen",
    settings=ScreenClassifierSettings, module="screen_classifier", checks=_one_batch_checks("labelled messages"),
    rows_checks=_screen_rows_checks,
    evaluation="held-out precision, recall and F1 of the harmful label at eval_threshold, and its average precision",
    presets={
        "tiny": {"max_steps": 10, "learning_rate": 1e-3, "max_length": 64},
        "small": {"num_train_epochs": 3.0},
        # Short demo replies: 64 tokens hold any of them.
        "demo": {"learning_rate": 1e-3, "num_train_epochs": 4.0, "max_length": 64, "per_device_train_batch_size": 32},
        "gpu": {"per_device_train_batch_size": 64, "num_train_epochs": 2.0},
    },
))

if "ppo" in STAGES:
    recipe_register(Recipe("ppo", "PPO", ("sft", "reward", "ppo"),
                           "SFT, a reward model from the rankings, then PPO against it"))
else:
    UNAVAILABLE["ppo"] = ("the ppo recipe needs trl.experimental.ppo, which the installed TRL does not have "
                          "(TRL removed PPO in 1.13); choose another recipe")
recipe_register(Recipe("rloo", "RLOO", ("sft", "reward", "rloo"),
                       "SFT, a reward model from the rankings, then RLOO against it"))
recipe_register(Recipe("dpo", "DPO", ("sft", "dpo"),
                       "SFT, then DPO on the preference pairs themselves (no reward model)"))
recipe_register(Recipe("kto", "KTO", ("sft", "kto"),
                       "SFT, then KTO on replies judged good or bad one by one (accepted and rejected "
                       "demonstrations, quality labels, the top and bottom of rankings, all-bad rankings): no pairs "
                       "and no reward model"))
recipe_register(Recipe("grpo", "GRPO", ("sft", "reward", "grpo"),
                       "SFT, a reward model from the rankings, then GRPO against it and any verifiable reward "
                       "functions the installation offers"))
recipe_register(Recipe("orpo", "ORPO", ("orpo",),
                       "ORPO from the base model on the preference pairs: SFT and preference in one stage, with no "
                       "reference or reward model"))
recipe_register(Recipe("screen", "Screen classifier", ("screen",),
                       "the content screen's classifier alone, from the base model: harmful (flagged toxic, spam or "
                       "off task) or not, learnt from the messages annotators labelled; an admin then chooses it as "
                       "the project's screen"))
recipe_register(Recipe("sft", "SFT only", ("sft",),
                       "SFT alone: a chat model from the accepted demonstrations (a dialogue corpus imported as "
                       "trusted), with no preference stage"))


def recipe_choices(*, unavailable: bool = False) -> list[tuple[str, str]]:
    """(name, label) of every recipe available here, for pages, the API schema and the command line;
    with `unavailable`, also those known but not available, labelled with the reason (the API accepts
    them so that the refusal says why)."""
    choices = [(r.name, f"{r.label}: {' → '.join(STAGES[s].label for s in r.stages)}") for r in RECIPES.values()]
    return choices + ([(name, f"unavailable here: {reason}") for name, reason in UNAVAILABLE.items()]
                      if unavailable else [])


def registry_markdown() -> str:
    """The README's table of recipes and stages, written from the registry (a test keeps the two equal)."""
    lines = ["| recipe | stages after the base | what it does |", "|---|---|---|"]
    lines += [f"| `{r.name}` | {' → '.join(r.stages)} | {r.description} |" for r in RECIPES.values()]
    lines += ["", "| stage | trains on | from | registers | evaluated by |", "|---|---|---|---|---|"]
    lines += [f"| `{s.name}` ({s.label}) | {s.reads} | {s.starts_from or 'nothing, or an adopted model'} | "
              f"{s.registers} | {s.evaluation} |" for s in STAGES.values()]
    return "\n".join(lines) + "\n"
