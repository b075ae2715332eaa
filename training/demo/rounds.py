"""The demo loop, unattended: scripted annotators, a training round, the hidden check, deploy, generate.

One round of `manage.py demo_rounds`:
1. the scripted annotators (training.demo.annotators, over HTTP) take every task waiting: in
   round 1 the seed prompts' demonstrations, reviews and rankings (of two demonstrations and two
   imported replies of an earlier assistant each), later the rankings of the candidates the last
   round's policy wrote;
2. a training round (training.services.runs, in this process): base from scratch in round 1 (or,
   with `base`, that pretrained model adopted as it is: nothing is pretrained), then the stages of its
   recipe (SFT, reward model, PPO by default; `recipe` names another);
3. every version of the round is measured on held-out problems that never entered the project
   (training.demo.data.heldout_problems) by the hidden check, with a Wilson 95% interval, and on
   prompts far from the demo's (training.demo.general: what fine-tuning costs a pretrained model's
   general ability); with the reward model's held-out accuracy, the annotators' agreement and each
   stage's wall time and load average at its start, the figures are printed, added to each version's
   metrics (`hidden_check_*`, `general_check_*`) and written to PLATFORM_DATA_DIR/demo-rounds/project-N.json;
4. the policy is deployed; the annotators write the next round's prompts with one demonstration
   each, and the policy writes the other K-1 candidates of each, which wait to be ranked (by the
   next round's annotators, or by people on the demo's pages).
"""

import json
import os
import threading
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model

from annotate.selectors.stats import project_agreement
from annotate.services import accounts as account_services
from training.demo import data as demo_data
from training.demo.general import GENERAL_PROMPTS, general_check
from training.demo.project import annotate, demo_project_create, demo_project_name
from training.models import ModelKind, ModelVersion, RunStage, TrainingRun
from training.services import runs, serving, supervisor
from training.trainers import stages

PROMPTS_PER_ROUND = 200
# Held-out problems each version is measured on: 300 for the model built from scratch; 100 for an adopted
# base: SmolLM2-135M answered 64 prompts in 23 to 40 s on 2 busy cores (its default system turn makes each prompt
# ~50 tokens), and a round measures 3 versions twice each; 100 give intervals of about +-9 points around the half.
HELDOUT = 300
HELDOUT_ADOPTED = 100
# Tokens of a reply to a general prompt: "The capital of France is Paris." is 8; room for a sentence before it.
GENERAL_MAX_NEW_TOKENS = 32

# The stage settings of a round whose base is adopted (demo_rounds --base; chosen for SmolLM2-135M-Instruct),
# over the demo preset (sized for a 0.5M-parameter model built from scratch) and under the round's --config.
# The adapter stays "auto": LoRA r 16 on every linear layer at 50M parameters or more (stages.LORA_FROM_PARAMETERS).
# Steps of the 135M model on 2 cores took 6 to 13 s when nothing else ran and 30 to 50 s beside other work.
# - max_length 96: a demo row through SmolLM2's template (its default system turn included) is at most 70
#   tokens; eval_max_rows 16: each stage's own held-out evaluation generates, which is slow at this size.
# - SFT: 1 epoch (round 1's ~450 demonstrations, 28 steps of 16) at 5e-4, a LoRA rate: the instruct model already
#   answers questions and only has to learn the demo's reply forms (its loss fell from 0.97 to 0.29); the demo
#   preset's 10 epochs at 1e-3 are for a model that starts knowing no word, and would take an hour here.
# - DPO and the reward model: 24 steps of 8 pairs (about a tenth of round 1's ~2000 training pairs) at a LoRA
#   rate; DPO's held-out preference accuracy reached 100% of 16 pairs, and the demo preset's 2 epochs at batch
#   16 would take hours. KTO likewise.
# - PPO: 8 updates of 16 episodes with 2 PPO epochs each: an update trains the policy's adapter and the value
#   model, which TRL's PPO trains in all its weights.
ADOPTED_COMMON = {"max_length": 96, "eval_max_rows": 16}
ADOPTED_CONFIG = {
    "sft": {"learning_rate": 5e-4, "num_train_epochs": 1.0},
    "reward": {"learning_rate": 2e-4, "per_device_train_batch_size": 8, "max_steps": 24},
    "dpo": {"learning_rate": 2e-4, "per_device_train_batch_size": 8, "max_steps": 24},
    "ppo": {"learning_rate": 2e-5, "total_episodes": 128, "num_ppo_epochs": 2, "local_rollout_forward_batch_size": 16},
    "rloo": {"learning_rate": 2e-5, "max_steps": 8},
    "grpo": {"learning_rate": 2e-5, "max_steps": 8},
    "kto": {"learning_rate": 2e-4, "per_device_train_batch_size": 8, "max_steps": 24},
    "orpo": {"learning_rate": 5e-4, "num_train_epochs": 1.0},
}


def adopted_config(recipe: str | None, config: dict | None = None) -> dict:
    """The per-stage settings of a round from an adopted base: ADOPTED_CONFIG for its recipe's stages, with
    `config`'s own settings over them (and its stages the recipe lacks left for run_create to refuse)."""
    config = dict(config or {})
    names = stages.RECIPES[recipe].stages if recipe in stages.RECIPES else ()
    for name in names:
        given = config.get(name, {})
        if isinstance(given, dict):  # anything else is run_create's to refuse
            config[name] = {**ADOPTED_COMMON, **ADOPTED_CONFIG.get(name, {}), **given}
    return config


def hidden_check_scores(model_dir: str, problems, *, temperature: float = 0.7, batch_size: int = 64,
                        seed: int = 0, general=()) -> dict:
    """Share of `problems` a causal LM answers right by the hidden check, greedy and sampled at
    `temperature`, and with `general` (training.demo.general prompts) the share of those it answers
    right, greedy; the model is loaded once for all."""
    from training.generation import SamplingSettings
    from training.generation.local import generate_ids, model_load

    # On the CPU, as the figures in the README were measured, and in float32 as the stages train there: a model
    # from scratch is saved so; SmolLM2 is saved in bf16, in which it generated no faster on this 2-core machine.
    loaded = model_load(model_dir, device="cpu", dtype="float32", keep=False)
    tokenizer = loaded.tokenizer

    def prompt_ids(texts):
        return [tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                              tokenize=True, return_dict=False) for text in texts]

    prompts = prompt_ids(p.prompt for p in problems)
    scores = {}
    for mode, mode_temperature in (("greedy", 0), ("sampled", temperature)):
        settings = SamplingSettings(temperature=mode_temperature, max_new_tokens=12, seed=seed)
        replies = generate_ids(loaded, prompts, settings=settings, batch_size=batch_size)
        texts = [tokenizer.decode(r, skip_special_tokens=True) for r in replies]
        correct = sum(demo_data.reply_check(p.prompt, t) for p, t in zip(problems, texts))
        low, high = demo_data.score_interval(correct, len(problems))
        scores[mode] = {"score": correct / len(problems), "low": low, "high": high, "correct": correct,
                        "n": len(problems), "examples": [[p.prompt, t] for p, t in list(zip(problems, texts))[:3]]}
    if general:
        greedy = SamplingSettings(temperature=0, max_new_tokens=GENERAL_MAX_NEW_TOKENS, seed=seed)
        replies = generate_ids(loaded, prompt_ids(g.prompt for g in general), settings=greedy, batch_size=batch_size)
        texts = [tokenizer.decode(r, skip_special_tokens=True) for r in replies]
        right = [general_check(g, t) for g, t in zip(general, texts)]
        low, high = demo_data.score_interval(sum(right), len(general))
        scores["general"] = {"score": sum(right) / len(general), "low": low, "high": high, "correct": sum(right),
                             "n": len(general), "replies": [[g.prompt, t, ok] for g, t, ok in zip(general, texts, right)]}
    return scores


def versions_measure(versions, *, heldout: int) -> dict:
    problems = demo_data.heldout_problems(heldout)
    figures = {}
    for version in versions:
        scores = hidden_check_scores(str(settings.MODEL_STORE / version.folder), problems, general=GENERAL_PROMPTS)
        greedy, sampled, general = scores["greedy"], scores["sampled"], scores["general"]
        figures[version.name] = {"kind": version.kind, **scores}
        metrics = {**version.metrics, "hidden_check_greedy": greedy["score"], "hidden_check_greedy_ci95": [greedy["low"], greedy["high"]],
                   "hidden_check_sampled": sampled["score"], "hidden_check_sampled_ci95": [sampled["low"], sampled["high"]],
                   "hidden_check_n": greedy["n"], "general_check": general["score"],
                   "general_check_ci95": [general["low"], general["high"]], "general_check_n": general["n"]}
        ModelVersion.objects.filter(pk=version.pk).update(metrics=metrics)
    return figures


def rounds_run(*, rounds: int, up_to: bool = False, preset: str = "demo", recipe: str | None = None, seed: int = 0,
               heldout: int | None = None, prompts_per_round: int = PROMPTS_PER_ROUND, config: dict | None = None,
               base: str = "", out=print) -> list[dict]:
    """Load the demo project if needed, then run `rounds` more rounds (with `up_to`: until it has that many).

    `base` (a registered base model's name, or a directory under BASE_MODEL_ROOTS) runs the demo from that
    pretrained model, in a project of its own: its first round adopts it, and every round trains with
    ADOPTED_CONFIG. It is checked by the fence a round's base_source passes before any annotator starts.
    """
    if base:
        runs.base_source_resolve(base_source=base)
    project = demo_project_create(base=base)
    admin = get_user_model().objects.get(username="admin")
    done = TrainingRun.objects.filter(project=project, status="succeeded").count()
    out(f"{demo_project_name(base)} (project {project.id}): {done} round(s) done before")
    last = rounds if up_to else done + rounds
    return [round_run(project=project, admin=admin, number=number, preset=preset, recipe=recipe, seed=seed,
                      heldout=heldout, prompts_per_round=prompts_per_round, config=config, base=base, out=out)
            for number in range(done + 1, last + 1)]


def round_run(*, project, admin, number: int, preset: str = "demo", recipe: str | None = None, seed: int = 0,
              heldout: int | None = None, prompts_per_round: int = PROMPTS_PER_ROUND, config: dict | None = None,
              base: str = "", out=print) -> dict:
    """Run one demo round (annotate, train, measure, deploy, prepare the next); return its figures.

    `recipe` names the round's stages (training.trainers.stages.RECIPES; None: the default). The hidden check
    measures every version the round registered but a reward model, which recipes such as dpo and orpo train none of.
    With `base`, the round adopts that model while the project has no base yet, and trains with ADOPTED_CONFIG;
    `heldout` is then HELDOUT_ADOPTED unless given.
    """
    started = time.monotonic()
    load_at_start = os.getloadavg()
    timings = {}
    counts = annotate(project, seed=seed * 100 + number)
    timings["annotate"] = time.monotonic() - started
    if number == 1:
        # After the seed prompts, one demonstration per prompt: the deployed model writes the other K-1.
        account_services.project_settings_update(project=project, demonstrations_per_prompt=1)
    recipe = recipe or stages.default_recipe()
    if base:
        config = adopted_config(recipe, config)
    has_base = ModelVersion.objects.filter(project=project, kind=ModelKind.BASE).exists()
    mark = time.monotonic()
    run = runs.run_create(project=project, by=admin, preset=preset, recipe=recipe, seed=seed + number,
                          config=config or {}, base_source=base if base and not has_base else "")
    with _LoadSampler() as loads:
        status = supervisor.run_execute(run_id=run.id)
    run.refresh_from_db()
    timings["train"] = time.monotonic() - mark
    if status != "succeeded":
        raise RuntimeError(f"round {run.number} {status}: {run.error}")
    timings["stages"] = {stage.name: {"seconds": (stage.finished_at - stage.started_at).total_seconds(),
                                      "load_at_start": loads.at(stage.started_at.timestamp())}
                         for stage in RunStage.objects.filter(run=run).order_by("order")}
    mark = time.monotonic()
    made = list(ModelVersion.objects.filter(run=run).order_by("id"))
    measured = [v for v in made if v.kind != ModelKind.REWARD]
    if not any(v.kind == ModelKind.BASE for v in made):
        measured = list(ModelVersion.objects.filter(project=project, kind=ModelKind.BASE).order_by("version")[:1]) + measured
    if heldout is None:
        heldout = HELDOUT_ADOPTED if base else HELDOUT
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
        "base": base or None, "adopted": run.base_source or None, "load_at_start": list(load_at_start),
        "config": run.config, "versions": figures,
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


class _LoadSampler:
    """The 1-minute load average (what `uptime` prints) every few seconds while a round trains, so that its
    figures say how busy the machine was as each stage started: on shared cores a stage's time says little alone."""

    EVERY_S = 2

    def __enter__(self):
        self.samples = [(time.time(), os.getloadavg()[0])]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="demo-load", daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(self.EVERY_S):
            self.samples.append((time.time(), os.getloadavg()[0]))

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def at(self, moment: float) -> float:
        """The load average sampled nearest to `moment` (a time.time())."""
        return min(self.samples, key=lambda sample: abs(sample[0] - moment))[1]


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
    seconds = result["seconds"]
    started_from = f", from {result['base']}" if result["base"] else ""
    out(f"Round {result['round']} (training round {result['run']}, recipe {result['recipe']}, preset "
        f"{result['preset']}, seed {result['seed']}{started_from}): "
        f"{seconds['round']:.0f} s (annotate {seconds['annotate']:.0f}, train "
        f"{seconds['train']:.0f}, measure {seconds['measure']:.0f}, next round's prompts and "
        f"candidates {seconds['next round']:.0f}); load average at the start "
        f"{', '.join(f'{load:.2f}' for load in result['load_at_start'])}")
    out("  stages: " + ", ".join(f"{name} {stage['seconds']:.0f} s (load {stage['load_at_start']:.2f} at its start)"
                                 for name, stage in seconds["stages"].items()))
    n = next(iter(result["versions"].values()))["greedy"]["n"] if result["versions"] else 0
    out(f"  hidden check on {n} held-out prompts, share right with 95% interval:")
    for name, figure in result["versions"].items():
        out(f"    {name:<10} greedy {_pct(figure['greedy'])}   sampled (T=0.7) {_pct(figure['sampled'])}")
    general = next(iter(result["versions"].values()))["general"]["n"] if result["versions"] else 0
    out(f"  general ability on {general} prompts of our own (capitals, facts, short instructions), greedy:")
    for name, figure in result["versions"].items():
        out(f"    {name:<10} {_pct(figure['general'])}")
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
