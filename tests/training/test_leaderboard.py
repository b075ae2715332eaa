"""The Bradley-Terry fit behind the arena leaderboard: hand-checked cases, the prior, the bootstrap."""

import math
import random

import pytest

from training.leaderboard import INTERVAL_MIN_VOTES, bradley_terry, leaderboard


def test_two_versions_one_winning_three_of_four_with_the_prior():
    # With the prior's half a virtual tie: a has 3 + 0.5 wins and b 1 + 0.5 in 4 + 1 games, so
    # a beats b with probability 3.5 / 5 and the ratio of strengths is 3.5 / 1.5; centred on 0.
    votes = [("a", "b", 1.0)] * 3 + [("b", "a", 1.0)]
    half = math.log(3.5 / 1.5) / 2
    assert bradley_terry(votes) == pytest.approx({"a": half, "b": -half}, abs=1e-12)
    board = leaderboard(votes, samples=50)
    assert [row["version"] for row in board] == ["a", "b"]
    assert board[0]["strength"] == pytest.approx(half, abs=1e-12)
    assert (board[0]["games"], board[0]["win_rate"]) == (4, 0.75)
    assert (board[1]["games"], board[1]["win_rate"]) == (4, 0.25)


def test_a_version_that_won_every_game_gets_a_finite_strength():
    half = math.log(4.5 / 0.5) / 2  # 4 wins and 0 plus half a tie each
    assert bradley_terry([("a", "b", 1.0)] * 4) == pytest.approx({"a": half, "b": -half}, abs=1e-12)
    # Ties count half a win to each side.
    assert bradley_terry([("a", "b", 0.5)] * 4) == pytest.approx({"a": 0.0, "b": 0.0}, abs=1e-12)


def test_the_prior_ties_only_pairs_that_met():
    # a beat b twice and b beat c twice; a and c never met. With virtual ties only between a-b and
    # b-c, a beats b and b beats c each with probability 2.5 / 3: ratios of 5, so ln 5, 0, -ln 5.
    # (A virtual tie between a and c too would pull a and c together.)
    votes = [("a", "b", 1.0)] * 2 + [("c", "b", 0.0)] * 2
    fitted = bradley_terry(votes)
    assert fitted == pytest.approx({"a": math.log(5), "b": 0.0, "c": -math.log(5)}, abs=1e-6)


def test_the_bootstrap_brackets_the_fit_and_is_the_same_for_the_same_votes():
    rng = random.Random(1)
    votes = [(x, y, rng.choice([1.0, 1.0, 0.0, 0.5])) for x, y in (rng.sample("abcd", 2) for _ in range(400))]
    board = leaderboard(votes, samples=100, seed=3)
    assert all(row["low"] <= row["strength"] <= row["high"] for row in board)
    assert [row["strength"] for row in board] == sorted((row["strength"] for row in board), reverse=True)
    assert sum(row["strength"] for row in board) == pytest.approx(0.0, abs=1e-9)
    assert leaderboard(votes, samples=100, seed=3) == board
    assert sum(row["games"] for row in board) == 2 * len(votes)
    assert all(type(row[key]) is float for row in board for key in ("strength", "low", "high", "win_rate"))


def test_a_version_left_out_of_a_resample_counts_as_zero_there():
    # "c" played once in 200 votes: about a third of the resamples leave it out, and there it
    # counts as 0 (the centre), so its interval reaches 0 although its fit is far below.
    votes = [("a", "b", 1.0), ("b", "a", 1.0)] * 100 + [("a", "c", 1.0)]
    board = {row["version"]: row for row in leaderboard(votes, samples=200, min_votes=0)}
    assert board["c"]["strength"] < -0.5 and board["c"]["high"] == 0.0


def test_a_version_with_few_votes_gets_its_count_and_no_interval():
    # a won all 3 of its votes against b: every resample is all wins again, an interval of nothing.
    few = {row["version"]: row for row in leaderboard([("a", "b", 1.0)] * 3, samples=50)}
    assert (few["a"]["games"], few["a"]["low"], few["a"]["high"]) == (3, None, None)
    enough = [("a", "b", 1.0)] * (INTERVAL_MIN_VOTES - 5) + [("b", "a", 1.0)] * 5
    board = {row["version"]: row for row in leaderboard(enough, samples=50)}
    assert board["a"]["games"] == INTERVAL_MIN_VOTES
    assert board["a"]["low"] < board["a"]["strength"] < board["a"]["high"]


def test_no_votes_give_an_empty_board():
    assert leaderboard([]) == [] and bradley_terry([]) == {}


def test_bradley_terry_recovers_a_known_order_from_noisy_votes():
    rng = random.Random(0)
    truth = {"a": 1.5, "b": 0.5, "c": -0.5, "d": -1.5}
    names = list(truth)
    votes = []
    for _ in range(2000):
        x, y = rng.sample(names, 2)
        p = 1 / (1 + math.exp(truth[y] - truth[x]))
        votes.append((x, y, 1.0 if rng.random() < p else 0.0))
    board = leaderboard(votes, samples=50)
    assert [row["version"] for row in board] == ["a", "b", "c", "d"]
    fitted = {row["version"]: row["strength"] for row in board}
    # Strengths are identified up to a shift: compare differences.
    assert abs((fitted["a"] - fitted["d"]) - 3.0) < 0.4
