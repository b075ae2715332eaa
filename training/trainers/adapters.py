"""LoRA adapters (peft): the adapter a stage trains, and loading a version that is an adapter plus its base.

A stage whose `adapter` setting asks for one (or whose "auto" picks one, see stages.LORA_FROM_PARAMETERS)
trains a peft LoRA adapter instead of all the weights. Its out_dir then holds peft's own files
(adapter_config.json, adapter_model.safetensors: an admin can hand them to anything that reads peft's
format), the tokenizer, `platform_training.json` with "adapter": {"base": the directory of the model it
was trained on, ...}, and `merged/`: the base with the adapter merged into it, a whole model directory
for the next stage that starts from this version and for an OpenAI-compatible server.

    model = pretrained(AutoModelForCausalLM, "/store/project-1/run-2/sft")   # a full model or an adapter, merged
    handed_on("/store/project-1/run-2/sft")   # ".../sft/merged": what a later stage is given to start from

Importable without torch, transformers or peft (the job layer reads `handed_on`); they load on first use.
"""

import json
from pathlib import Path

ADAPTER_CONFIG = "adapter_config.json"
MERGED = "merged"
SUMMARY_FILE = "platform_training.json"  # also common.SUMMARY_FILE: common imports torch, this module must not


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def is_adapter(model_dir) -> bool:
    """Whether `model_dir` holds an adapter (peft's files) rather than a whole model."""
    folder = Path(model_dir)
    return (folder / ADAPTER_CONFIG).is_file() and not (folder / "config.json").is_file()


def handed_on(model_dir: str) -> str:
    """Return the directory a later stage starts from: an adapter version's merged copy, else the version itself."""
    merged = Path(model_dir) / MERGED
    return str(merged) if is_adapter(model_dir) and (merged / "config.json").is_file() else str(model_dir)


def adapter_base(model_dir) -> str:
    """Return the directory of the model the adapter in `model_dir` was trained on.

    As platform_training.json records it, else as peft's adapter_config.json does (a checkpoint, an adapter
    written elsewhere).
    """
    folder = Path(model_dir)
    base = (_json(folder / SUMMARY_FILE).get("adapter") or {}).get("base") or \
        _json(folder / ADAPTER_CONFIG).get("base_model_name_or_path")
    if not base or not (Path(base) / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} is an adapter whose base model {base or '(not recorded)'} is not there")
    return base


def pretrained(model_class, model_dir, *, base_dir: str | None = None, **kwargs):
    """Load `model_dir` with `model_class.from_pretrained`: a whole model as it is, an adapter as its base
    (`base_dir`, else the recorded one) with the adapter merged into it, so that it runs as fast as a whole one.

    `kwargs` go to the base's from_pretrained (dtype, num_labels, attn_implementation, local_files_only). Without
    a dtype: as saved where CUDA is, float32 on a CPU, whose bf16 matrix products are many times slower
    (bases and versions are often saved in bf16: common.store_as_started).
    """
    if "dtype" not in kwargs:
        import torch

        kwargs["dtype"] = "auto" if torch.cuda.is_available() else "float32"
    if not is_adapter(model_dir):
        return model_class.from_pretrained(model_dir, **kwargs)
    from peft import PeftModel

    model = model_class.from_pretrained(base_dir or adapter_base(model_dir), **kwargs)
    _fit_vocabulary(model, Path(model_dir))
    return PeftModel.from_pretrained(model, str(model_dir)).merge_and_unload()


def _fit_vocabulary(model, folder: Path) -> None:
    """Grow the base's embeddings to the rows the adapter saved, where training had to grow them."""
    rows = (_json(folder / SUMMARY_FILE).get("adapter") or {}).get("embedding_rows")
    if rows is None:  # not published yet (the merged copy is written before the summary): the tokenizer says
        from transformers import AutoTokenizer

        rows = len(AutoTokenizer.from_pretrained(folder))
    if rows > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(rows, mean_resizing=False)  # the adapter's saved rows replace them


def lora_config(adapter: dict, *, task_type: str, new_tokens: list[int], modules_to_save: list[str] | None = None):
    """Return peft's LoraConfig for the `adapter` setting (a validated stages.Adapter, dumped).

    new_tokens: embedding rows the stage had to add (a pad token the tokenizer has and the weights lacked):
    trained as peft's trainable tokens, and with the grown embeddings saved beside the adapter.
    """
    from peft import LoraConfig

    targets = adapter["target_modules"]
    return LoraConfig(
        r=adapter["r"], lora_alpha=adapter["alpha"], lora_dropout=adapter["dropout"],
        target_modules=targets if isinstance(targets, str) else list(targets), task_type=task_type,
        modules_to_save=modules_to_save, trainable_token_indices=list(new_tokens) or None,
    )


def write_merged(folder: Path, *, model_class, base_dir: str, **kwargs) -> Path:
    """Write folder/merged: the base in `base_dir` with the adapter saved in `folder` merged into it, and the
    tokenizer; what the next stage starts from and what an OpenAI-compatible server serves. `kwargs` go to
    the base's from_pretrained (a reward model's num_labels=1)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    # Loaded from disk, not merged in the trained model: what is written is what the saved adapter gives, in the
    # dtype the base was saved in.
    model = pretrained(model_class, folder, base_dir=base_dir, dtype="auto", **kwargs)
    model.config.pad_token_id = tokenizer.pad_token_id
    target = Path(folder) / MERGED
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target
