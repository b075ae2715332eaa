"""The demo loop, unattended: scripted annotators, a training round, the hidden check, deploy, generate.

One round of `manage.py demo_rounds`:
1. the scripted annotators (training.demo.annotators, over HTTP) take every task waiting: in
   round 1 the seed prompts' demonstrations, reviews and rankings (of two demonstrations and two
   imported replies of an earlier assistant each), later the rankings of the candidates the last
   round's policy wrote;
2. a training round (training.services.runs, in this process): base from scratch in round 1,
   then the stages of its recipe (SFT, reward model, PPO by default; `recipe` names another);
3. every version of the round is measured on held-out problems that never entered the project
   (training.demo.data.heldout_problems) by the hidden check, with a Wilson 95% interval; with the
   reward model's held-out accuracy and the annotators' agreement, the figures are printed,
   added to each version's metrics (`hidden_check_*`) and written to
   PLATFORM_DATA_DIR/demo-rounds/project-N.json;
4. the policy is deployed; the annotators write the next round's prompts with one demonstration
   each, and the policy writes the other K-1 candidates of each, which wait to be ranked (by the
   next round's annotators, or by people on the demo's pages).
"""

import json
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model

from annotate.selectors.stats import project_agreement
from annotate.services import accounts as account_services
from training.demo import data as demo_data
from training.demo.project import DEMO_PROJECT, annotate, demo_project_create
from training.models import ModelKind, ModelVersion, TrainingRun
from training.services import runs, serving, supervisor

PROMPTS_PER_ROUND = 200


def hidden_check_scores(model_dir: str, problems, *, temperature: float = 0.7, batch_size: int = 64,
                        seed: int = 0) -> dict:
    """Share of `problems` a causal LM answers right by the hidden check, greedy and sampled at
    `temperature`; the model is loaded once for both."""
    from training.generation import SamplingSettings
    from training.generation.local import SAVED, generate_ids, model_load

    # On the CPU, as the figures in the README were measured.
    loaded = model_load(model_dir, device="cpu", dtype=SAVED, keep=False)
    tokenizer = loaded.tokenizer
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": p.prompt}], add_generation_prompt=True,
                                             tokenize=True, return_dict=False) for p in problems]
    scores = {}
    for mode, mode_temperature in (("greedy", 0), ("sampled", temperature)):
        settings = SamplingSettings(temperature=mode_temperature, max_new_tokens=12, seed=seed)
        replies = generate_ids(loaded, prompts, settings=settings, batch_size=batch_size)
        texts = [tokenizer.decode(r, skip_special_tokens=True) for r in replies]
        correct = sum(demo_data.reply_check(p.prompt, t) for p, t in zip(problems, texts))
        low, high = demo_data.score_interval(correct, len(problems))
        scores[mode] = {"score": correct / len(problems), "low": low, "high": high, "correct": correct,
                        "n": len(problems), "examples": [[p.prompt, t] for p, t in list(zip(problems, texts))[:3]]}
    return scores


def versions_measure(versions, *, heldout: int) -> dict:
    problems = demo_data.heldout_problems(heldout)
    figures = {}
    for version in versions:
        scores = hidden_check_scores(str(settings.MODEL_STORE / version.folder), problems)
        greedy, sampled = scores["greedy"], scores["sampled"]
        figures[version.name] = {"kind": version.kind, **scores}
        metrics = {**version.metrics, "hidden_check_greedy": greedy["score"], "hidden_check_greedy_ci95": [greedy["low"], greedy["high"]],
                   "hidden_check_sampled": sampled["score"], "hidden_check_sampled_ci95": [sampled["low"], sampled["high"]],
                   "hidden_check_n": greedy["n"]}
        ModelVersion.objects.filter(pk=version.pk).update(metrics=metrics)
    return figures


def rounds_run(*, rounds: int, up_to: bool = False, preset: str = "demo", recipe: str | None = None, seed: int = 0,
               heldout: int = 300, prompts_per_round: int = PROMPTS_PER_ROUND, config: dict | None = None,
               out=print) -> list[dict]:
    """Load the demo project if needed, then run `rounds` more rounds (with `up_to`: until it has that many)."""
    project = demo_project_create()
    admin = get_user_model().objects.get(username="admin")
    done = TrainingRun.objects.filter(project=project, status="succeeded").count()
    out(f"{DEMO_PROJECT} (project {project.id}): {done} round(s) done before")
    last = rounds if up_to else done + rounds
    return [round_run(project=project, admin=admin, number=number, preset=preset, recipe=recipe, seed=seed,
                      heldout=heldout, prompts_per_round=prompts_per_round, config=config, out=out)
            for number in range(done + 1, last + 1)]


def round_run(*, project, admin, number: int, preset: str = "demo", recipe: str | None = None, seed: int = 0,
              heldout: int = 300, prompts_per_round: int = PROMPTS_PER_ROUND, config: dict | None = None,
              out=print) -> dict:
    """Run one demo round (annotate, train, measure, deploy, prepare the next); return its figures.

    `recipe` names the round's stages (training.trainers.stages.RECIPES; None: the default). The hidden check
    measures every version the round registered but a reward model, which recipes such as dpo and orpo train none of.
    """
    started = time.monotonic()
    timings = {}
    counts = annotate(project, seed=seed * 100 + number)
    timings["annotate"] = time.monotonic() - started
    if number == 1:
        # After the seed prompts, one demonstration per prompt: the deployed model writes the other K-1.
        account_services.project_settings_update(project=project, demonstrations_per_prompt=1)
    mark = time.monotonic()
    run = runs.run_create(project=project, by=admin, preset=preset, recipe=recipe, seed=seed + number,
                          config=config or {})
    status = supervisor.run_execute(run_id=run.id)
    run.refresh_from_db()
    timings["train"] = time.monotonic() - mark
    if status != "succeeded":
        raise RuntimeError(f"round {run.number} {status}: {run.error}")
    mark = time.monotonic()
    made = list(ModelVersion.objects.filter(run=run).order_by("id"))
    measured = [v for v in made if v.kind != ModelKind.REWARD]
    if not any(v.kind == ModelKind.BASE for v in made):
        measured = list(ModelVersion.objects.filter(project=project, kind=ModelKind.BASE).order_by("version")[:1]) + measured
    figures = versions_measure(measured, heldout=heldout)
    timings["measure"] = time.monotonic() - mark
    reward = next((v for v in made if v.kind == ModelKind.REWARD), None)
    agreement = project_agreement(project=project)
    policy = next(v for v in made if v.kind == ModelKind.POLICY)
    mark = time.monotonic()
    serving.deployment_create(project=project, model_version=policy, by=admin, replace=True,
                              sampling={"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 16, "seed": seed + number})
    # The next round's work: new prompts and their demonstrations (and reviews), then the policy's candidates.
    written = annotate(project, prompts=prompts_per_round, seed=seed * 100 + number + 50)
    job = serving.generation_enqueue(project=project, by=admin, max_prompts=100_000)
    serving.generation_execute(job_id=job.id)
    job.refresh_from_db()
    timings["next round"] = time.monotonic() - mark
    timings["round"] = time.monotonic() - started
    result = {
        "round": number, "run": run.number, "preset": preset, "recipe": run.algorithm, "seed": seed + number,
        "versions": figures,
        "reward": None if reward is None else {"name": reward.name, "accuracy": reward.metrics.get("reward_accuracy"),
                                               "eval_pairs": reward.metrics.get("eval_rows")},
        "agreement": {"krippendorff_alpha": agreement["krippendorff_alpha"],
                      "mean_kendall_w": agreement["mean_kendall_w"], "sets_with_overlap": agreement["sets_with_overlap"]},
        "annotations": counts, "next_round": {"annotations": written, "prompts": sum(d.get("prompt", 0) for d in written.values()),
                                              "candidates": job.replies_written, "by": policy.name},
        "seconds": timings,
    }
    _store(project, result)
    _print(result, out)
    return result


def _store(project, result):
    folder = Path(settings.DATA_DIR) / "demo-rounds"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"project-{project.id}.json"
    rounds = json.loads(path.read_text()) if path.exists() else []
    rounds = [r for r in rounds if r["round"] != result["round"]] + [result]
    path.write_text(json.dumps(rounds, indent=1))
    result["stored_in"] = str(path)


def _pct(figure):
    return f"{100 * figure['score']:5.1f}% [{100 * figure['low']:.1f}, {100 * figure['high']:.1f}]"


def _print(result, out):
    out(f"Round {result['round']} (training round {result['run']}, recipe {result['recipe']}, preset "
        f"{result['preset']}, seed {result['seed']}): "
        f"{result['seconds']['round']:.0f} s (annotate {result['seconds']['annotate']:.0f}, train "
        f"{result['seconds']['train']:.0f}, measure {result['seconds']['measure']:.0f}, next round's prompts and "
        f"candidates {result['seconds']['next round']:.0f})")
    n = next(iter(result["versions"].values()))["greedy"]["n"] if result["versions"] else 0
    out(f"  hidden check on {n} held-out prompts, share right with 95% interval:")
    for name, figure in result["versions"].items():
        out(f"    {name:<10} greedy {_pct(figure['greedy'])}   sampled (T=0.7) {_pct(figure['sampled'])}")
    reward = result["reward"]
    if reward is None:
        out(f"  no reward model: the {result['recipe']} recipe trains none")
    else:
        accuracy = reward["accuracy"]
        out(f"  reward model {reward['name']}: held-out pair accuracy "
            f"{'-' if accuracy is None else f'{100 * accuracy:.1f}%'} on {reward['eval_pairs']} pairs")
    agreement = result["agreement"]
    alpha, w = agreement["krippendorff_alpha"], agreement["mean_kendall_w"]
    out(f"  annotator agreement: Krippendorff alpha {'-' if alpha is None else f'{alpha:.3f}'}, mean Kendall W "
        f"{'-' if w is None else f'{w:.3f}'} over {agreement['sets_with_overlap']} sets")
    following = result["next_round"]
    out(f"  next round: {following['prompts']} new prompts, {following['candidates']} candidates by {following['by']} "
        f"waiting to be ranked; figures in {result.get('stored_in', '-')}")
