"""Tokens per second of the local generation backend: batched against one prompt at a time.

Both runs go through training.generation's TransformersBackend with the same model, prompts and
settings; only batch_size differs. Every reply is forced to exactly --new-tokens tokens
(min_new_tokens = max_new_tokens), so an untrained model's early EOS cannot flatter either side.

The model has random weights, in the shape of a preset in training/trainers/config.py:
  --device cpu   the "small" shape: 6 layers, 4 heads, width 256, vocab 8192, context 512;
  --device cuda  the "gpu" shape (GPT-2 small): 12 layers, 12 heads, width 768, vocab 8192, context 1024,
                 in bf16 with the static cache and compiled decoding; a first untimed pass compiles.
--model-dir takes a trained model directory instead.

    .venv/bin/python bench/generation_bench.py
    .venv/bin/python bench/generation_bench.py --device cuda --prompts 2048 --loop-prompts 32
"""

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHAPES = {"cpu": {"layers": 6, "heads": 4, "width": 256, "context": 512},
          "cuda": {"layers": 12, "heads": 12, "width": 768, "context": 1024}}
VOCAB = 8192


def words(rng: random.Random, count: int) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "de", "gu", "ba", "fe", "zo", "yu", "wi", "ha"]
    return ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(count)]


def model_build(folder: Path, *, device: str, seed: int) -> None:
    """Save a random-weight model of the device's shape, with an 8192-token tokenizer."""
    import torch

    from training.trainers.base_model import gpt_from_config, tokenizer_train

    rng = random.Random(seed)
    vocabulary = words(rng, 30000)
    texts = [" ".join(rng.choices(vocabulary, k=60)) for _ in range(4000)]
    tokenizer = tokenizer_train(texts, vocab_size=VOCAB)
    torch.manual_seed(seed)
    model = gpt_from_config(tokenizer, **SHAPES["cuda" if device.startswith("cuda") else "cpu"])
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def conversations(count: int, *, seed: int) -> list[list[dict]]:
    """Return chat prompts of varied length: one to three turns of 5 to 60 words."""
    rng = random.Random(seed)
    vocabulary = words(rng, 2000)
    result = []
    for _ in range(count):
        turns = rng.choice([1, 1, 1, 3])
        messages = [{"role": "user" if i % 2 == 0 else "assistant",
                     "content": " ".join(rng.choices(vocabulary, k=rng.randint(5, 60)))} for i in range(turns)]
        result.append(messages)
    return result


def timed(backend, prompts, settings) -> tuple[float, int]:
    started = time.perf_counter()
    replies = backend.generate(prompts, n=1, settings=settings)
    seconds = time.perf_counter() - started
    assert len(replies) == len(prompts)
    return seconds, len(prompts) * settings.max_new_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--model-dir", help="a trained model directory (default: build a random one)")
    parser.add_argument("--prompts", type=int, help="prompts generated in batches (default 128 cpu, 2048 cuda)")
    parser.add_argument("--loop-prompts", type=int, help="prompts generated one at a time (default 16 cpu, 32 cuda)")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens generated per reply (default 64)")
    parser.add_argument("--batch-size", type=int, help="rows per batch (default: the backend's, 32 cpu, 256 cuda)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from training.generation import SamplingSettings
    from training.generation.local import TransformersBackend

    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    if args.threads:
        torch.set_num_threads(args.threads)
    prompts_count = args.prompts or (2048 if cuda else 128)
    loop_count = args.loop_prompts or (32 if cuda else 16)

    with tempfile.TemporaryDirectory() as scratch:
        model_dir = args.model_dir
        if not model_dir:
            model_dir = str(Path(scratch) / "model")
            started = time.perf_counter()
            model_build(Path(model_dir), device=args.device, seed=args.seed)
            print(f"built a random model in {time.perf_counter() - started:.1f} s")
        settings = SamplingSettings(temperature=1.0, top_p=0.95, max_new_tokens=args.new_tokens, seed=args.seed)
        options = {"device": args.device, "min_new_tokens": args.new_tokens}
        batched = TransformersBackend(model_dir, batch_size=args.batch_size, **options)
        single = TransformersBackend(model_dir, batch_size=1, **options)
        loaded = batched.load()
        prompts = conversations(prompts_count, seed=args.seed)
        loop_prompts = prompts[:loop_count]

        parameters = sum(p.numel() for p in loaded.model.parameters())
        config = loaded.model.config
        print(f"model: {model_dir}: {parameters / 1e6:.1f}M parameters, {config.n_layer} layers, {config.n_head} heads, "
              f"width {config.n_embd}, vocab {config.vocab_size}")
        print(f"device {batched.device}, dtype {batched.describe()['dtype']}, compiled decoding {batched.compile}, "
              f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        prompt_tokens = [len(ids) for ids in batched._prompt_ids(loaded, prompts, settings)]
        print(f"{prompts_count} prompts of {min(prompt_tokens)}-{max(prompt_tokens)} tokens "
              f"(mean {sum(prompt_tokens) / len(prompt_tokens):.0f}), {args.new_tokens} new tokens each, "
              f"temperature {settings.temperature}, top_p {settings.top_p}")

        # Warm up both paths (and, on a GPU, compile every shape the timed run will see).
        warm = prompts if cuda else prompts[:batched.batch_size]
        batched.generate(warm, n=1, settings=settings)
        single.generate(loop_prompts[:2], n=1, settings=settings)

        seconds, tokens = timed(batched, prompts, settings)
        batched_rate = tokens / seconds
        print(f"batched (batch_size {batched.batch_size}): {tokens} tokens in {seconds:.2f} s = "
              f"{batched_rate:,.0f} tokens/s")
        seconds, tokens = 0.0, 0
        for conversation in loop_prompts:
            took, count = timed(single, [conversation], settings)
            seconds, tokens = seconds + took, tokens + count
        single_rate = tokens / seconds
        print(f"one at a time: {tokens} tokens in {seconds:.2f} s = {single_rate:,.0f} tokens/s")
        print(f"ratio batched / one at a time: {batched_rate / single_rate:.1f}x")


if __name__ == "__main__":
    main()
