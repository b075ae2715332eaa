"""Consensus and agreement over rankings given as tiers (best first). Pure functions.

- pairs: `tier_pairs` is the one place a ranking's pairs come from (tier i above tier j gives
  each reply of i over each of j; ties and "all bad" give none), for agreement, consensus and the
  preference exports alike.
- consensus: ranked pairs (Tideman), as Open-Assistant did: count, for every pair of replies,
  how many annotators put one above the other (or the sum of their weights, for the consensus
  weighted by reliability in annotate.consensus); lock pairs in order of their majority,
  skipping any that would make a cycle; the locked graph orders the replies.
- Kendall's W per candidate set, with the tie correction.
- Krippendorff's alpha, ordinal metric, over all sets of a project (units: replies; values:
  tier positions).
- Kendall's tau-b between two tier rankings.
"""

from collections import Counter, defaultdict
from collections.abc import Iterator
from itertools import combinations, product


def positions(tiers: list[list[int]]) -> dict[int, int]:
    """Return each reply's tier index (0 best)."""
    return {item: index for index, tier in enumerate(tiers) for item in tier}


def mid_ranks(tiers: list[list[int]]) -> dict[int, float]:
    """Return each reply's rank 1..n, ties getting the mean of the ranks they span."""
    ranks, start = {}, 1
    for tier in tiers:
        mean = start + (len(tier) - 1) / 2
        for item in tier:
            ranks[item] = mean
        start += len(tier)
    return ranks


def tier_pairs(tiers: list[list[int]], keep=None) -> Iterator[tuple[int, int, int]]:
    """Yield (better, worse, margin) for every pair a ranking implies, best tiers first.

    `margin` is how many tiers apart the annotator put them (1 for neighbouring tiers). With
    `keep`, replies not in it are left out but the tiers keep their places, so the margin stays
    the distance the annotator set, whatever else was left out.
    """
    placed = [(place, [m for m in tier if keep is None or m in keep]) for place, tier in enumerate(tiers)]
    placed = [(place, tier) for place, tier in placed if tier]
    for (upper_place, upper), (lower_place, lower) in combinations(placed, 2):
        for better, worse in product(upper, lower):
            yield better, worse, lower_place - upper_place


def pairwise_wins(rankings: list[list[list[int]]], weights: list[float] | None = None) -> Counter:
    """Count, for each ordered pair (a, b), the rankings that put a above b (or sum their weights)."""
    wins = Counter()
    for index, tiers in enumerate(rankings):
        weight = 1 if weights is None else weights[index]
        for better, worse, _margin in tier_pairs(tiers):
            wins[(better, worse)] += weight
    return wins


def ranked_pairs(items: list[int], rankings: list[list[list[int]]], weights: list[float] | None = None) -> list[int]:
    """Return the consensus order of `items`, best first, by ranked pairs (each ranking counting
    its weight, where given)."""
    wins = pairwise_wins(rankings, weights)
    majorities = []
    for a, b in combinations(items, 2):
        # Rounded: sums of float weights that are equal on paper (0.1 + 0.2 against 0.3) are a tie.
        ab, ba = round(wins[(a, b)], 9), round(wins[(b, a)], 9)
        if ab > ba:
            majorities.append((ab - ba, ab, a, b))
        elif ba > ab:
            majorities.append((ba - ab, ba, b, a))
    # Strongest majority first; ties broken by the ids so the result is deterministic.
    majorities.sort(key=lambda m: (-m[0], -m[1], m[2], m[3]))
    beats = defaultdict(set)

    def reaches(start, goal):
        stack, seen = [start], set()
        while stack:
            node = stack.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                stack.extend(beats[node])
        return False

    for _margin, _count, winner, loser in majorities:
        if not reaches(loser, winner):
            beats[winner].add(loser)
    # Order by how many replies each one (transitively) beats in the locked graph.
    def beaten(item):
        stack, seen = list(beats[item]), set()
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(beats[node])
        return len(seen)

    original = {item: index for index, item in enumerate(items)}
    return sorted(items, key=lambda item: (-beaten(item), original[item]))


def kendall_w(rankings: list[list[list[int]]]) -> float | None:
    """Kendall's coefficient of concordance of m rankings of the same n items (tie-corrected)."""
    m = len(rankings)
    if m < 2:
        return None
    items = sorted(positions(rankings[0]))
    n = len(items)
    if n < 2:
        return None
    totals = defaultdict(float)
    tie_correction = 0.0
    for tiers in rankings:
        ranks = mid_ranks(tiers)
        for item in items:
            totals[item] += ranks[item]
        tie_correction += sum(len(tier) ** 3 - len(tier) for tier in tiers)
    mean = m * (n + 1) / 2
    s = sum((totals[item] - mean) ** 2 for item in items)
    denominator = m * m * (n**3 - n) - m * tie_correction
    if denominator <= 0:
        return None
    return 12 * s / denominator


def kendall_tau_b(first: list[list[int]], second: list[list[int]]) -> float | None:
    """Kendall's tau-b between two tier rankings of the same items."""
    a, b = positions(first), positions(second)
    items = sorted(set(a) & set(b))
    concordant = discordant = ties_a = ties_b = 0
    for x, y in combinations(items, 2):
        da = (a[x] > a[y]) - (a[x] < a[y])
        db = (b[x] > b[y]) - (b[x] < b[y])
        if da == 0 and db == 0:
            continue
        if da == 0:
            ties_a += 1
        elif db == 0:
            ties_b += 1
        elif da == db:
            concordant += 1
        else:
            discordant += 1
    denominator = ((concordant + discordant + ties_a) * (concordant + discordant + ties_b)) ** 0.5
    if denominator == 0:
        return None
    return (concordant - discordant) / denominator


def krippendorff_alpha_ordinal(units: list[list[float]]) -> float | None:
    """Krippendorff's alpha with the ordinal metric.

    `units` holds, for each unit (a reply), the values the coders gave it (its rank); units
    with fewer than two values are not pairable and are left out.
    """
    pairable = [values for values in units if len(values) >= 2]
    if not pairable:
        return None
    coincidence = defaultdict(float)
    for values in pairable:
        m = len(values)
        for i, c in enumerate(values):
            for j, k in enumerate(values):
                if i != j:
                    coincidence[(c, k)] += 1 / (m - 1)
    categories = sorted({value for values in pairable for value in values})
    if len(categories) < 2:
        return 1.0
    marginal = {c: sum(coincidence[(c, k)] for k in categories) for c in categories}
    total = sum(marginal.values())

    def distance(c, k):
        low, high = sorted((categories.index(c), categories.index(k)))
        between = sum(marginal[categories[g]] for g in range(low, high + 1))
        return (between - (marginal[c] + marginal[k]) / 2) ** 2

    observed = sum(coincidence[(c, k)] * distance(c, k) for c in categories for k in categories)
    expected = sum(marginal[c] * marginal[k] * distance(c, k) for c in categories for k in categories)
    if expected == 0:
        return None
    return 1 - (total - 1) * observed / expected
