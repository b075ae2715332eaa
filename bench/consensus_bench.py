"""Does weighting each annotator by their measured reliability bring the consensus closer to the truth?

Five scripted annotators rank --sets candidate sets of --k replies whose true order is known; 0, 1 and
then 2 of them rank at random, the rest by the true quality plus Gaussian noise (--noise: how far a
careful annotator's sense of quality wanders, in units of the gap between neighbouring replies). The
first --gold sets are gold: each annotator's gold accuracy is how often their top reply there is the
true best. Every set is ranked by all five.

Measured on the held-out sets (the rest, never used for gold): the share of their pairs where the
consensus order agrees with the true order, for
- unweighted: ranked pairs over everyone's rankings (annotate.agreement.ranked_pairs), today's consensus;
- weighted: ranked pairs with each ranking counting its annotator's reliability (annotate.consensus:
  leave-one-out agreement, times gold accuracy);
- weighted, no gold: the same from the leave-one-out agreement alone;
- noisy BT: crowd-kit's NoisyBradleyTerry over every implied pair (a skill per annotator it learns itself).

    .venv/bin/python bench/consensus_bench.py --seeds 0 1 2

Prints one row per number of random annotators: each estimator's agreement with the truth per seed and
pooled, and the weighted consensus's gain over the unweighted one in points. Pure Python on the
platform's functions; no database.
"""

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from annotate import agreement, consensus  # noqa: E402

ANNOTATORS = 5


def scripted_rankings(rng: random.Random, *, sets: int, k: int, random_annotators: int, noise: float):
    """Return ({set: true order best first}, {set: [(annotator, tiers)]}) for five annotators, the
    last `random_annotators` of them ranking at random."""
    truth, by_set = {}, {}
    for set_id in range(sets):
        items = [set_id * k + offset for offset in range(k)]
        rng.shuffle(items)
        truth[set_id] = list(items)
        rows = []
        for annotator in range(ANNOTATORS):
            if annotator >= ANNOTATORS - random_annotators:
                order = rng.sample(items, k)
            else:
                # True quality k-1 .. 0 (best first), seen through the annotator's noise.
                seen = {item: (k - place) + rng.gauss(0, noise) for place, item in enumerate(items)}
                order = sorted(items, key=lambda item: -seen[item])
            rows.append((annotator, [[item] for item in order]))
        by_set[set_id] = rows
    return truth, by_set


def pairs_agreeing(order: list[int], truth: list[int]) -> tuple[int, int]:
    """Return (pairs of `truth` that `order` puts the same way, pairs)."""
    place = {item: index for index, item in enumerate(order)}
    agree = total = 0
    for better, worse, _ in agreement.tier_pairs([[item] for item in truth]):
        agree += place[better] < place[worse]
        total += 1
    return agree, total


def measure(seed: int, *, sets: int = 80, gold: int = 20, k: int = 4, random_annotators: int = 2,
            noise: float = 1.5, bradley_terry: bool = True) -> dict[str, tuple[int, int]]:
    """Return, per estimator, (held-out pairs agreeing with the truth, held-out pairs) for one seed."""
    rng = random.Random(seed)
    truth, by_set = scripted_rankings(rng, sets=sets, k=k, random_annotators=random_annotators, noise=noise)
    gold_sets = range(gold)
    accuracy = {
        annotator: (sum(by_set[s][annotator][1][0][0] == truth[s][0] for s in gold_sets), gold)
        for annotator in range(ANNOTATORS)
    }
    weights = consensus.reliability_weights(by_set, gold=accuracy)
    agreement_only = consensus.reliability_weights(by_set)
    held_out = [s for s in by_set if s >= gold]
    orders = {
        "unweighted": {s: agreement.ranked_pairs(sorted(truth[s]), [t for _, t in by_set[s]]) for s in held_out},
        "weighted": {s: consensus.weighted_order(sorted(truth[s]), by_set[s], weights) for s in held_out},
        "weighted, no gold": {s: consensus.weighted_order(sorted(truth[s]), by_set[s], agreement_only)
                              for s in held_out},
    }
    if bradley_terry:
        orders["noisy BT"] = consensus.bradley_terry_orders(by_set, seed=seed)[0]
    result = {}
    for name, by in orders.items():
        counts = [pairs_agreeing(by[s], truth[s]) for s in held_out]
        result[name] = (sum(a for a, _ in counts), sum(t for _, t in counts))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sets", type=int, default=80)
    parser.add_argument("--gold", type=int, default=20)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--noise", type=float, default=1.5)
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"{ANNOTATORS} annotators, {args.sets} sets of {args.k} ({args.gold} gold), noise {args.noise}, "
          f"seeds {args.seeds}: share of held-out pairs agreeing with the true order")
    print(f"{'random':>6}  {'estimator':<18} {'per seed':<24} {'pooled':>7}  {'vs unweighted':>13}")
    for random_annotators in (0, 1, 2):
        runs = [measure(seed, sets=args.sets, gold=args.gold, k=args.k, random_annotators=random_annotators,
                        noise=args.noise) for seed in args.seeds]
        pooled = {name: sum(run[name][0] for run in runs) / sum(run[name][1] for run in runs) for name in runs[0]}
        for name in runs[0]:
            per_seed = " ".join(f"{run[name][0] / run[name][1]:.3f}" for run in runs)
            gain = 100 * (pooled[name] - pooled["unweighted"])
            print(f"{random_annotators:>6}  {name:<18} {per_seed:<24} {pooled[name]:>7.3f}  {gain:>+12.1f}p")
    print(f"({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
