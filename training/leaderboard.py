"""Bradley-Terry strengths of model versions from pairwise votes, with bootstrap intervals.

Pure Python (no Django, no numpy): votes are (a, b, score) with score 1 when a won, 0 when b
won and 0.5 for a tie.
"""

import math
import random
from collections import defaultdict


def bradley_terry(votes: list[tuple[str, str, float]], *, iterations: int = 200, prior: float = 0.5) -> dict[str, float]:
    """Fit strengths by the MM algorithm (Hunter 2004); return log-strengths centred on 0.

    `prior` adds that many virtual ties between every pair that met, so a version that won
    every game gets a large finite strength instead of an infinite one.
    """
    players = sorted({a for a, _, _ in votes} | {b for _, b, _ in votes})
    if not players:
        return {}
    wins: dict[str, float] = defaultdict(float)
    games: dict[tuple[str, str], float] = defaultdict(float)
    for a, b, score in votes:
        wins[a] += score
        wins[b] += 1 - score
        games[(a, b)] += 1
        games[(b, a)] += 1
    for (a, b) in list(games):
        if a < b:
            games[(a, b)] += 2 * prior
            games[(b, a)] += 2 * prior
            wins[a] += prior
            wins[b] += prior
    strength = {p: 1.0 for p in players}
    for _ in range(iterations):
        updated = {}
        for p in players:
            denominator = sum(n / (strength[p] + strength[q]) for (x, q), n in games.items() if x == p)
            updated[p] = wins[p] / denominator if denominator else strength[p]
        mean_log = sum(math.log(max(v, 1e-300)) for v in updated.values()) / len(updated)
        strength = {p: v / math.exp(mean_log) for p, v in updated.items()}
    return {p: math.log(max(v, 1e-300)) for p, v in strength.items()}


def leaderboard(votes: list[tuple[str, str, float]], *, samples: int = 200, seed: int = 0, level: float = 0.95) -> list[dict]:
    """Rank versions by Bradley-Terry strength with a bootstrap interval (votes resampled with replacement)."""
    point = bradley_terry(votes)
    rng = random.Random(seed)
    draws: dict[str, list[float]] = defaultdict(list)
    for _ in range(samples if votes else 0):
        fitted = bradley_terry([votes[rng.randrange(len(votes))] for _ in votes], iterations=60)
        for player in point:
            draws[player].append(fitted.get(player, 0.0))
    played: dict[str, int] = defaultdict(int)
    won: dict[str, float] = defaultdict(float)
    for a, b, score in votes:
        played[a] += 1
        played[b] += 1
        won[a] += score
        won[b] += 1 - score
    tail = (1 - level) / 2
    rows = []
    for player, value in point.items():
        ordered = sorted(draws[player])
        low = ordered[int(tail * (len(ordered) - 1))] if ordered else value
        high = ordered[int((1 - tail) * (len(ordered) - 1))] if ordered else value
        rows.append({"version": player, "strength": value, "low": low, "high": high,
                     "games": played[player], "win_rate": won[player] / played[player] if played[player] else None})
    return sorted(rows, key=lambda row: -row["strength"])
