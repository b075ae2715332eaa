"""Bases from GGUF files: converted once into a bf16 safetensors directory, registered by name, and refused
with a clear reason (not GGUF, an architecture transformers cannot load, a name or file taken)."""

import hashlib
import io

import gguf
import numpy as np
import pytest
import torch
from django.core.management import CommandError, call_command
from tokenizers.pre_tokenizers import ByteLevel
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from tests.helpers import run_queued_jobs
from training.models import BaseModel
from training.trainers.gguf import ConversionError, gguf_convert

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
MERGES = ["Ġ t", "h e", "Ġt he"]
HEADS, KV_HEADS, LAYERS, WIDTH = 4, 2, 2, 64
# GGUF's names for a Llama block's tensors (llama.cpp's convert_hf_to_gguf), by transformers' names.
BLOCK_TENSORS = {
    "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
}


def permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """Reorder q/k rows as llama.cpp does when it writes a Llama (transformers' loader undoes it)."""
    return weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def write_tiny_gguf(path, *, architecture="llama") -> LlamaForCausalLM:
    """Write a 2-layer Llama with a byte-level BPE tokenizer and a ChatML template as GGUF (F16 matrices,
    F32 norms, tied embeddings like SmolLM2's); return the model it was written from."""
    tokens = SPECIALS + sorted(ByteLevel.alphabet()) + [merge.replace(" ", "") for merge in MERGES]
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokens), hidden_size=WIDTH, intermediate_size=2 * WIDTH, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=256,
        tie_word_embeddings=True, rms_norm_eps=1e-5, rope_theta=10000.0,
    ))
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("Tiny Test Llama")
    writer.add_license("apache-2.0")
    writer.add_context_length(256)
    writer.add_embedding_length(WIDTH)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(2 * WIDTH)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(WIDTH // HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL] * len(SPECIALS) + [gguf.TokenType.NORMAL] * (len(tokens) - len(SPECIALS)))
    writer.add_token_merges(MERGES)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_pad_token_id(2)  # pad == EOS, as in SmolLM2's file
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML)
    weights = model.state_dict()
    writer.add_tensor("token_embd.weight", weights["model.embed_tokens.weight"].numpy().astype(np.float16))
    writer.add_tensor("output_norm.weight", weights["model.norm.weight"].numpy())
    for layer in range(LAYERS):
        for ours, theirs in BLOCK_TENSORS.items():
            weight = weights[f"model.layers.{layer}.{ours}.weight"].numpy()
            if theirs == "attn_q":
                weight = permute(weight, HEADS)
            elif theirs == "attn_k":
                weight = permute(weight, KV_HEADS)
            writer.add_tensor(f"blk.{layer}.{theirs}.weight", weight if weight.ndim == 1 else weight.astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model


@pytest.fixture
def roots(tmp_path, settings):
    settings.BASE_MODEL_ROOTS = [tmp_path / "base-models"]
    return settings.BASE_MODEL_ROOTS


def convert(*args) -> str:
    out = io.StringIO()
    call_command("base_convert", *map(str, args), stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_a_gguf_file_converts_through_the_command_into_a_bf16_base_registered_once(tmp_path, roots, owner):
    source = tmp_path / "tiny.gguf"
    original = write_tiny_gguf(source)

    printed = convert(source, "--name", "tiny", "--here")

    base = BaseModel.objects.get()
    assert base.name == "tiny" and base.folder == str(roots[0] / "tiny")
    assert "Base model tiny: LlamaForCausalLM" in printed and " s)" in printed
    facts = base.facts
    assert facts["architecture"] == "LlamaForCausalLM"
    assert facts["parameters"] == sum(p.numel() for p in original.parameters())
    assert (facts["context_length"], facts["dtype"], facts["quantisation"]) == (256, "bfloat16", "F16")
    assert facts["source"]["file"] == str(source) and facts["source"]["package"] is None
    assert facts["source"]["sha256"] == base.source_sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert facts["tensor_types"] == {"F16": 15, "F32": 5} and facts["licence"] == "apache-2.0"
    assert facts["note"] == "weights converted from the file's F16 tensors"

    # A normal checkpoint: safetensors only, bf16, loadable with no GGUF file beside it.
    files = sorted(path.name for path in (roots[0] / "tiny").iterdir())
    assert "model.safetensors" in files and not [name for name in files if name.endswith((".bin", ".gguf"))]
    assert not [path for path in roots[0].iterdir() if path.name.endswith(".partial")]
    reloaded = AutoModelForCausalLM.from_pretrained(base.folder, local_files_only=True)
    assert reloaded.dtype == torch.bfloat16 and not getattr(reloaded.config, "quantization_config", None)
    # The same weights, q/k rows back in transformers' order: each is the original rounded to F16, then bf16.
    expected = original.state_dict()
    for key, value in reloaded.state_dict().items():
        want = expected[key].half() if expected[key].ndim > 1 else expected[key]
        assert torch.equal(value, want.bfloat16()), key
    tokenizer = AutoTokenizer.from_pretrained(base.folder, local_files_only=True)
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "hi the"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<|im_start|>user\nhi the<|im_end|>\n<|im_start|>assistant\n"
    assert tokenizer.eos_token == "<|im_end|>" and reloaded.config.eos_token_id == tokenizer.eos_token_id == 2

    # Registered once: the same file and name is the same row, converted no more; anything else is refused.
    assert "Already registered: base model tiny" in convert(source, "--name", "tiny", "--here")
    with pytest.raises(CommandError, match="this file is already registered as the base model 'tiny'"):
        convert(source, "--name", "tiny-again", "--here")
    other = tmp_path / "other.gguf"
    source_bytes = bytearray(source.read_bytes())
    source_bytes[-1] ^= 1  # another file: one bit of the last weight differs
    other.write_bytes(bytes(source_bytes))
    with pytest.raises(CommandError, match="a base model named 'tiny' is already registered, from another file"):
        convert(other, "--name", "tiny", "--here")
    assert list(BaseModel.objects.values_list("name", flat=True)) == ["tiny"]
    assert sorted(path.name for path in roots[0].iterdir()) == ["tiny"]


@pytest.mark.django_db
def test_a_file_that_is_not_gguf_is_refused_and_nothing_is_written(tmp_path, roots):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 a zip, not a GGUF file")
    with pytest.raises(CommandError, match=r"model.gguf is not a GGUF file \(it does not start with b'GGUF'\)"):
        convert(fake, "--name", "fake", "--here")
    with pytest.raises(CommandError, match="is not a file"):
        convert(tmp_path / "missing.gguf", "--name", "fake")
    with pytest.raises(CommandError, match="a base model's name is 1-100 letters"):
        convert(fake, "--name", "../elsewhere", "--here")
    assert not BaseModel.objects.exists() and not roots[0].exists()


def test_an_architecture_transformers_cannot_load_from_gguf_is_refused_and_nothing_is_written(tmp_path):
    source = tmp_path / "odd.gguf"
    write_tiny_gguf(source, architecture="rwkv6")
    with pytest.raises(ConversionError, match=r"cannot load a 'rwkv6' model from GGUF"):
        gguf_convert(source, tmp_path / "out")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["odd.gguf"]
    (tmp_path / "out").mkdir()
    with pytest.raises(ConversionError, match="already exists"):
        gguf_convert(source, tmp_path / "out")


@pytest.mark.django_db
def test_from_package_finds_the_gguf_an_installed_package_ships_or_says_why_not(roots):
    with pytest.raises(CommandError, match="the package 'no-such-package-here' is not installed"):
        convert("--from-package", "no-such-package-here", "--name", "x")
    with pytest.raises(CommandError, match="the package 'gguf' must ship exactly one .gguf file; it ships none"):
        convert("--from-package", "gguf", "--name", "x")
    with pytest.raises(CommandError, match="not both"):
        convert("some.gguf", "--from-package", "gguf", "--name", "x")


@pytest.mark.django_db(transaction=True)
def test_without_here_a_worker_on_the_exports_queue_converts_and_registers_it(tmp_path, roots):
    source = tmp_path / "tiny.gguf"
    write_tiny_gguf(source)
    assert "Queued the conversion" in convert(source, "--name", "tiny")
    assert not BaseModel.objects.exists()
    run_queued_jobs(["exports"])
    base = BaseModel.objects.get()
    assert base.name == "tiny" and (roots[0] / "tiny" / "model.safetensors").is_file()
