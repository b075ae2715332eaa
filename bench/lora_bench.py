"""Compare full fine-tuning and LoRA SFT: seconds per step and peak RSS, each in its own child process.

Each variant runs as the worker runs a stage: `training.trainers.run` as a child process on a spec (the
sft stage, no held-out evaluation), the one with `"adapter": null`, the other with a LoRA adapter (r 16
on every linear layer unless --r says otherwise). A child per variant because a process's peak RSS only
grows: measured in one process, the second variant would report the first's peak. Two peaks per child
(see WATCH): while training (its VmHWM, polled, at the last step's progress event) and of the whole child
(its ru_maxrss), which adds the save and, for LoRA, the base loaded again to write the merged copy.
Seconds per step run from the progress event of step --warmup to the last step's, the trainer logging
every step; start-up, model load and save are outside that window, in the child's wall time.

The base is built from scratch at a preset's shape (tiny, small: the platform's own tokenizer and chat
template), or adopted from a local model directory through the base stage, as a round would (it gives
the model a pad token apart from EOS); SmolLM2-135M-Instruct converted by `manage.py base_convert` is
one (--model /path/to/smollm2). An adopted ChatML template without {% generation %} markers gets them
(marked_assistant_turns), and the weights are rewritten in float32 unless --keep-dtype (float32_copy).
The chats are short questions and answers of made-up words, cut at --max-length tokens, at batch
--batch: about the issue's "batch 8 of rows up to 64 tokens" by default.

    .venv/bin/python bench/lora_bench.py                               # the tiny and small shapes
    .venv/bin/python bench/lora_bench.py --model /tmp/smol-data/base-models/smollm2 --steps 8 --warmup 2
    .venv/bin/python bench/lora_bench.py --shape small --repeat 2      # full, LoRA, full, LoRA

Prints one JSON line per child, then a table with the LoRA / full ratios. Run `uptime` first: the ratios
compare children of one run on the same machine, the absolute figures only the load of that moment.
"""

import argparse
import json
import math
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

VARIANTS = ("full", "lora")

# Run argv[2:] in a child and write its peaks to argv[1]: this small process forks it, because a child's
# ru_maxrss counts what it held before exec, and forked from this bench (torch and models loaded) every
# trainer read 1139 MiB. The peak while training is the child's VmHWM (reset at exec), polled with the time;
# the whole child's is its ru_maxrss (KiB on Linux) from wait4 on that one child.
WATCH = """
import json, os, sys, time
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
samples = []
while True:
    done, status, usage = os.wait4(pid, os.WNOHANG)
    if done:
        break
    try:
        samples.append((time.time(), next(int(line.split()[1]) for line in open(f"/proc/{pid}/status")
                                          if line.startswith("VmHWM:"))))
    except (OSError, StopIteration):
        pass
    time.sleep(0.1)
with open(sys.argv[1], "w") as out:
    json.dump({"status": os.waitstatus_to_exitcode(status), "maxrss_kib": usage.ru_maxrss, "samples": samples}, out)
"""


def chats(rows: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(800)]

    def sentence(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    return [{"messages": [{"role": "user", "content": sentence(rng.randint(4, 12))},
                          {"role": "assistant", "content": sentence(rng.randint(8, 40))}]} for _ in range(rows)]


def run_child(stage: str, work: Path, *, base_model: Path, train: Path | None, preset: str, config: dict) -> dict:
    """Run one stage in a child of its own; return its progress events, wall time and peak RSS (MiB)."""
    work.mkdir(parents=True)
    spec_path = spec_write(work, stage=stage, train=train, base_model=base_model, preset=preset, config=config)
    if train is None:  # adopting trains on nothing
        spec = json.loads(spec_path.read_text())
        spec_path.write_text(json.dumps({**spec, "data": {"train": None, "eval": None}}))
    started = time.monotonic()
    watched = work / "watched.json"
    with open(work / "stage.log", "wb") as log:
        subprocess.run([sys.executable, "-c", WATCH, str(watched), *child_command(str(spec_path))], cwd=ROOT,
                       stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.monotonic() - started
    watch = json.loads(watched.read_text())
    events = [json.loads(line) for line in (work / "progress.jsonl").read_text().splitlines() if line.strip()]
    if watch["status"] != 0 or not any(e["event"] == "done" for e in events):
        raise RuntimeError(f"{stage} failed (exit {watch['status']}):\n"
                           + (work / "stage.log").read_text(errors="replace")[-3000:])
    shutil.rmtree(work / "work", ignore_errors=True)  # checkpoints with optimizer state
    trained_at = max((e["time"] for e in events if e["event"] == "progress"), default=0.0)
    training = max((kib for at, kib in watch["samples"] if at <= trained_at), default=0)
    return {"events": events, "wall_s": wall, "peak_rss_mib": watch["maxrss_kib"] / 1024,
            "training_peak_rss_mib": training / 1024}


def figures(result: dict, *, warmup: int) -> dict:
    steps = {e["step"]: e["time"] for e in result["events"] if e["event"] == "progress" and e["metrics"]}
    last = max(steps)
    start = next(e for e in result["events"] if e["event"] == "start")
    return {"steps": last - warmup, "s_per_step": round((steps[last] - steps[warmup]) / (last - warmup), 4),
            "training_peak_rss_mib": round(result["training_peak_rss_mib"]),
            "peak_rss_mib": round(result["peak_rss_mib"]), "wall_s": round(result["wall_s"], 1),
            "adapter": bool(start.get("adapter"))}


def scratch_base(folder: Path, shape_preset: str, rows: list[dict]) -> Path:
    from training.trainers.scratch import gpt_from_config, tokenizer_train

    shape = stage_config("base", shape_preset)
    texts = [m["content"] for row in rows for m in row["messages"]]
    tokenizer = tokenizer_train(texts, vocab_size=shape["vocab_size"])
    model = gpt_from_config(tokenizer, layers=shape["layers"], heads=shape["heads"], width=shape["width"],
                            context=shape["context"], attn_implementation="sdpa")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# ChatML (SmolLM2's format) with its assistant turns marked for TRL's assistant_only_loss.
CHATML_MARKED = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\\n' }}{% else %}{{ message['content'] + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def marked_assistant_turns(model_dir: Path) -> Path:
    """Give an adopted ChatML model a template whose assistant turns are marked, where it has none.

    The base stage keeps a template that has the word "generation" anywhere, and SmolLM2's has it only in
    `add_generation_prompt`, so SFT's assistant-only loss would refuse it: the bench marks the turns itself.
    """
    template = model_dir / "chat_template.jinja"
    if template.exists() and "{% generation %}" not in template.read_text() and "<|im_start|>" in template.read_text():
        template.write_text(CHATML_MARKED)
    return model_dir


def float32_copy(model_dir: Path) -> Path:
    """Rewrite an adopted model's weights in float32 (a converted GGUF is saved in bf16).

    The stages train in the dtype a model was saved in, and a CPU without bf16 instructions multiplies
    bf16 matrices about 100 times slower than float32 (8 ms against 800 ms for 512x576 by 576x1536 here):
    SmolLM2's full fine-tune took 85 s a step in bf16. --keep-dtype measures it as saved.
    """
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if model.dtype != torch.float32 or any(p.dtype != torch.float32 for p in model.parameters()):
        raise RuntimeError(f"{model_dir} did not load in float32")
    model.save_pretrained(model_dir)
    return model_dir


def parameters(model_dir: Path) -> int:
    """Count the weights saved in a model directory, from the safetensors headers (tied ones are saved once)."""
    from safetensors import safe_open

    count = 0
    for path in model_dir.glob("*.safetensors"):
        with safe_open(path, "pt") as weights:
            count += sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())
    return count


def bench(name: str, base: Path, tmp: Path, data: Path, args) -> list[dict]:
    config = {"max_steps": args.steps, "logging_steps": 1, "save_every": 10**6, "learning_rate": 1e-4,
              "per_device_train_batch_size": args.batch, "gradient_accumulation_steps": 1,
              "max_length": args.max_length, "min_train_rows": 1}
    adapters = {"full": None, "lora": {"type": "lora", "r": args.r, "alpha": 2.0 * args.r, "dropout": 0.05}}
    results = []
    for repeat in range(args.repeat):
        for variant in VARIANTS:
            result = run_child("sft", tmp / f"{name}-{variant}-{repeat}", base_model=base, train=data,
                               preset="small", config={**config, "adapter": adapters[variant]})
            row = {"model": name, "variant": variant, "repeat": repeat, **figures(result, warmup=args.warmup)}
            print(json.dumps(row), flush=True)
            results.append(row)
            shutil.rmtree(tmp / f"{name}-{variant}-{repeat}" / "model", ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", nargs="*", choices=("tiny", "small", "demo", "gpu"), default=None,
                        help="GPT shapes built from scratch (default: tiny and small, unless --model is given)")
    parser.add_argument("--model", nargs="*", default=[],
                        help="local model directories, adopted through the base stage")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5, help="steps before the timed window")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--r", type=int, default=16, help="the LoRA rank (alpha is twice it)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each variant, alternating")
    parser.add_argument("--keep-dtype", action="store_true",
                        help="train an adopted model in the dtype it was saved in, not float32")
    args = parser.parse_args()
    shapes = args.shape if args.shape is not None else ([] if args.model else ["tiny", "small"])
    rows = chats(max(400, args.batch * args.steps))
    results = []
    with tempfile.TemporaryDirectory(prefix="lora-bench-") as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "sft-train.jsonl"
        data.write_text("".join(json.dumps(row) + "\n" for row in rows))
        bases = [(shape, scratch_base(tmp / f"base-{shape}", shape, rows)) for shape in shapes]
        for model in args.model:
            adopted = run_child("base", tmp / f"adopt-{Path(model).name}", base_model=Path(model), train=None,
                                preset="small", config={})
            folder = marked_assistant_turns(Path(adopted["events"][-1]["out_dir"]))
            bases.append((Path(model).name, folder if args.keep_dtype else float32_copy(folder)))
        for name, base in bases:
            print(json.dumps({"model": name, "parameters": parameters(base)}), flush=True)
            results += bench(name, base, tmp, data, args)

    print(f"\n{'model':<12}{'variant':<9}{'s/step':>9}{'training peak MiB':>19}{'child peak MiB':>16}{'wall s':>9}")
    for row in results:
        print(f"{row['model']:<12}{row['variant']:<9}{row['s_per_step']:>9.4f}{row['training_peak_rss_mib']:>19}"
              f"{row['peak_rss_mib']:>16}{row['wall_s']:>9.1f}")
    # Seconds per step: the fastest run of each variant (the one a busy machine disturbed least) and each
    # adjacent pair; peak RSS does not depend on the load: its mean.
    print("\nLoRA / full:")
    for name in dict.fromkeys(r["model"] for r in results):
        rows = {variant: [r for r in results if r["model"] == name and r["variant"] == variant] for variant in VARIANTS}
        fastest = min(r["s_per_step"] for r in rows["lora"]) / min(r["s_per_step"] for r in rows["full"])
        pairs = [lora["s_per_step"] / full["s_per_step"] for full, lora in zip(rows["full"], rows["lora"])]

        def memory(key):
            return sum(r[key] for r in rows["lora"]) / sum(r[key] for r in rows["full"])

        print(f"  {name}: s/step {fastest:.2f} (fastest of each; pairs {', '.join(f'{p:.2f}' for p in pairs)}), "
              f"peak RSS while training {memory('training_peak_rss_mib'):.2f}, "
              f"child's peak RSS {memory('peak_rss_mib'):.2f}")

if __name__ == "__main__":
    main()
