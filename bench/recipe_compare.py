"""Compare the recipes on the demo's round 1: the same annotations, the same base, SFT and reward model, then
each recipe's own stage for several seeds; one table of hidden-check shares, stage times and peak memory.

What runs, in order:
1. The demo project (training.demo.project) in a database of its own, annotated once by the scripted
   annotators as round 1 of `demo_rounds --seed 0` is (seed 1), and its snapshots exported once per kind.
2. The shared stages, once, at the demo preset and seed 1 (a round-1 round's seed): base from scratch,
   SFT from it, the reward model from the SFT model.
3. For every recipe of the registry (training.trainers.stages.RECIPES, or --recipes), the one stage of its
   own: every stage but sft and reward (ppo, rloo, grpo, dpo, kto, ...), started from the shared SFT model
   and handed the shared reward model where it needs one; orpo's starts from the shared base, as a round's
   does. The tuning budget is the same for each: a 2 x 2 grid of its main coefficient (kl_coef of the RL
   stages, beta of dpo, kto and orpo) and its learning rate, each the demo preset's value times
   --grid-factors (0.5 and 2), on seed 0; the point with the best greedy hidden-check share on the tuning
   set (ties: the sampled share) is then fixed for every seed, its seed-0 run among them. The runs
   interleave the recipes (grid point by grid point, then seed by seed), so a change in the machine's load
   falls on all of them alike.

Each stage runs as the worker runs it: `training.trainers.run` on a spec, through launch.child_command, with
the worker's environment (supervisor._child_env), forked by lora_bench's WATCH so that its peak RSS is the
child's own (ru_maxrss). Stage time is the child's wall time, from its start to its saved and evaluated model
(the point where the worker registers the version). Hidden check (training.demo.rounds.hidden_check_scores):
greedy and sampled at T=0.7 (the run's seed) with Wilson 95% intervals, per seed and pooled over the seeds
(sum right / sum asked: the same problems asked again, so the pooled interval is narrower than one model's
would be). The reporting set is the demo's held-out problems (heldout_problems(--heldout), the README's
figures); the tuning set is drawn the same way with another seed, leaving out every prompt of the reporting
set and of the project, so the settings are chosen on problems no reported figure is measured on.
The SFT model is measured the same way (sampled with each seed), and a recipe's gain is its pooled share
minus SFT's.

Everything is kept in --dir (default /tmp/recipe-compare): the platform's data folder (snapshots), each
stage's spec, log, progress and model, and manifest.json, which names the database, the project, the
snapshots and the shared models. Each spec names every setting, resolved from the registry when the run
starts, so that a preset someone edits in the shared checkout while the bench runs cannot change the runs
after it; each run records a digest of training/trainers/, and the table says when it changed between runs.
`--reuse DIR` starts from DIR instead of annotating and training again, exports a data kind a newer stage
reads when DIR has none yet, and takes as it is every run DIR holds whose model trained with the very
settings it would be given now (say --fresh to train them again):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_recipe_compare \\
        .venv/bin/python bench/recipe_compare.py --out /tmp/recipe_compare.json
    .venv/bin/python bench/recipe_compare.py --quick --dir /tmp/recipe-compare-quick   # seed 0, no grid, 100 problems
    .venv/bin/python bench/recipe_compare.py --reuse /tmp/recipe-compare --recipes ppo,dpo,kto

Prints `uptime` first and the 1-minute load average at each stage: the stage times are only as steady as the
machine was. Stage time per recipe is the median over the seeds, with the range. Every child runs with
OMP_NUM_THREADS=--threads (1 by default, as bench/train_overhead.py does): on this 2-core machine shared with
other jobs, the demo's DPO stage took 0.85 s a step in one run and 0.06 s a step minutes later, torch's
threads spinning against everyone else's.
"""

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "platform"), str(ROOT), str(ROOT / "bench")]

from lora_bench import WATCH
from train_overhead import _create_database

from training.trainers.config import stage_config
from training.trainers.launch import child_command
from training.trainers.stages import RECIPES, STAGES

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/bench_recipe_compare"
PRESET = "demo"
SHARED_SEED = 1  # round 1 of `demo_rounds --seed 0`: its annotators' seed and its round's seed
SHARED = ("sft", "reward")  # trained once; every other stage of a recipe is the recipe's own
# The setting each stage is tuned by beside its learning rate: the first of these its settings have.
COEFFICIENTS = ("kl_coef", "beta")
TUNING_SEED = 2027  # the reporting set is heldout_problems' default seed, 2026


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/recipe-compare"), help="where everything is kept")
    parser.add_argument("--reuse", type=Path, help="a --dir of an earlier run: its project, base, SFT and reward model")
    parser.add_argument("--fresh", action="store_true", help="with --reuse, train the recipes' runs again too")
    parser.add_argument("--recipes", help="comma-separated (default: every recipe of the registry)")
    parser.add_argument("--seeds", help="comma-separated (default 0,1,2; --quick: 0)")
    parser.add_argument("--heldout", type=int, help="reporting problems (default 300; --quick: 100)")
    parser.add_argument("--tuning", type=int, default=200, help="tuning problems, disjoint from the reporting ones")
    parser.add_argument("--grid-factors", default="0.5,2", help="the grid: each preset value times these")
    parser.add_argument("--no-grid", action="store_true", help="the preset's values, untuned")
    parser.add_argument("--quick", action="store_true", help="seed 0, no grid, 100 reporting problems")
    parser.add_argument("--config", default="{}", help="settings per stage besides the grid's, as JSON (as for "
                        "manage.py train): '{\"dpo\": {\"loss_type\": [\"sigmoid\", \"sft\"]}}'")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every stage's child (default 1)")
    parser.add_argument("--out", type=Path, help="the figures as JSON (default DIR/recipe_compare.json)")
    args = parser.parse_args()
    folder = (args.reuse or args.dir).resolve()
    try:
        overrides = json.loads(args.config)
    except ValueError as error:
        parser.error(f"--config is not JSON: {error}")
    seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    heldout = args.heldout or (100 if args.quick else 300)
    grid = not (args.quick or args.no_grid)
    factors = [float(f) for f in args.grid_factors.split(",")]
    # Every recipe that trains a policy after SFT (the `sft` recipe stops at SFT, which every recipe here shares).
    names = args.recipes.split(",") if args.recipes else [name for name, r in RECIPES.items() if r.stages != ("sft",)]
    unknown = [name for name in names if name not in RECIPES]
    if unknown:
        parser.error(f"no recipe {', '.join(unknown)} here; the registry has {', '.join(RECIPES)}")
    if grid and 0 not in seeds:
        parser.error("the grid is tuned on seed 0: include it in --seeds")
    uptime = subprocess.run(["uptime"], check=False, capture_output=True, text=True).stdout.strip()
    print(f"uptime: {uptime}  ({os.cpu_count()} CPUs)", flush=True)

    bench = Bench(folder, reuse=args.reuse is not None, fresh=args.fresh, threads=args.threads, overrides=overrides)
    report, tuning = bench.problem_sets(heldout=heldout, tuning=args.tuning if grid else 0)
    print(f"reporting set: {len(report)} held-out problems (heldout_problems, seed 2026); "
          + (f"tuning set: {len(tuning)} more (seed {TUNING_SEED}), none in the reporting set or the project"
             if tuning else "no tuning set"), flush=True)
    sft = bench.sft_measure(report, seeds)
    print(f"sft: greedy {_pct(sft['runs'][0]['report']['greedy'])}, sampled pooled {_pct(sft['pooled']['sampled'])}",
          flush=True)
    recipes = {name: recipe_plan(name, factors if grid else [], overrides) for name in names}
    runs = {name: [] for name in names}
    points = max(len(plan["grid"]) for plan in recipes.values())
    for index in range(points):  # the grid, recipe after recipe at each point
        for name, plan in recipes.items():
            if index < len(plan["grid"]):
                runs[name].append(bench.recipe_run(name, plan["grid"][index], seed=0, report=report, tuning=tuning))
    for name, plan in recipes.items():
        plan["chosen"] = choose(runs[name]) if grid else plan["preset"]
    for seed in seeds:
        for name, plan in recipes.items():
            if not any(r["seed"] == seed and r["values"] == plan["chosen"] for r in runs[name]):
                runs[name].append(bench.recipe_run(name, plan["chosen"], seed=seed, report=report, tuning=[]))

    results = {name: recipe_figures(plan, runs[name], seeds, sft) for name, plan in recipes.items()}
    figures = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "uptime_start": uptime,
        "uptime_end": subprocess.run(["uptime"], check=False, capture_output=True, text=True).stdout.strip(),
        "cpus": os.cpu_count(), "threads": args.threads, "preset": PRESET, "config": overrides, "dir": str(folder), "seeds": seeds,
        "budget": {"grid": grid, "factors": factors if grid else [], "tuned_on_seed": 0 if grid else None,
                   "chosen_by": "greedy hidden-check share on the tuning set (ties: sampled)" if grid else None},
        "sets": {"report": {"n": len(report), "seed": 2026}, "tuning": {"n": len(tuning), "seed": TUNING_SEED}},
        "shared": bench.manifest["shared"], "sft": sft, "recipes": results, "target": target(results),
    }
    print_table(figures)
    out = args.out or folder / "recipe_compare.json"
    out.write_text(json.dumps(figures, indent=1))
    print(f"\nfigures in {out}; uptime at the end: {figures['uptime_end']}", flush=True)


class Bench:
    """The project, its snapshots and the shared models in one folder, and the runs of each recipe there."""

    def __init__(self, folder: Path, *, reuse: bool, fresh: bool, threads: int, overrides: dict):
        self.folder, self.fresh, self.threads, self.overrides = folder, fresh, threads, overrides
        manifest = folder / "manifest.json"
        if reuse and not manifest.exists():
            raise SystemExit(f"{folder} holds no manifest.json: nothing to reuse")
        if not reuse and manifest.exists():
            raise SystemExit(f"{folder} holds an earlier run: --reuse {folder}, or another --dir")
        self.manifest = json.loads(manifest.read_text()) if reuse else {}
        url = self.manifest.get("database") or os.environ.get("DATABASE_URL") or DEFAULT_DB
        self._django(url, folder / "data")
        from django.contrib.auth import get_user_model

        from annotate.models import Project
        from training.demo.project import DEMO_PROJECT, annotate, demo_project_create

        if reuse:
            self.project = Project.objects.get(pk=self.manifest["project"])
        else:
            if Project.objects.filter(name=DEMO_PROJECT).exists():
                raise SystemExit(f"the database {url} already holds the demo project: give another DATABASE_URL, "
                                 "or --reuse the folder of the run that made it")
            folder.mkdir(parents=True, exist_ok=True)
            started = time.monotonic()
            self.project = demo_project_create()
            counts = annotate(self.project, seed=SHARED_SEED)  # round_run's annotate(seed=seed * 100 + number)
            print(f"annotated in {time.monotonic() - started:.0f} s: {counts}", flush=True)
            self.manifest = {"database": url, "project": self.project.id, "snapshots": {}, "shared": {},
                             "created": datetime.now(UTC).isoformat(timespec="seconds")}
        self.admin = get_user_model().objects.get(username="admin")
        self._shared()

    @staticmethod
    def _django(url: str, data_dir: Path) -> None:
        _create_database(url)
        os.environ["DATABASE_URL"] = url
        os.environ["PLATFORM_DATA_DIR"] = str(data_dir)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_config.settings")
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)

    def _save(self) -> None:
        (self.folder / "manifest.json").write_text(json.dumps(self.manifest, indent=1))

    def data(self, kind: str) -> dict:
        """The train and held-out files of one data kind, exported once (a round exports a snapshot per stage)."""
        if kind not in self.manifest["snapshots"]:
            from django.conf import settings

            from training.services.snapshots import snapshot_create

            snapshot = snapshot_create(project=self.project, kind=kind, by_id=self.admin.id, parquet=False)
            folder = settings.SNAPSHOT_STORE / snapshot.folder
            self.manifest["snapshots"][kind] = {
                "train": str(folder / f"{kind}-train.jsonl"),
                "eval": str(folder / f"{kind}-test.jsonl") if snapshot.rows.get("test") else None,
                "rows": snapshot.rows}
            self._save()
            print(f"exported {kind}: {snapshot.rows}", flush=True)
        found = self.manifest["snapshots"][kind]
        return {"train": found["train"], "eval": found["eval"]}

    def model(self, kind: str) -> str:
        from training.trainers import adapters

        return adapters.handed_on(self.manifest["shared"][kind]["model"])

    def _shared(self) -> None:
        """Train the base, SFT and reward model once, as a round-1 round does (each stage's data exported first)."""
        for name in ("base", *SHARED):
            if name in self.manifest["shared"]:
                continue
            entry = STAGES[name]
            data = self.data(entry.reads)
            if name == "base":  # the tokenizer also learns the demonstrations' text, as supervisor._spec gives it
                data["texts_for_tokenizer"] = [self.data("sft")["train"]]
            figures = stage_child(self.folder / "shared" / name, stage=name, data=data, seed=SHARED_SEED,
                                  config=stage_config(name, PRESET),
                                  threads=self.threads,
                                  base_model=self.model(entry.starts_from) if entry.starts_from else None)
            self.manifest["shared"][name] = figures
            self._save()
            extra = (f", held-out pair accuracy {figures['metrics'].get('reward_accuracy', float('nan')):.3f} on "
                     f"{figures['metrics'].get('eval_rows')} pairs" if name == "reward" else "")
            print(f"{name}: {figures['wall_s']:.0f} s, peak {figures['peak_rss_mib']:.0f} MiB "
                  f"(load {figures['load_1min']:.2f}){extra}", flush=True)

    def problem_sets(self, *, heldout: int, tuning: int):
        from annotate.models import Message, MessageRole
        from training.demo import data as demo_data

        report = demo_data.heldout_problems(heldout)
        taken = {p.prompt for p in report} | set(
            Message.objects.filter(project=self.project, role=MessageRole.USER).values_list("text", flat=True))
        drawn = demo_data.heldout_problems(tuning + len(taken), seed=TUNING_SEED) if tuning else []
        return report, [p for p in drawn if p.prompt not in taken][:tuning]

    def sft_measure(self, report, seeds) -> dict:
        """The SFT model's hidden check: greedy once (the same for every seed), sampled with each seed."""
        measured = {seed: hidden_check(self.model("sft"), report, seed=seed, threads=self.threads) for seed in seeds}
        return {"model": self.model("sft"), "runs": [{"seed": seed, "report": m} for seed, m in measured.items()],
                "pooled": pooled([m for m in measured.values()])}

    def recipe_run(self, recipe: str, values: dict, *, seed: int, report, tuning) -> dict:
        """Train a recipe's own stage with `values` over the demo preset for one seed and measure it."""
        stage = STAGES[recipe_stage(recipe)]
        fixed = self.overrides.get(stage.name, {})
        tag = "-".join([*(f"{k}{v:g}" for k, v in values.items()), f"seed{seed}"])
        if fixed:  # settings of --config: a folder of their own
            tag += "-config" + hashlib.sha1(json.dumps(fixed, sort_keys=True).encode()).hexdigest()[:8]
        work = self.folder / "runs" / recipe / tag
        cached = work / "figures.json"
        # Every setting written into the spec, resolved now: a preset edited while the bench runs (the checkout is
        # shared) must not change the runs after it. An earlier run is taken as it is only if it trained with these.
        config = stage_config(stage.name, PRESET, {**fixed, **values})
        figures = json.loads(cached.read_text()) if cached.exists() and not self.fresh else {}
        if figures.get("threads") == self.threads and trained_with(figures["model"]) == json.loads(json.dumps(config)):
            figures["reused"] = True
        else:
            figures = stage_child(
                work, stage=stage.name, data=self.data(stage.reads), config=config, seed=seed, threads=self.threads,
                base_model=self.model(stage.starts_from),
                reward_model=self.model("reward") if stage.needs_reward_model else None)
            cached.write_text(json.dumps(figures, indent=1))
        figures = {**figures, "recipe": recipe, "values": values,
                   "report": hidden_check(figures["model"], report, seed=seed, threads=self.threads)}
        if tuning:
            figures["tuning"] = hidden_check(figures["model"], tuning, seed=seed, threads=self.threads)
        greedy, sampled = figures["report"]["greedy"], figures["report"]["sampled"]
        print(f"{recipe} {tag}: {figures['wall_s']:.0f} s{' (reused)' if figures.get('reused') else ''}, peak "
              f"{figures['peak_rss_mib']:.0f} MiB (load {figures['load_1min']:.2f}); greedy {_pct(greedy)}, sampled "
              f"{_pct(sampled)}" + (f"; tuning greedy {_pct(figures['tuning']['greedy'])}" if tuning else ""),
              flush=True)
        return figures


def stage_child(work: Path, *, stage: str, data: dict, base_model: str | None, config: dict, seed: int, threads: int,
                reward_model: str | None = None) -> dict:
    """Run one stage as the worker does, in a child of its own; return its wall time, peak RSS and metrics."""
    from training.services.supervisor import _child_env

    shutil.rmtree(work, ignore_errors=True)  # a run cut short before
    work.mkdir(parents=True)
    spec = {"stage": stage, "out_dir": str(work / "model"), "work_dir": str(work / "work"), "data": data,
            "base_model": base_model, "preset": PRESET, "config": config, "seed": seed, "resume": False,
            "progress_file": str(work / "progress.jsonl"), "reward_model": reward_model, "previous_policy": None}
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    watched = work / "watched.json"
    load, trainers_sha = os.getloadavg()[0], trainers_version()
    started = time.monotonic()
    with open(work / "stage.log", "wb") as log:
        subprocess.run([sys.executable, "-c", WATCH, str(watched), *child_command(str(spec_path))], check=False,
                       cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                       env={**_child_env(), "OMP_NUM_THREADS": str(threads)})
    wall = time.monotonic() - started
    watch = json.loads(watched.read_text())
    events = [json.loads(line) for line in (work / "progress.jsonl").read_text().splitlines() if line.strip()]
    done = next((e for e in events if e["event"] == "done"), None)
    if watch["status"] != 0 or done is None:
        raise RuntimeError(f"{stage} failed (exit {watch['status']}), see {work / 'stage.log'}:\n"
                           + (work / "stage.log").read_text(errors="replace")[-3000:])
    shutil.rmtree(work / "work", ignore_errors=True)  # checkpoints with optimizer state
    return {"stage": stage, "seed": seed, "config": config, "threads": threads, "trainers": trainers_sha,
            "wall_s": round(wall, 1),
            "peak_rss_mib": round(watch["maxrss_kib"] / 1024), "load_1min": load, "metrics": done["metrics"],
            "model": spec["out_dir"], "finished": datetime.now(UTC).isoformat(timespec="seconds")}


def trained_with(model_dir: str) -> dict | None:
    """The settings a finished stage trained with, as its child recorded them beside the model."""
    from training.trainers.adapters import SUMMARY_FILE

    try:
        return json.loads((Path(model_dir) / SUMMARY_FILE).read_text())["config"]
    except (OSError, ValueError, KeyError):
        return None


def trainers_version() -> str:
    """A digest of training/trainers/, which other people may edit while the bench runs."""
    digest = hashlib.sha1()
    for path in sorted((ROOT / "training" / "trainers").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def hidden_check(model_dir: str, problems, *, seed: int, threads: int) -> dict:
    import torch
    from transformers.utils import logging

    from training.demo.rounds import hidden_check_scores

    logging.disable_progress_bar()  # a bar per model loaded
    torch.set_num_threads(threads)
    return hidden_check_scores(model_dir, problems, seed=seed)


def recipe_stage(recipe: str) -> str:
    own = [name for name in RECIPES[recipe].stages if name not in SHARED]
    if len(own) != 1:
        raise SystemExit(f"recipe {recipe}: {len(own)} stages beside sft and reward ({', '.join(own)}); this bench "
                         "compares recipes of one stage of their own")
    return own[0]


def recipe_plan(recipe: str, factors: list[float], overrides: dict) -> dict:
    """The recipe's stage, its main coefficient, the preset's values (--config over them) and the grid around them."""
    stage = recipe_stage(recipe)
    fields = STAGES[stage].settings.model_fields
    coefficient = next((name for name in COEFFICIENTS if name in fields), None)
    config = stage_config(stage, PRESET, overrides.get(stage, {}))
    preset = {**({coefficient: config[coefficient]} if coefficient else {}), "learning_rate": config["learning_rate"]}
    coefficients = [{coefficient: config[coefficient] * f} for f in factors] if coefficient else [{}]
    grid = [{**c, "learning_rate": config["learning_rate"] * g} for c in coefficients for g in factors] if factors else []
    return {"stage": stage, "coefficient": coefficient, "preset": preset, "grid": grid}


def choose(runs: list[dict]) -> dict:
    """The grid point with the best greedy share on the tuning set; ties go to the sampled share, then the first."""
    tuned = [r for r in runs if "tuning" in r]
    best = max(tuned, key=lambda r: (r["tuning"]["greedy"]["correct"], r["tuning"]["sampled"]["correct"]))
    return best["values"]


def pooled(measured: list[dict]) -> dict:
    from training.demo.data import score_interval

    result = {}
    for mode in ("greedy", "sampled"):
        correct, n = sum(m[mode]["correct"] for m in measured), sum(m[mode]["n"] for m in measured)
        low, high = score_interval(correct, n)
        result[mode] = {"score": correct / n, "low": low, "high": high, "correct": correct, "n": n}
    return result


def recipe_figures(plan: dict, runs: list[dict], seeds: list[int], sft: dict) -> dict:
    final = sorted((r for r in runs if r["values"] == plan["chosen"] and r["seed"] in seeds), key=lambda r: r["seed"])
    pool = pooled([r["report"] for r in final])
    walls, peaks = [r["wall_s"] for r in final], [r["peak_rss_mib"] for r in final]
    brief = ("seed", "values", "config", "trainers", "wall_s", "peak_rss_mib", "load_1min", "report", "tuning", "metrics",
             "reused", "finished")
    return {
        **plan, "pooled": pool,
        "gain": {mode: pool[mode]["score"] - sft["pooled"][mode]["score"] for mode in ("greedy", "sampled")},
        "stage_s": {"median": statistics.median(walls), "min": min(walls), "max": max(walls)},
        "peak_rss_mib": {"mean": sum(peaks) / len(peaks), "max": max(peaks)},
        "needs_reward_model": STAGES[plan["stage"]].needs_reward_model,
        "starts_from": STAGES[plan["stage"]].starts_from,
        "runs": [{k: r[k] for k in brief if k in r} for r in final],
        "grid_runs": [{k: r[k] for k in brief if k in r} for r in runs if "tuning" in r],
    }


def target(results: dict) -> dict:
    """The issue's target: an offline recipe (dpo or kto) gains at least as much over SFT as PPO does, pooled,
    in less than half of PPO's stage time (the median over the seeds: one run a busy machine slowed counts less)."""
    if "ppo" not in results:
        return {"judged": False, "why": "ppo was not run"}
    ppo = results["ppo"]
    verdicts = {}
    for name in ("dpo", "kto"):
        if name in results:
            r = results[name]
            verdicts[name] = {
                "gain_greedy_at_least_ppo": r["gain"]["greedy"] >= ppo["gain"]["greedy"],
                "gain_sampled_at_least_ppo": r["gain"]["sampled"] >= ppo["gain"]["sampled"],
                "time_ratio_to_ppo": r["stage_s"]["median"] / ppo["stage_s"]["median"],
            }
            verdicts[name]["met"] = verdicts[name]["gain_greedy_at_least_ppo"] and verdicts[name]["time_ratio_to_ppo"] < 0.5
    missing = [name for name in ("dpo", "kto") if name not in results]
    return {"judged": bool(verdicts), "met": any(v["met"] for v in verdicts.values()), "by_recipe": verdicts,
            "not_run": missing, "measure": "pooled greedy share's gain over SFT; stage time: median over the seeds"}


def _pct(figure: dict) -> str:
    return f"{100 * figure['score']:.1f}% [{100 * figure['low']:.1f}, {100 * figure['high']:.1f}]"


def _values(values: dict) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in values.items())


def print_table(figures: dict) -> None:
    sft, recipes, shared = figures["sft"], figures["recipes"], figures["shared"]
    budget = figures["budget"]
    print(f"\nRecipes on the demo's round 1 ({figures['preset']} preset, seeds {', '.join(map(str, figures['seeds']))}); "
          f"hidden check on {figures['sets']['report']['n']} held-out problems, share right with Wilson 95% intervals")
    reward = shared["reward"]["metrics"]
    print(f"shared: base {shared['base']['wall_s']:.0f} s, SFT {shared['sft']['wall_s']:.0f} s, reward model "
          f"{shared['reward']['wall_s']:.0f} s (held-out pair accuracy {100 * reward.get('reward_accuracy', float('nan')):.1f}% "
          f"on {reward.get('eval_rows')} pairs; used by {', '.join(n for n, r in recipes.items() if r['needs_reward_model']) or 'none'})")
    if budget["grid"]:
        print(f"budget, the same for each recipe: 2 x 2 grid (main coefficient and learning rate, each the preset's "
              f"value x {' and '.join(f'{f:g}' for f in budget['factors'])}) on seed 0, chosen by the {budget['chosen_by']} "
              f"of {figures['sets']['tuning']['n']} held-out problems disjoint from the reporting set; then fixed")
    else:
        print("budget: none, every recipe at its preset's values (no grid)")
    if figures["config"]:
        print(f"settings besides the grid's (--config): {json.dumps(figures['config'])}")
    for name, r in recipes.items():
        grid = "; ".join(f"{_values(g['values'])}: {g['tuning']['greedy']['correct']}/{g['tuning']['greedy']['n']}"
                         for g in r["grid_runs"])
        print(f"  {name:<5} {r['stage']} preset {_values(r['preset'])} -> chosen {_values(r['chosen'])}"
              + (f"   (tuning greedy: {grid})" if grid else ""))
    for mode, label in (("greedy", "greedy"), ("sampled", "sampled at T=0.7")):
        print(f"\n{label}:")
        print(f"  {'recipe':<7}" + "".join(f"{'seed ' + str(s):<23}" for s in figures["seeds"])
              + f"{'pooled':<23}{'gain over SFT':>14}")
        sft_seeds = {run["seed"]: run["report"][mode] for run in sft["runs"]}
        print(f"  {'sft':<7}" + "".join(f"{_pct(sft_seeds[s]):<23}" for s in figures["seeds"])
              + f"{_pct(sft['pooled'][mode]):<23}{'-':>14}")
        for name, r in recipes.items():
            seeds = {run["seed"]: run["report"][mode] for run in r["runs"]}
            print(f"  {name:<7}" + "".join(f"{_pct(seeds[s]) if s in seeds else '-':<23}" for s in figures["seeds"])
                  + f"{_pct(r['pooled'][mode]):<23}{100 * r['gain'][mode]:>+13.1f}pt")
    print(f"\n  {'recipe':<7}{'stage':<7}{'from':<6}{'stage s, median (min-max)':<27}{'+ reward model s':<18}"
          f"{'peak RSS MiB (max)':<20}{'KL to SFT':<10}")
    reward_s = shared["reward"]["wall_s"]
    for name, r in recipes.items():
        kls = [run["metrics"]["kl"] for run in r["runs"] if isinstance(run["metrics"].get("kl"), (int, float))]
        s, peak = r["stage_s"], r["peak_rss_mib"]
        times = f"{s['median']:.0f} ({s['min']:.0f}-{s['max']:.0f})"
        with_reward = f"{s['median'] + reward_s:.0f}" if r["needs_reward_model"] else "-"
        memory = f"{peak['mean']:.0f} ({peak['max']:.0f})"
        kl = f"{sum(kls) / len(kls):.3f}" if kls else "-"
        print(f"  {name:<7}{r['stage']:<7}{r['starts_from']:<6}{times:<27}{with_reward:<18}{memory:<20}{kl:<10}")
    versions = {run.get("trainers") for r in recipes.values() for run in r["runs"] + r["grid_runs"]} - {None}
    if len(versions) > 1:
        print(f"\nnote: training/trainers/ changed between these runs ({len(versions)} versions; each run's digest "
              "is in the JSON)")
    verdict = figures["target"]
    if not verdict["judged"]:
        print(f"\ntarget not judged: {verdict.get('why') or 'neither dpo nor kto was run'}")
        return
    for name, v in verdict["by_recipe"].items():
        print(f"\ntarget, {name}: gain greedy {100 * recipes[name]['gain']['greedy']:+.1f}pt against PPO's "
              f"{100 * recipes['ppo']['gain']['greedy']:+.1f}pt (sampled {100 * recipes[name]['gain']['sampled']:+.1f} "
              f"against {100 * recipes['ppo']['gain']['sampled']:+.1f}), stage time {v['time_ratio_to_ppo']:.2f} of PPO's: "
              f"{'met' if v['met'] else 'not met'}")
    if verdict["not_run"]:
        print(f"not run: {', '.join(verdict['not_run'])}")


if __name__ == "__main__":
    main()
