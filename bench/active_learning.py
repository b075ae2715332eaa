"""Active learning on the demo: does the queue's learned order teach the reward model more per ranking?

Round 2 of the demo is run from the same round-1 reward model and the same candidate sets at budgets of
--budgets percent of round 2's rankings (sets x overlap), in each order: oldest first (today's queue),
random, and learned (annotate.services.priority with training.services.priorities, one learned order per
--signals: the reward model's score gaps, Monte Carlo dropout); --seeds seeds each. After each budget the
round-2 reward model is trained on round 1's pairs plus the budget's, and measured on --heldout-pairs
held-out pairs (the demo's held-out problems, pairs whose hidden grades differ).

What is real and what stands in:
- The queue is the platform's: a project per seed and order in this database, the scripted annotators'
  rankings (training.demo.annotators.Annotator.rank, the demo's noise per person) taken through
  annotate.services.queue.task_next and submits.task_submit, in turns, one task at a time. The learned
  order is what a deployment would run: priorities_refresh with the round-1 reward model before the round,
  priorities_recompute (disagreement, coverage) every --recompute-every judgements, adaptive overlap on
  (cap 3). Random is the same lease with a random priority per item.
- The candidate sets stand in for the round-1 policy's replies: K=4 per prompt of the demo's pool, written
  as the demo's annotators and its earlier assistant write (demo_data.reply_write at a policy's error
  rates, demo_data.earlier_reply), since training a round-1 policy per seed would take hours here.
- The reward model is trained by TRL's RewardTrainer on a sequence classifier, as the reward stage does,
  but small (the demo base's shape: 2 layers, width 128, the demo corpus's tokenizer), one epoch at 1e-3,
  batch 32, bf16 and activation checkpointing off as the platform's stages train on a CPU, from --init (an
  SFT model directory, e.g. a demo round's) or else from fresh weights of that shape. From fresh weights it
  learns the reply forms and no sum: a scorer that knows the forms and no number ranks 68.8% of the held-out
  pairs right, and there it stalls (one seed, 500 pairs: 0.63 from 25 sets' 265 pairs, 0.65 from 524,
  0.66 from 1,563, 0.68 from 3,110, 0.69 from 4,692; 3 epochs no better). So round 1 is small by choice
  (--round1-sets 25, as a team's first round is): with 150 sets, round 1 alone already reached the full
  budget and no order could win. A base pretrained on the demo corpus (4 epochs) did worse (0.61 from 3,110).
- The round-2 policy is a best-of-K policy, not a PPO stage (one per order, budget and seed would take
  hours here): for each of --policy-problems held-out problems, BEST_OF replies by `candidates()` with a
  fixed seed; the reward model picks its top one, and the pick's hidden check (demo_data.reply_check) is
  the policy's. A random pick passes about 0.26, a perfect reward model's about 0.93.
--noisy gives the annotators 2.5 times the demo's ranking noise and adds a careless one (noise 25: about
random), since the demo's agree almost perfectly (mean Kendall's W 0.979) and disagreement never fires.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_active_learning nice -n 10 \\
        .venv/bin/python bench/active_learning.py --noisy --seeds 0 1 2 --round1-sets 25 --round2-sets 200 \\
        --heldout-pairs 1000

Prints, per order and budget, the reward model's held-out accuracy and the best-of-K policy's hidden-check
share, pooled over the seeds with Wilson 95% intervals, the first budget at which each reaches the full budget
("reaches": at or above the lower end of the full-budget pooled 95% interval), and the figures per seed;
writes everything to --dir/results.json. The intervals cover the held-out sample only, not the training: three
training seeds on the same 2,336 pairs from the same fresh weights scored 0.579, 0.644 and 0.659 (best-of-8
0.205, 0.417, 0.385), a spread as wide as all that round 2 adds.
"""

import argparse
import json
import os
import random
import sys
import tempfile
import time
from itertools import count
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORDERS_BASE = ("oldest", "random")
K = 4
BEST_OF = 8  # the best-of-K policy's replies per held-out problem: two candidate sets
OVERLAP = 2
ADAPTIVE_CAP = 3
MAX_LENGTH = 64
REWARD_EPOCHS, REWARD_LR = 1.0, 1e-3
# As the platform's stages train without CUDA (common.training_arguments): TRL's configs default to bf16 and
# activation checkpointing, which on a CPU made each reward model about 3 times slower for nothing.
CPU_TRAINING = dict(use_cpu=True, bf16=False, activation_checkpointing=False, report_to=[], save_strategy="no",
                    logging_steps=1000, disable_tqdm=True, dataloader_num_workers=0)
_names = count()


def setup_django():
    sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_config.settings")
    import django

    django.setup()


# ---------------------------------------------------------------------------------------------
# Data: problems, candidate sets, annotators, pairs


def candidates(prompt: str, rng: random.Random) -> list[str]:
    """K replies to one prompt as a round-1 policy writes them: mostly the demo's forms, some wrong numbers."""
    from training.demo import data as demo_data

    replies = []
    while len(replies) < K:
        if rng.random() < 0.6:
            text = demo_data.reply_write(prompt, rng, error_rate=0.35, sloppy_rate=0.2, follow_rate=0.45)
        else:
            text = demo_data.earlier_reply(prompt, rng)
        if text not in replies or rng.random() < 0.1:  # now and then a repeat, as sampling gives
            replies.append(text)
    return replies


def team(*, noisy: bool, seed: int):
    from training.demo.annotators import ANNOTATORS, Annotator, Profile

    profiles = list(ANNOTATORS)
    if noisy:
        profiles = [Profile(p.username, rank_noise=p.rank_noise * 2.5) for p in profiles[:-1]]
        profiles.append(Profile("careless", rank_noise=25.0))
    return [Annotator(p, "", 0, random.Random(f"{seed}-{p.username}")) for p in profiles]


def pairs_of(prompt: str, tiers_texts: list[list[str]]) -> list[dict]:
    """Every pair a ranking implies (each reply over every reply in a lower tier), as the exports write them."""
    rows = []
    for upper_index, upper in enumerate(tiers_texts):
        for lower in tiers_texts[upper_index + 1:]:
            for chosen in upper:
                for rejected in lower:
                    if chosen != rejected:
                        rows.append({"prompt": [{"role": "user", "content": prompt}],
                                     "chosen": [{"role": "assistant", "content": chosen}],
                                     "rejected": [{"role": "assistant", "content": rejected}]})
    return rows


def heldout_pairs(count_wanted: int, *, taken: set[str]) -> list[dict]:
    """Pairs of replies to the demo's held-out problems whose hidden grades differ, better first; none of
    `taken` (the bench's prompts: past the first 300, held-out problems may repeat a pool prompt)."""
    from training.demo import data as demo_data

    rng = random.Random("heldout-pairs")
    rows = []
    for problem in demo_data.heldout_problems(count=max(300, count_wanted)):
        if problem.prompt in taken:
            continue
        replies = candidates(problem.prompt, rng)
        graded = sorted({(demo_data.reply_grade(problem.prompt, r), r) for r in replies}, reverse=True)
        for (high, better), (low, worse) in zip(graded, graded[1:]):
            if high > low:
                rows.append({"prompt": [{"role": "user", "content": problem.prompt}],
                             "chosen": [{"role": "assistant", "content": better}],
                             "rejected": [{"role": "assistant", "content": worse}]})
        if len(rows) >= count_wanted:
            break
    return rows[:count_wanted]


def round1_pairs(problems, members, rng) -> list[dict]:
    """Round 1: every set ranked by two annotators in turns, straight from the scripted annotators."""
    rows = []
    turn = 0
    for problem in problems:
        replies = candidates(problem.prompt, rng)
        shown = [{"id": i, "text": t} for i, t in enumerate(replies)]
        for _ in range(OVERLAP):
            member = members[turn % len(members)]
            turn += 1
            tiers = member.rank(problem.prompt, shown)
            if tiers is not None:
                rows += pairs_of(problem.prompt, [[replies[i] for i in tier] for tier in tiers])
    return rows


# ---------------------------------------------------------------------------------------------
# The reward model


def init_model(directory: Path, *, init: str | None, seed: int) -> Path:
    """The model every reward model of a seed starts from: --init, or fresh weights of the demo base's shape."""
    if init:
        return Path(init)
    import torch

    from training.demo import data as demo_data
    from training.trainers.scratch import gpt_from_config, tokenizer_train

    folder = directory / f"init-{seed}"
    if not (folder / "config.json").exists():
        torch.manual_seed(seed)
        tokenizer = tokenizer_train(demo_data.corpus(4000), vocab_size=1024)
        model = gpt_from_config(tokenizer, layers=2, heads=4, width=128, context=128)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return folder


def reward_train(rows: list[dict], *, start: Path, out: Path, seed: int, threads: int) -> float:
    """Train a reward model on `rows` with TRL's RewardTrainer (as the reward stage does); return seconds."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import RewardConfig, RewardTrainer

    torch.set_num_threads(threads)
    started = time.monotonic()
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(start)
    model = AutoModelForSequenceClassification.from_pretrained(start, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    with tempfile.TemporaryDirectory() as work:
        args = RewardConfig(output_dir=work, per_device_train_batch_size=32, num_train_epochs=REWARD_EPOCHS,
                            learning_rate=REWARD_LR, max_length=MAX_LENGTH, seed=seed, **CPU_TRAINING)
        trainer = RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
        for quiet in (PrinterCallback, ProgressCallback):  # dozens of runs: the table is the output
            trainer.remove_callback(quiet)
        trainer.train()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return time.monotonic() - started


def policy_candidates(count: int, *, taken: set[str]) -> list[tuple[str, list[str]]]:
    """The best-of-K policy's held-out problems (none of `taken`), each with BEST_OF replies by `candidates()`
    with a fixed seed."""
    from training.demo import data as demo_data

    rng = random.Random("best-of-k")
    problems = [p for p in demo_data.heldout_problems(count=2 * count) if p.prompt not in taken][:count]
    return [(problem.prompt, [reply for _ in range(BEST_OF // K) for reply in candidates(problem.prompt, rng)])
            for problem in problems]


def reward_measure(model_dir: Path, rows: list[dict], policy: list[tuple[str, list[str]]]) -> tuple[int, int]:
    """Return how many held-out pairs the reward model scores the right way round, and how many of the
    policy's problems its best-of-K pick passes the hidden check on."""
    from training.demo import data as demo_data
    from training.trainers.evaluate import RewardScorer

    score = RewardScorer(str(model_dir), max_length=MAX_LENGTH, batch_size=64)
    chosen = score([r["prompt"] + r["chosen"] for r in rows])
    rejected = score([r["prompt"] + r["rejected"] for r in rows])
    correct = sum(c > r for c, r in zip(chosen, rejected))
    scores = score([[{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]
                    for prompt, replies in policy for reply in replies])
    passes = 0
    for index, (prompt, replies) in enumerate(policy):
        mine = scores[index * BEST_OF:(index + 1) * BEST_OF]
        passes += demo_data.reply_check(prompt, replies[mine.index(max(mine))])
    return correct, passes


# ---------------------------------------------------------------------------------------------
# Round 2 through the platform's queue


def round2_project(problems, rng, *, owner):
    """A project holding round 2's candidate sets (one ranking item each), as generation leaves them."""
    from annotate.models import CandidateSet, CandidateSetKind, Message, MessageRole, MessageSource, TaskKind, WorkItem
    from annotate.services import accounts as account_services

    project = account_services.project_create(name=f"active learning {next(_names)} {time.time_ns()}", created_by=owner)
    mix = {kind: 0 for kind in ("prompt", "demonstration", "compare", "label", "review")}
    account_services.project_settings_update(project=project, overlap=OVERLAP, replies_per_ranking=K,
                                             task_mix={**mix, "ranking": 1})
    prompts = Message.objects.bulk_create([Message(project=project, role=MessageRole.USER, text=p.prompt,
                                                   source=MessageSource.IMPORT) for p in problems])
    for prompt in prompts:
        prompt.root_id = prompt.id
    Message.objects.bulk_update(prompts, ["root"])
    texts = [candidates(p.prompt, rng) for p in problems]
    replies = Message.objects.bulk_create([
        Message(project=project, parent=prompt, root_id=prompt.id, depth=1, role=MessageRole.ASSISTANT, text=text,
                source=MessageSource.MODEL)
        for prompt, replies_of in zip(prompts, texts) for text in replies_of])
    sets = CandidateSet.objects.bulk_create([
        CandidateSet(project=project, parent=prompt, kind=CandidateSetKind.RANKING,
                     message_ids=[r.id for r in replies[index * K:(index + 1) * K]])
        for index, prompt in enumerate(prompts)])
    WorkItem.objects.bulk_create([WorkItem(project=project, kind=TaskKind.RANKING, candidate_set=s, needed=OVERLAP,
                                           open_slots=OVERLAP) for s in sets])
    return project


def queue_run(*, problems, order: str, seed: int, members, reward_dir: Path, model_store: Path, owner,
              recompute_every: int) -> tuple[list[dict], dict]:
    """Run round 2's rankings through the queue in `order`; return the judgements in the order given, and figures."""
    from django.contrib.auth import get_user_model

    from annotate.models import Role, WorkItem
    from annotate.selectors.tasks import task_payload
    from annotate.services import accounts as account_services
    from annotate.services import priority, queue
    from annotate.services.submits import task_submit
    from training.models import ModelKind, ModelVersion
    from training.services.priorities import priorities_refresh

    rng = random.Random(f"sets-{seed}")  # the same sets for every order of a seed
    project = round2_project(problems, rng, owner=owner)
    users = []
    for member in members:
        user = get_user_model().objects.create_user(f"{member.profile.username}-{project.id}")
        account_services.membership_set(project=project, user=user, role=Role.ANNOTATOR)
        users.append(user)
    figures = {}
    started = time.monotonic()
    if order == "random":
        shuffle = random.Random(f"order-{seed}")
        items = list(WorkItem.objects.filter(project=project))
        for item in items:
            item.priority = shuffle.random()
        WorkItem.objects.bulk_update(items, ["priority"])
    elif order.startswith("learned"):
        signal = order.split(":", 1)[1]
        account_services.project_settings_update(project=project, adaptive_overlap_cap=ADAPTIVE_CAP)
        folder = reward_dir.relative_to(model_store)
        ModelVersion.objects.create(project=project, kind=ModelKind.REWARD, version=1, folder=str(folder),
                                    config={"max_length": MAX_LENGTH})
        figures["refresh"] = priorities_refresh(project=project, signal=signal, passes=8)
    figures["prepare_s"] = round(time.monotonic() - started, 2)
    budget = len(problems) * OVERLAP
    judged, finished = [], set()
    turn = 0
    while len(judged) < budget and len(finished) < len(users):
        index = turn % len(users)
        turn += 1
        if index in finished:
            continue
        user, member = users[index], members[index]
        task = queue.task_next(project=project, annotator=user, role=Role.ANNOTATOR, kind="ranking")
        if task is None:
            finished.add(index)
            continue
        payload = task_payload(task)
        prompt = payload["conversation"][-1]["text"]
        tiers = member.rank(prompt, payload["candidates"])
        if tiers is None:
            queue.task_skip(task=task, annotator=user)
            continue
        task_submit(task_id=task.id, annotator=user, submit_key=f"b{task.id}", payload={"tiers": tiers})
        by_id = {c["id"]: c["text"] for c in payload["candidates"]}
        judged.append({"item": task.item_id, "prompt": prompt, "tiers": [[by_id[i] for i in tier] for tier in tiers]})
        if order.startswith("learned") and len(judged) % recompute_every == 0:
            priority.priorities_recompute(project=project, seconds=30)
    figures["judgements"] = len(judged)
    figures["sets_judged"] = len({j["item"] for j in judged})
    figures["sets_extended"] = WorkItem.objects.filter(project=project, needed__gt=OVERLAP).count()
    figures["queue_s"] = round(time.monotonic() - started, 2)
    return judged, figures


# ---------------------------------------------------------------------------------------------


def wilson(correct: int, total: int) -> tuple[float, float]:
    from training.demo.data import score_interval

    return score_interval(correct, total)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default="/tmp/active-learning")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budgets", type=int, nargs="+", default=[20, 40, 60, 80, 100])
    parser.add_argument("--signals", nargs="+", default=["gap", "dropout"])
    parser.add_argument("--round1-sets", type=int, default=25)
    parser.add_argument("--round2-sets", type=int, default=200)
    parser.add_argument("--heldout-pairs", type=int, default=1000)
    parser.add_argument("--policy-problems", type=int, default=400, help="held-out problems of the best-of-K policy")
    parser.add_argument("--recompute-every", type=int, default=30)
    parser.add_argument("--noisy", action="store_true", help="noisier annotators and a careless one")
    parser.add_argument("--init", help="an SFT model directory the reward models start from")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    setup_django()
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from annotate.services import priority
    from training.demo import data as demo_data

    directory = Path(args.dir)
    model_store = directory / "models"
    model_store.mkdir(parents=True, exist_ok=True)
    settings.MODEL_STORE = model_store
    # The bench takes tasks faster than a person: let the lease look at agreement every time.
    priority.ADAPT_EVERY_SECONDS = 0.0
    call_command("migrate", verbosity=0)
    owner = get_user_model().objects.create_user(f"bench-owner-{time.time_ns()}", is_staff=True)

    load = os.getloadavg()
    began = time.monotonic()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    pool = demo_data.prompt_pool(args.round1_sets + args.round2_sets)
    round1, round2 = pool[:args.round1_sets], pool[args.round1_sets:]
    taken = {p.prompt for p in pool}
    heldout = heldout_pairs(args.heldout_pairs, taken=taken)
    policy = policy_candidates(args.policy_problems, taken=taken)
    passing = sum(demo_data.reply_check(prompt, replies[0]) for prompt, replies in policy)
    reachable = sum(any(demo_data.reply_check(prompt, r) for r in replies) for prompt, replies in policy)
    print(f"best-of-{BEST_OF} policy on {len(policy)} held-out problems: a random pick passes "
          f"{passing / len(policy):.3f}, a perfect reward model {reachable / len(policy):.3f}", flush=True)
    orders = list(ORDERS_BASE) + [f"learned:{signal}" for signal in args.signals]
    results = {"args": vars(args), "load_at_start": load, "heldout_pairs": len(heldout),
               "policy_problems": len(policy), "policy_random_pick": passing, "policy_ceiling": reachable, "runs": []}
    full = len(round2) * OVERLAP

    def measured(model_dir):
        correct, passes = reward_measure(model_dir, heldout, policy)
        said = (f"{correct / len(heldout):.3f} on {len(heldout)} held-out pairs, "
                f"best-of-{BEST_OF} passes {passes / len(policy):.3f}")
        return {"correct": correct, "passes": passes}, said

    for seed in args.seeds:
        members = team(noisy=args.noisy, seed=seed)
        start = init_model(model_store, init=args.init, seed=seed)
        base_rows = round1_pairs(round1, members, random.Random(f"round1-{seed}"))
        rm1 = model_store / f"seed{seed}-round1"
        seconds = reward_train(base_rows, start=start, out=rm1, seed=seed, threads=args.threads)
        figures, said = measured(rm1)
        print(f"seed {seed}: round 1 reward model on {len(base_rows)} pairs: {said} ({seconds:.0f} s)", flush=True)
        results["runs"].append({"seed": seed, "order": "round 1", "budget": 0, **figures, "pairs": len(base_rows),
                                "train_s": seconds})
        trained_full = None
        for order in orders:
            members = team(noisy=args.noisy, seed=seed)  # each order meets the same annotators' noise
            judged, queue_figures = queue_run(problems=round2, order=order, seed=seed, members=members,
                                              reward_dir=rm1, model_store=model_store, owner=owner,
                                              recompute_every=args.recompute_every)
            print(f"seed {seed} {order}: {queue_figures}", flush=True)
            for budget in args.budgets:
                n = round(full * budget / 100)
                if budget == 100 and order in ORDERS_BASE and trained_full is not None:
                    # Oldest first and random hold the same rankings at the full budget: trained once.
                    results["runs"].append({**trained_full, "order": order})
                    continue
                rows = base_rows + [row for j in judged[:n] for row in pairs_of(j["prompt"], j["tiers"])]
                out = model_store / f"seed{seed}-{order.replace(':', '-')}-{budget}"
                seconds = reward_train(rows, start=start, out=out, seed=seed, threads=args.threads)
                figures, said = measured(out)
                run = {"seed": seed, "order": order, "budget": budget, "judgements": min(n, len(judged)), **figures,
                       "pairs": len(rows), "train_s": round(seconds, 1), **queue_figures}
                results["runs"].append(run)
                if budget == 100 and order in ORDERS_BASE:
                    trained_full = run
                print(f"  {order:16} {budget:3}%: {said} ({len(rows)} pairs, {seconds:.0f} s)", flush=True)
        (directory / "results.json").write_text(json.dumps(results, indent=1, default=str))
    report(results, orders, args.budgets)
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"wall time {(time.monotonic() - began) / 60:.1f} min")


def report(results, orders, budgets):
    """Print per order and budget the reward model's held-out accuracy and the best-of-K policy's hidden-check
    share, pooled over the seeds with their intervals, where each reaches the full budget, and the seeds."""
    measures = (("correct", results["heldout_pairs"], "reward model's held-out pair accuracy"),
                ("passes", results["policy_problems"], f"best-of-{BEST_OF} policy's hidden-check share"))

    def pooled(order, budget, key, size):
        runs = [r for r in results["runs"] if r["order"] == order and r["budget"] == budget]
        return runs, sum(r[key] for r in runs), size * len(runs)

    for key, size, title in measures:
        _, correct, total = pooled("oldest", 100, key, size)
        low, high = wilson(correct, total) if total else (0.0, 0.0)
        _, first, first_total = pooled("round 1", 0, key, size)
        print(f"\n{title}, pooled over the seeds ({size} per seed), Wilson 95% intervals")
        print(f"round 1 alone: {first / max(1, first_total):.3f} {_interval(first, first_total)}; "
              f"full budget (oldest first = random at 100%): {correct / max(1, total):.3f} [{low:.3f}, {high:.3f}]")
        print(f"{'order':16} " + " ".join(f"{b:>22}%" for b in budgets) + "   reaches at")
        for order in orders:
            cells, reaches = [], None
            for budget in budgets:
                runs, c, t = pooled(order, budget, key, size)
                if not t:
                    cells.append(f"{'-':>23}")
                    continue
                cells.append(f"{c / t:.3f} {_interval(c, t)} n{len(runs)}".rjust(23))
                if reaches is None and c / t >= low:
                    reaches = budget
            print(f"{order:16} " + " ".join(cells) + f"   {reaches if reaches is not None else '-'}%")
    print("\nper seed (held-out accuracy / best-of-K share):")
    for order in ["round 1"] + orders:
        line = [f"{order:16}"]
        for r in results["runs"]:
            if r["order"] == order:
                line.append(f"s{r['seed']}/{r['budget']}%={r['correct'] / results['heldout_pairs']:.3f}/"
                            f"{r['passes'] / results['policy_problems']:.3f}")
        print(" ".join(line))


def _interval(correct: int, total: int) -> str:
    low, high = wilson(correct, total) if total else (0.0, 0.0)
    return f"[{low:.3f},{high:.3f}]"


if __name__ == "__main__":
    main()
