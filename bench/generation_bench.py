"""Tokens per second of the local generation backend: batched against one prompt at a time.

Both runs go through training.generation's TransformersBackend with the same model, prompts and
settings; only batch_size differs. They alternate (a batch, then a few prompts one at a time, and
so on), so that both meet the same load from other processes; CPU seconds are printed too. Every reply is forced to exactly --new-tokens tokens
(min_new_tokens = max_new_tokens), so an untrained model's early EOS cannot flatter either side.

The model has random weights, in the shape of a preset in training/trainers/config.py, with the final
layer norm's weights multiplied by --logit-scale (default 10): freshly initialised, every next-token
distribution is nearly uniform over the 8192 tokens (entropy 9 nats; top-p 0.95 keeps 7,400 tokens),
which no trained model does; scaled by 10, about 4 nats and a nucleus of a few hundred tokens. The
mean entropy is printed.
  --device cpu   the "small" shape: 6 layers, 4 heads, width 256, vocab 8192, context 512;
  --device cuda  the "gpu" shape (GPT-2 small): 12 layers, 12 heads, width 768, vocab 8192, context 1024,
                 in bf16 with the static cache and compiled decoding; a first untimed pass compiles.
--model-dir takes a trained model directory instead.

    .venv/bin/python bench/generation_bench.py
    .venv/bin/python bench/generation_bench.py --device cuda --prompts 2048 --loop-prompts 32
"""

import argparse
import math
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


def model_build(folder: Path, *, device: str, seed: int, logit_scale: float) -> None:
    """Save a random-weight model of the device's shape, with an 8192-token tokenizer."""
    import torch

    from training.trainers.scratch import gpt_from_config, tokenizer_train

    rng = random.Random(seed)
    vocabulary = words(rng, 30000)
    texts = [" ".join(rng.choices(vocabulary, k=60)) for _ in range(4000)]
    tokenizer = tokenizer_train(texts, vocab_size=VOCAB)
    torch.manual_seed(seed)
    model = gpt_from_config(tokenizer, **SHAPES["cuda" if device.startswith("cuda") else "cpu"])
    with torch.no_grad():
        model.transformer.ln_f.weight.mul_(logit_scale)
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
    """Return the seconds one generate call over `prompts` took, and the tokens it generated."""
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
    parser.add_argument("--logit-scale", type=float, default=10.0,
                        help="multiply the built model's final layer norm weights (default 10; 1: as initialised)")
    args = parser.parse_args()

    import torch

    from training.generation import SamplingSettings
    from training.generation.local import TransformersBackend, prompt_batch

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
            model_build(Path(model_dir), device=args.device, seed=args.seed, logit_scale=args.logit_scale)
            print(f"built a random model in {time.perf_counter() - started:.1f} s")
        settings = SamplingSettings(temperature=1.0, top_p=0.95, max_new_tokens=args.new_tokens, seed=args.seed)
        options = {"device": args.device, "min_new_tokens": args.new_tokens}
        batched = TransformersBackend(model_dir, batch_size=args.batch_size, **options)
        single = TransformersBackend(model_dir, batch_size=1, **options)
        loaded = batched.load()
        prompts = conversations(prompts_count, seed=args.seed)
        loop_prompts = prompts[:loop_count]  # for the warm-up; the timed ones are chosen below

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

        with torch.inference_mode():
            input_ids, attention_mask = prompt_batch(loaded, batched._prompt_ids(loaded, prompts[:8], settings))
            probs = loaded.model(input_ids=input_ids, attention_mask=attention_mask).logits.float().softmax(-1)
            entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)[attention_mask.bool()].mean().item()
        print(f"mean next-token entropy {entropy:.1f} nats (uniform over the vocabulary: "
              f"{math.log(config.vocab_size):.1f})")

        # Warm up both paths (and, on a GPU, compile every shape the timed run will see).
        warm = prompts if cuda else prompts[:batched.batch_size]
        batched.generate(warm, n=1, settings=settings)
        single.generate(loop_prompts[:2], n=1, settings=settings)

        # Interleaved rounds: one batch, then a share of the one-at-a-time prompts, so that both see the
        # same machine (other processes' load shifts over minutes). Prompts are ordered by length, as
        # generate() orders them, and the one-at-a-time ones are spread over all lengths.
        ordered = [prompts[i] for i in sorted(range(len(prompts)), key=lambda i: prompt_tokens[i])]
        batches = [ordered[i:i + batched.batch_size] for i in range(0, len(ordered), batched.batch_size)]
        loop_prompts = ordered[::max(1, len(ordered) // loop_count)][:loop_count]
        shares = [loop_prompts[i::len(batches)] for i in range(len(batches))]
        totals = {"batched": [0.0, 0.0, 0], "one at a time": [0.0, 0.0, 0]}  # wall s, CPU s, tokens
        for batch, share in zip(batches, shares):
            for name, backend, items in (("batched", batched, [batch]), ("one at a time", single, [[c] for c in share])):
                for item in items:
                    cpu = time.process_time()
                    seconds, tokens = timed(backend, item, settings)
                    totals[name][0] += seconds
                    totals[name][1] += time.process_time() - cpu
                    totals[name][2] += tokens
        rates = {}
        for name, (seconds, cpu, tokens) in totals.items():
            rates[name] = tokens / seconds
            label = f"batched (batch_size {batched.batch_size})" if name == "batched" else name
            print(f"{label}: {tokens} tokens in {seconds:.2f} s = {rates[name]:,.0f} tokens/s "
                  f"({tokens / cpu:,.0f} per CPU-second)")
        batched_rate, single_rate = rates["batched"], rates["one at a time"]
        print(f"ratio batched / one at a time: {batched_rate / single_rate:.1f}x")


if __name__ == "__main__":
    main()
