"""The consensus weighted by each annotator's measured reliability.

An annotator's reliability is their agreement with the leave-one-out consensus: the mean Kendall
tau-b of each of their rankings against the ranked-pairs order of everyone else's rankings of the
same set, counted as 0 below 0 (ranking at random, or against the others, earns no say) and shrunk
toward PRIOR_RELIABILITY while they have few sets with others (one lucky set is no evidence). Where
the gold items' selector exists (annotate.selectors.gold.gold_accuracy), it is multiplied by their
gold accuracy, smoothed the same way: both must be high for a high weight.

The weighted consensus of a set is ranked pairs with each ranking counting its annotator's weight
(annotate.agreement.ranked_pairs), which keeps Open-Assistant's order for equal weights and handles
tiers, any K and "all bad" the way the rest of the platform does. crowd-kit's NoisyBradleyTerry,
which learns a skill per annotator from pairwise votes alone, is here too (`bradley_terry_orders`)
but is not what the exports use: bench/consensus_bench.py measured it 1.3 points over the
unweighted order with two random annotators of five, against 6.9 for the weighted ranked pairs
(its learned skills barely told the random annotators from the careful ones).

Imported rankings are weighed like the project's own, one identity per source user: they count
for the order (as in the unweighted consensus), though the agreement figures leave them out.
"""

from collections import defaultdict
from collections.abc import Iterable, Iterator
from itertools import groupby

from annotate import agreement

# Reliability with no evidence yet, and how many sets of evidence it is worth: an annotator's
# weight moves from the prior to their measured figure as their sets with others add up.
PRIOR_RELIABILITY = 0.5
PRIOR_SETS = 2
# No weight is 0: where everyone on a set ranked at random, their order still beats none.
MIN_WEIGHT = 0.01


def annotator_key(annotator_id: int | None, external_annotator: str | None):
    """Return who made a ranking: the user id, or an imported ranking's source identity."""
    return annotator_id if annotator_id is not None else f"external:{external_annotator}"


def leave_one_out_agreement(sets: Iterable[list]) -> dict:
    """Return, per annotator, (sum of tau-b against the leave-one-out consensus, sets counted).

    `sets` gives each set's [(annotator, tiers)], one set at a time (a stream is enough); a set
    only one annotator ranked says nothing about them and is not counted.
    """
    taus = defaultdict(lambda: [0.0, 0])
    for rows in sets:
        tiers_list = [tiers for _, tiers in rows]
        for index, (who, tiers) in enumerate(rows):
            others = tiers_list[:index] + tiers_list[index + 1 :]
            if not others:
                continue
            items = sorted(agreement.positions(tiers))
            consensus = agreement.ranked_pairs(items, others)
            tau = agreement.kendall_tau_b(tiers, [[item] for item in consensus])
            if tau is not None:
                taus[who][0] += tau
                taus[who][1] += 1
    return {who: (total, count) for who, (total, count) in taus.items()}


def reliability_weights(by_set: dict, *, gold: dict | None = None) -> dict:
    """Return each annotator's weight (MIN_WEIGHT to 1) from their leave-one-out agreement and,
    where given, `gold` accuracy as {annotator: (correct, answered)}."""
    return weights_from(leave_one_out_agreement(by_set.values()), gold=gold)


def weights_from(measured: dict, *, gold: dict | None = None) -> dict:
    """Return each annotator's weight from their measured (sum of tau-b, sets) and gold accuracy."""
    weights = {}
    for who in set(measured) | set(gold or {}):
        total, count = measured.get(who, (0.0, 0))
        # A negative tau is clipped per annotator, not per set: a good annotator's odd set averages out.
        reliability = (max(0.0, total) + PRIOR_RELIABILITY * PRIOR_SETS) / (count + PRIOR_SETS)
        if gold and who in gold:
            correct, answered = gold[who]
            reliability *= (correct + PRIOR_RELIABILITY * PRIOR_SETS) / (answered + PRIOR_SETS)
        weights[who] = max(MIN_WEIGHT, min(1.0, reliability))
    return weights


def project_weights(*, project) -> dict:
    """Return the weight of everyone who ranked in `project` ({annotator_key: weight}), from their
    leave-one-out agreement over all its sets and their gold accuracy where it is measured.

    The rankings stream set by set, so memory stays flat however large the project; an export's
    filters do not apply: reliability is the annotator's, measured on everything they did here.
    """
    return weights_from(leave_one_out_agreement(_ranked_sets(project)), gold=_gold_accuracy(project))


def _ranked_sets(project) -> Iterator[list]:
    # Imported here, not at the top: the pure functions above run without Django (bench/).
    from annotate.models import Ranking

    rows = (
        Ranking.objects.filter(candidate_set__project=project, all_bad=False)
        .order_by("candidate_set_id", "id")
        .values_list("candidate_set_id", "annotator_id", "external_annotator", "tiers")
        .iterator(chunk_size=2000)
    )
    for _set_id, group in groupby(rows, key=lambda row: row[0]):
        yield [(annotator_key(annotator_id, external), tiers) for _, annotator_id, external, tiers in group]


def _gold_accuracy(project) -> dict | None:
    """Return {user id: (correct, answered)} on the project's gold items, or None without them."""
    # The hook for gold items (issue 19): their selector lands with the gold work; until it does,
    # the leave-one-out agreement alone weighs each annotator.
    try:
        from annotate.selectors.gold import gold_accuracy
    except ImportError:
        return None
    return gold_accuracy(project=project)


def weighted_order(items: list[int], rows: list, weights: dict) -> list[int]:
    """Return the consensus order of `items` by ranked pairs, each ranking of `rows`
    [(annotator, tiers)] counting its annotator's weight (PRIOR_RELIABILITY for one not weighed)."""
    return agreement.ranked_pairs(
        items, [tiers for _, tiers in rows], [weights.get(who, PRIOR_RELIABILITY) for who, _ in rows]
    )


def bradley_terry_orders(by_set: dict, *, n_iter: int = 100, seed: int = 0) -> tuple[dict, dict]:
    """Return ({set: order best first}, {annotator: skill}) from crowd-kit's NoisyBradleyTerry
    fitted on every pair the rankings imply.

    Each pair goes in with its replies by id order as left and right, so the model's position bias
    (which side an annotator favours) learns nothing from which reply won.
    """
    import numpy as np
    import pandas as pd
    from crowdkit.aggregation import NoisyBradleyTerry

    votes = []
    for rows in by_set.values():
        for who, tiers in rows:
            for better, worse, _margin in agreement.tier_pairs(tiers):
                left, right = sorted((better, worse))
                votes.append((str(who), left, right, better))
    if not votes:
        return {}, {}
    # NoisyBradleyTerry starts from random skills and biases drawn from numpy's global state.
    np.random.seed(seed)
    model = NoisyBradleyTerry(n_iter=n_iter).fit(pd.DataFrame(votes, columns=["worker", "left", "right", "label"]))
    scores = model.scores_.to_dict()
    orders = {}
    for set_id, rows in by_set.items():
        items = sorted({item for _, tiers in rows for tier in tiers for item in tier})
        orders[set_id] = sorted(items, key=lambda item: (-scores.get(item, 0.0), item))
    return orders, model.skills_.to_dict()
