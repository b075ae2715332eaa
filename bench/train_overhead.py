"""Time the platform's SFT and reward stages against a bare TRL script on the same model, data and config.

Both sides run as child processes, so both pay for starting Python, importing torch and TRL, and
loading the model:
  platform     `training.trainers.launch.child_command(spec)` with "eval": null (held-out
               evaluation, which the bare script does not do, is not timed), started as the worker
               starts it; the bench waits for it to exit.
  platform+db  the same child, with the worker's own loop beside it: every second, read the new
               progress lines and write them into a real PostgreSQL with `supervisor._Watch` (one stage
               update and one bulk insert of metric points per poll), and check for a cancel.
               Skipped, with a note, when no database can be reached.
  bare         a minimal TRL script (BARE_SCRIPT below): the same model and tokenizer from the same
               directory, the JSONL through `datasets.load_dataset`, `SFTTrainer(assistant_only_loss=True)`
               or `RewardTrainer` with the same TrainingArguments values, then `save_model`, as
               every training script ends (the platform saves its finished model too).
The base model (a GPT of about 10M parameters on a BPE tokenizer with the platform's chat template)
and the data (multi-turn arithmetic chats, preference pairs of a right and a wrong sum) are built
once into a temporary folder. Rounds interleave the variants and rotate which goes first.

Both sides run with the same OMP_NUM_THREADS (--threads, default 1): on a CPU shared with other
jobs, torch's spinning threads made 2 threads 2.5x slower per step than 1, and far noisier.

Printed per run: wall seconds, the Trainer's own train_runtime (steps plus checkpoint saves, the
same clock on both sides), seconds per step, and start-up = wall - train_runtime; then per stage
the ratio platform/bare for each round and the median.

    .venv/bin/python bench/train_overhead.py --rounds 3 --max-steps 20
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_overhead .venv/bin/python bench/train_overhead.py

The database is DATABASE_URL (created and migrated when missing), else
postgres://postgres@127.0.0.1:5432/bench_overhead; `--no-db` times the child alone instead, and
`--child-alone` adds the child alone as a third variant beside platform+db.
"""

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

from training.trainers.config import stage_config  # noqa: E402
from training.trainers.launch import child_command, spec_write  # noqa: E402

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/bench_overhead"
STAGES = ("sft", "reward")

BARE_SCRIPT = r'''
"""A bare TRL run: load, train, save. Argument: a JSON file of the values to use."""
import json, sys
spec = json.load(open(sys.argv[1]))
from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
from trl import RewardConfig, RewardTrainer, SFTConfig, SFTTrainer

c = spec["config"]
args = dict(
    output_dir=spec["work_dir"], learning_rate=c["learning_rate"], num_train_epochs=c["num_train_epochs"],
    max_steps=c["max_steps"], per_device_train_batch_size=c["per_device_train_batch_size"],
    per_device_eval_batch_size=c["per_device_eval_batch_size"],
    gradient_accumulation_steps=c["gradient_accumulation_steps"], logging_steps=c["logging_steps"],
    save_strategy="steps", save_steps=c["save_every"], save_total_limit=c["save_total_limit"],
    weight_decay=c["weight_decay"], warmup_steps=c["warmup_steps"], lr_scheduler_type=c["lr_scheduler_type"],
    optim="adamw_torch", bf16=False, use_cpu=True, seed=c["seed_offset"], report_to=[], disable_tqdm=True,
    dataloader_num_workers=0, max_length=c["max_length"],
)
tokenizer = AutoTokenizer.from_pretrained(spec["model"])
dataset = load_dataset("json", data_files=spec["train"], split="train", keep_in_memory=True)
if spec["stage"] == "sft":
    model = AutoModelForCausalLM.from_pretrained(spec["model"], attn_implementation=c["attn_implementation"])
    trainer = SFTTrainer(model=model, args=SFTConfig(**args, assistant_only_loss=True, packing=False),
                         train_dataset=dataset, processing_class=tokenizer)
else:
    model = AutoModelForSequenceClassification.from_pretrained(
        spec["model"], num_labels=1, attn_implementation=c["attn_implementation"])
    trainer = RewardTrainer(model=model, args=RewardConfig(**args), train_dataset=dataset, processing_class=tokenizer)
result = trainer.train()
trainer.save_model(spec["out_dir"])
print("BARE_RESULT " + json.dumps(result.metrics))
'''


def child_env(tmp: Path, threads: int) -> dict:
    """The environment the worker gives a stage's child (supervisor._child_env), used for both sides."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp / "hf-datasets")}
    env.pop("DATABASE_URL", None)  # the child never touches the database
    return env


# ---------------------------------------------------------------------------------------------
# Data and base model, built once


def arithmetic_chat(rng: random.Random, turns: int) -> list[dict]:
    messages = []
    for _ in range(turns):
        a, b = rng.randrange(1000), rng.randrange(1000)
        messages.append({"role": "user", "content": f"What is {a} plus {b}? Please show the sum."})
        messages.append({"role": "assistant", "content": f"{a} plus {b} is {a + b}, so the answer is {a + b}."})
    return messages


def build(tmp: Path, *, rows: int, width: int, layers: int, vocab: int, context: int) -> tuple[Path, dict, int]:
    """Write the SFT and preference JSONL and a base model directory; return (model dir, files, parameters)."""
    rng = random.Random(0)
    files = {"sft": tmp / "sft-train.jsonl", "reward": tmp / "preference-train.jsonl"}
    with open(files["sft"], "w") as f:
        for _ in range(rows):
            f.write(json.dumps({"messages": arithmetic_chat(rng, rng.randrange(1, 3))}) + "\n")
    with open(files["reward"], "w") as f:
        for _ in range(rows):
            history = arithmetic_chat(rng, rng.randrange(0, 2))
            a, b = rng.randrange(1000), rng.randrange(1000)
            wrong = a + b + rng.choice((-10, -1, 1, 10, 100))
            f.write(json.dumps({
                "prompt": history + [{"role": "user", "content": f"What is {a} plus {b}? Please show the sum."}],
                "chosen": [{"role": "assistant", "content": f"{a} plus {b} is {a + b}, so the answer is {a + b}."}],
                "rejected": [{"role": "assistant", "content": f"{a} plus {b} is {wrong}, so the answer is {wrong}."}],
            }) + "\n")

    from datasets import load_dataset

    from training.trainers.scratch import gpt_from_config, tokenizer_train
    from training.trainers.data import texts_of

    # Numbers up to 1998 and a few words: enough distinct pieces for the BPE to fill most of `vocab`.
    texts = [*texts_of(files["sft"]), *texts_of(files["reward"]),
             *(f"{n} {n * 7} {n * 13}" for n in range(20000))]
    tokenizer = tokenizer_train(texts, vocab_size=vocab)
    model = gpt_from_config(tokenizer, layers=layers, heads=width // 64, width=width, context=context,
                            attn_implementation="sdpa")
    model_dir = tmp / "base-model"
    # As the base stage leaves it: weights, and the tokenizer with its chat template ({% generation %} marks).
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    parameters = sum(p.numel() for p in model.parameters())
    os.environ["HF_DATASETS_CACHE"] = str(tmp / "hf-datasets")
    for path in files.values():  # the bare script's load_dataset then finds its Arrow files prepared
        load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp / "hf-datasets"))
    return model_dir, files, parameters


# ---------------------------------------------------------------------------------------------
# The database side (the worker's loop), when a PostgreSQL is at hand


class Database:
    """Django on a real PostgreSQL, with a project and a run whose stages the worker loop writes to."""

    def __init__(self, url: str):
        self.url = url
        _create_database(url)
        os.environ["DATABASE_URL"] = url
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_config.settings")
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command

        from annotate.services import accounts
        from training.models import TrainingRun

        call_command("migrate", verbosity=0)
        user = get_user_model().objects.create_user(f"bench-overhead-{time.time_ns()}", is_staff=True)
        project = accounts.project_create(name=f"train overhead {time.time_ns()}", created_by=user)
        self.run = TrainingRun.objects.create(project=project, number=1, preset="small", status="running")
        self.orders = 0

    def stage(self, name: str):
        from training.models import RunStage

        self.orders += 1
        return RunStage.objects.create(run=self.run, order=self.orders, name=name)


def _create_database(url: str) -> None:
    parts = urlparse(url)
    name = parts.path.lstrip("/")
    args = ["-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432), "-U", parts.username or "postgres"]
    exists = subprocess.run(["psql", *args, "-d", "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname='{name}'"],
                            capture_output=True, text=True, timeout=30)
    if exists.returncode != 0:
        raise RuntimeError(exists.stderr.strip())
    if exists.stdout.strip() != "1":
        subprocess.run(["createdb", *args, name], check=True, timeout=30)


# ---------------------------------------------------------------------------------------------
# One timed run of each side


def run_platform(stage: str, tmp: Path, model_dir: Path, data: Path, config: dict, env: dict, *, tag: str,
                 db: Database | None = None) -> dict:
    """Run the stage as the worker does; with `db`, also do the worker's database writes as it runs."""
    work = tmp / f"platform-{stage}-{tag}"
    work.mkdir()
    spec_path = spec_write(work, stage=stage, train=data, base_model=model_dir, preset="small", config=config)
    progress = work / "progress.jsonl"
    db_seconds, polls = 0.0, 0
    if db is not None:
        from training.models import RunStage, TrainingRun
        from training.services.supervisor import _ProgressReader, _Watch

        row = db.stage(stage)
        reader, watch = _ProgressReader(progress, 0), _Watch(row)
    with open(work / "stage.log", "wb") as log:
        started = time.perf_counter()
        child = subprocess.Popen(child_command(str(spec_path)), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                 env=env, start_new_session=True)
        if db is None:
            child.wait()
        else:
            while True:
                exit_code = child.poll()
                t = time.perf_counter()
                watch.apply(reader.read())
                TrainingRun.objects.filter(id=db.run.id, cancel_requested=True).exists()
                db_seconds += time.perf_counter() - t
                polls += 1
                if exit_code is not None:
                    break
                try:  # the worker's time.sleep(1), cut short when the child exits
                    child.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    pass
            t = time.perf_counter()
            watch.apply(reader.read())
            db_seconds += time.perf_counter() - t
        wall = time.perf_counter() - started
    events = [json.loads(line) for line in progress.read_text().splitlines() if line.strip()]
    finished = next((e for e in events if e["event"] == "done"), None)
    if child.returncode != 0 or finished is None:
        raise RuntimeError(f"platform {stage} failed (exit {child.returncode}); see {work / 'stage.log'}")
    result = _figures(wall, finished["metrics"])
    shutil.rmtree(work / "work")  # checkpoints with optimizer state: over 100 MB a run
    shutil.rmtree(work / "model")
    if db is not None:
        points = RunStage.objects.get(pk=row.pk).points.count()
        result.update(db_s=db_seconds, polls=polls, points=points)
    return result


def run_bare(stage: str, tmp: Path, model_dir: Path, data: Path, config: dict, env: dict, *, tag: str) -> dict:
    work = tmp / f"bare-{stage}-{tag}"
    work.mkdir()
    spec_path = work / "bare.json"
    spec_path.write_text(json.dumps({"stage": stage, "model": str(model_dir), "train": str(data),
                                     "work_dir": str(work / "work"), "out_dir": str(work / "model"),
                                     "config": config}))
    with open(work / "stage.log", "wb") as log:
        started = time.perf_counter()
        child = subprocess.run([sys.executable, str(tmp / "bare_trl.py"), str(spec_path)], cwd=work,
                               stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True)
        wall = time.perf_counter() - started
    lines = [line for line in child.stdout.decode().splitlines() if line.startswith("BARE_RESULT ")]
    if child.returncode != 0 or not lines:
        raise RuntimeError(f"bare {stage} failed (exit {child.returncode}); see {work / 'stage.log'}")
    shutil.rmtree(work / "work")
    shutil.rmtree(work / "model")
    return _figures(wall, json.loads(lines[-1].split(" ", 1)[1]))


def _figures(wall: float, metrics: dict) -> dict:
    runtime = float(metrics["train_runtime"])
    return {"wall_s": wall, "train_runtime_s": runtime, "startup_s": wall - runtime}


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--save-every", type=int, default=10,
                        help="optimizer steps between checkpoints (both sides save the same ones)")
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--no-db", action="store_true", help="time the child alone; no database writes")
    parser.add_argument("--child-alone", action="store_true",
                        help="with a database, also time the child alone (a third variant per stage)")
    parser.add_argument("--threads", type=int, default=1,
                        help="OMP_NUM_THREADS for both sides: on a CPU shared with other jobs, torch's spinning "
                             "threads make 2 slower than 1, and noisier")
    opts = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="train-overhead-"))
    (tmp / "bare_trl.py").write_text(BARE_SCRIPT)
    print(f"building data and base model in {tmp} ...", flush=True)
    model_dir, files, parameters = build(tmp, rows=opts.rows, width=opts.width, layers=opts.layers,
                                         vocab=opts.vocab, context=max(opts.max_length, 256))
    print(f"model: {parameters / 1e6:.1f}M parameters ({opts.layers} layers, width {opts.width}); "
          f"{opts.rows} rows per stage; max_steps {opts.max_steps}, batch {opts.batch}, "
          f"max_length {opts.max_length}, logging every step, checkpoint every {opts.save_every} steps")

    db = None
    if not opts.no_db:
        url = os.environ.get("DATABASE_URL") or DEFAULT_DB
        try:
            db = Database(url)
            print(f"database side: worker loop writing into {url}")
        except Exception as error:  # a bench without a database still times the child
            print(f"no database ({type(error).__name__}: {error}); timing the child alone")

    # The "small" preset, made short and logging every step; the bare script gets these same values.
    overrides = {"max_steps": opts.max_steps, "per_device_train_batch_size": opts.batch,
                 "gradient_accumulation_steps": 1, "max_length": opts.max_length, "logging_steps": 1,
                 "save_every": opts.save_every}
    configs = {stage: stage_config(stage, "small", overrides) for stage in opts.stages}
    env = child_env(tmp, opts.threads)
    variants = ["platform+db", "bare"] + (["platform"] if opts.child_alone else []) if db else ["platform", "bare"]
    results = {(stage, v): [] for stage in opts.stages for v in variants}
    for round_number in range(opts.rounds):
        shift = round_number % len(variants)
        order = variants[shift:] + variants[:shift]  # rotate which side goes first
        for stage in opts.stages:
            for variant in order:
                tag = f"r{round_number}"
                if variant == "bare":
                    r = run_bare(stage, tmp, model_dir, files[stage], configs[stage], env, tag=tag)
                else:
                    r = run_platform(stage, tmp, model_dir, files[stage], overrides, env,
                                     tag=tag + ("-db" if variant == "platform+db" else ""),
                                     db=db if variant == "platform+db" else None)
                results[(stage, variant)].append(r)
                extra = (f"  db {r['db_s']:.2f}s over {r['polls']} polls, {r['points']} points"
                         if "db_s" in r else "")
                print(f"round {round_number + 1} {stage:6s} {variant:11s} wall {r['wall_s']:6.2f}s  "
                      f"train {r['train_runtime_s']:6.2f}s  {r['train_runtime_s'] / opts.max_steps * 1000:6.0f} ms/step  "
                      f"start-up+save {r['startup_s']:5.2f}s{extra}", flush=True)

    print()
    for stage in opts.stages:
        bare = results[(stage, "bare")]
        for variant in [v for v in variants if v != "bare"]:
            platform = results[(stage, variant)]
            ratios = [p["wall_s"] / b["wall_s"] for p, b in zip(platform, bare)]
            step_ratios = [p["train_runtime_s"] / b["train_runtime_s"] for p, b in zip(platform, bare)]
            print(f"{stage} {variant}/bare per round: " + ", ".join(
                f"{p['wall_s']:.2f}/{b['wall_s']:.2f} = {x:.3f}" for p, b, x in zip(platform, bare, ratios)))
            print(f"  median wall ratio {statistics.median(ratios):.3f}; "
                  f"median train-loop ratio {statistics.median(step_ratios):.3f}; "
                  f"s/step {variant} {statistics.median(p['train_runtime_s'] for p in platform) / opts.max_steps:.3f} "
                  f"vs bare {statistics.median(b['train_runtime_s'] for b in bare) / opts.max_steps:.3f}; "
                  f"outside the loop {variant} {statistics.median(p['startup_s'] for p in platform):.2f}s "
                  f"vs bare {statistics.median(b['startup_s'] for b in bare):.2f}s")
    print(f"\n(files kept in {tmp})")


if __name__ == "__main__":
    main()
