"""Measure the platform's SFT and reward stages at the gpu preset: non-padding tokens/s, MFU and steps/s.

Each stage runs as the worker runs it: `training.trainers.run` as a child process on a spec (preset
"gpu", held-out evaluation off), on a base model built from scratch at the gpu preset's shape (GPT-2
small: 12 layers, width 768, vocab 8192, about 88M parameters) with the platform's own tokenizer and
chat template. The data is the bare-TRL anchor's (shared/anchors/gpu_trl_anchor.py): chats of a
10 to 60 word question and a 30 to 300 word reply, and preference pairs of two 20 to 200 word replies,
drawn from 3000 made-up words, so the two sets of figures compare.

The figures come from the child's progress file: TRL logs `num_tokens` (the attention mask summed,
so padding is not counted) at each logging step, and the progress event carries the wall time it
was written at, after the logging step's own synchronisation with the GPU. The timed window runs
from the logging step at --warmup (torch.compile and the allocator settle before it) to the last
step. MFU = 6 x parameters x tokens/s / 989e12 (the H100 SXM's dense bf16 peak).

    .venv/bin/python bench/gpu_throughput.py                  # on a GPU: 60 steps, timed from step 10
    .venv/bin/python bench/gpu_throughput.py --tiny           # a tiny model, a few steps: on CPU, so it cannot rot
    python3 bench/gpu_throughput.py --config '{"per_device_train_batch_size": 128}'   # a preset override

Without CUDA it runs at the tiny shape whatever is asked. Prints one JSON line per stage, then a table.

Seen on an H100 (torch 2.11, transformers 5.17, TRL 1.12), `--steps 40 --warmup 10`: SFT 159k non-padding
tokens/s, 8.5% of peak, 6.4 steps/s (the first two steps, compiling, took 124 s); in the same session the
anchor's defaults (batch 32, no compile, counting non-padding tokens) gave SFT 68k tokens/s (3.6%) and
reward 88k (4.7%). The issue's target is 40%.
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from training.trainers.config import stage_config  # noqa: E402
from training.trainers.launch import child_command, spec_write  # noqa: E402

PEAK = 989e12  # H100 SXM, dense bf16
STAGES = ("sft", "reward")


def sentences(rows: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Return the SFT chats and the preference pairs, as the anchor draws them."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(3000)]

    def sent(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    chats = [{"messages": [{"role": "user", "content": sent(rng.randint(10, 60))},
                           {"role": "assistant", "content": sent(rng.randint(30, 300))}]} for _ in range(rows)]
    pairs = [{"prompt": [{"role": "user", "content": sent(rng.randint(10, 60))}],
              "chosen": [{"role": "assistant", "content": sent(rng.randint(20, 200))}],
              "rejected": [{"role": "assistant", "content": sent(rng.randint(20, 200))}]} for _ in range(rows)]
    return chats, pairs


def build(tmp: Path, *, rows: int, shape: dict) -> tuple[Path, dict, int, int]:
    """Write the two JSONL files and a base model directory; return (model dir, files, parameters, vocab).

    The vocabulary is what the BPE learns from the data, at most shape["vocab_size"]: 3000 words
    fill about 3.3k of 8192, as in the anchor, so the model has about 88M parameters."""
    from training.trainers.scratch import gpt_from_config, tokenizer_train
    from training.trainers.data import texts_of

    chats, pairs = sentences(rows)
    files = {"sft": tmp / "sft-train.jsonl", "reward": tmp / "preference-train.jsonl"}
    for stage, data in (("sft", chats), ("reward", pairs)):
        files[stage].write_text("".join(json.dumps(row) + "\n" for row in data))
    tokenizer = tokenizer_train(texts_of(files["sft"]), vocab_size=shape["vocab_size"])
    model = gpt_from_config(tokenizer, layers=shape["layers"], heads=shape["heads"], width=shape["width"],
                            context=shape["context"], attn_implementation="sdpa")
    model_dir = tmp / "base-model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model_dir, files, sum(p.numel() for p in model.parameters()), model.config.vocab_size


def run_stage(stage: str, tmp: Path, model_dir: Path, data: Path, config: dict, *, tag: str) -> list[dict]:
    """Run one stage as the worker does; return its progress events."""
    work = tmp / f"{stage}-{tag}"
    work.mkdir()
    spec_path = spec_write(work, stage=stage, train=data, base_model=model_dir, preset="gpu", config=config)
    progress = work / "progress.jsonl"
    with open(work / "stage.log", "wb") as log:
        child = subprocess.run(child_command(str(spec_path)), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    events = [json.loads(line) for line in progress.read_text().splitlines() if line.strip()]
    if child.returncode != 0 or not any(e["event"] == "done" for e in events):
        raise RuntimeError(f"{stage} failed (exit {child.returncode}):\n"
                           + (work / "stage.log").read_text(errors="replace")[-3000:])
    shutil.rmtree(work / "work", ignore_errors=True)  # checkpoints with optimizer state
    return events


def figures(events: list[dict], *, warmup: int, parameters: int) -> dict:
    """Non-padding tokens/s, MFU and steps/s between the logging step at `warmup` and the last one."""
    logged = {e["step"]: e for e in events if e["event"] == "progress" and "num_tokens" in e["metrics"]}
    last = max(logged)
    first, end = logged[warmup], logged[last]
    seconds = end["time"] - first["time"]
    tokens = end["metrics"]["num_tokens"] - first["metrics"]["num_tokens"]
    start = next(e for e in events if e["event"] == "start")
    return {"steps": last - warmup, "seconds": round(seconds, 3), "tokens": int(tokens),
            "tokens_per_s": round(tokens / seconds), "mfu": round(6 * parameters * tokens / seconds / PEAK, 4),
            "steps_per_s": round((last - warmup) / seconds, 2),
            "tokens_per_step": round(tokens / (last - warmup)),
            "warmup_s": round(first["time"] - start["time"], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per stage")
    parser.add_argument("--warmup", type=int, default=10,
                        help="steps before the timed window; also the logging interval, so --steps divides by it")
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--config", default="{}", help="JSON overrides of the gpu preset, for every stage")
    parser.add_argument("--tiny", action="store_true", help="a tiny model and a few steps (the default without CUDA)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, models)")
    opts = parser.parse_args()

    import torch

    tiny = opts.tiny or not torch.cuda.is_available()
    # All weights, as the MFU formula counts: the gpu preset's 88M model is over the adapter rule's 50M (stages.py).
    overrides = {"adapter": None, **json.loads(opts.config)}
    if tiny:
        opts.steps, opts.warmup, opts.rows = min(opts.steps, 6), min(opts.warmup, 2), min(opts.rows, 64)
        overrides = {"per_device_train_batch_size": 4, "min_train_rows": 4, **overrides}
    if opts.steps % opts.warmup:
        parser.error("--steps must divide by --warmup (the logging interval)")
    shape = stage_config("base", "gpu")
    if tiny:  # as the anchor's CPU mode: 2 layers of width 64, the same vocabulary and context
        shape = {**shape, "layers": 2, "heads": 2, "width": 64}
    tmp = Path(tempfile.mkdtemp(prefix="gpu-throughput-"))
    started = time.perf_counter()
    model_dir, files, parameters, vocab = build(tmp, rows=opts.rows, shape=shape)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(json.dumps({"what": "setup", "device": device, "parameters": parameters, "layers": shape["layers"],
                      "width": shape["width"], "vocab": vocab, "rows": opts.rows,
                      "build_s": round(time.perf_counter() - started, 1)}), flush=True)

    results = {}
    for stage in opts.stages:
        config = {**overrides, "max_steps": opts.steps, "logging_steps": opts.warmup, "save_every": opts.steps * 10}
        started = time.perf_counter()
        events = run_stage(stage, tmp, model_dir, files[stage], config, tag="run")
        merged = stage_config(stage, "gpu", config)
        results[stage] = {"what": stage, **figures(events, warmup=opts.warmup, parameters=parameters),
                          "batch": merged["per_device_train_batch_size"], "max_length": merged["max_length"],
                          "overrides": overrides, "wall_s": round(time.perf_counter() - started, 1)}
        print(json.dumps(results[stage]), flush=True)

    print(f"\n{'stage':8s} {'tokens/s':>10s} {'MFU':>7s} {'steps/s':>8s} {'tok/step':>9s}  "
          f"(steps {opts.warmup}-{opts.steps}, {parameters / 1e6:.1f}M parameters, {device})")
    for stage, r in results.items():
        print(f"{stage:8s} {r['tokens_per_s']:10d} {r['mfu'] * 100:6.2f}% {r['steps_per_s']:8.2f} "
              f"{r['tokens_per_step']:9d}")
    if opts.keep:
        print(f"(files kept in {tmp})")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
