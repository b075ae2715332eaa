import pytest

from annotate import agreement


def test_ranked_pairs_follows_the_majority_and_breaks_cycles_at_the_weakest_pair():
    # 3 say a>b>c, 2 say b>c>a, 1 says c>a>b: a>b (4:2), b>c (5:1), c>a (3:3 tie) -> a, b, c.
    rankings = [[[1], [2], [3]]] * 3 + [[[2], [3], [1]]] * 2 + [[[3], [1], [2]]]
    assert agreement.ranked_pairs([1, 2, 3], rankings) == [1, 2, 3]
    # A Condorcet cycle: a>b 2:1, b>c 2:1, c>a 2:1 with margins equal; no crash, a full order.
    cycle = [[[1], [2], [3]], [[2], [3], [1]], [[3], [1], [2]]]
    # Equal margins: the pairs lock in id order (1>2, then 2>3; 3>1 would close a cycle).
    assert agreement.ranked_pairs([1, 2, 3], cycle) == [1, 2, 3]
    assert agreement.ranked_pairs([3, 1, 2], [[[2], [1], [3]]] * 2 + [[[1], [2], [3]]]) == [2, 1, 3]


def test_ranked_pairs_with_ties_in_tiers():
    rankings = [[[1, 2], [3]], [[2], [1], [3]]]
    assert agreement.ranked_pairs([1, 2, 3], rankings) == [2, 1, 3]


def test_kendall_w_is_1_for_full_agreement_and_0_for_opposites():
    same = [[[1], [2], [3], [4]]] * 3
    assert agreement.kendall_w(same) == pytest.approx(1.0)
    opposite = [[[1], [2], [3], [4]], [[4], [3], [2], [1]]]
    assert agreement.kendall_w(opposite) == pytest.approx(0.0)


def test_kendall_w_textbook_value():
    # 3 judges, 4 items with ranks (1,2,3,4), (2,1,3,4), (1,3,2,4): R = 4, 6, 8, 12.
    # S = (4-7.5)^2 + (6-7.5)^2 + (8-7.5)^2 + (12-7.5)^2 = 35; W = 12*35 / (9*60) = 0.7778.
    rankings = [[[1], [2], [3], [4]], [[2], [1], [3], [4]], [[1], [3], [2], [4]]]
    assert agreement.kendall_w(rankings) == pytest.approx(12 * 35 / (9 * 60))


def test_kendall_tau_b():
    assert agreement.kendall_tau_b([[1], [2], [3]], [[1], [2], [3]]) == pytest.approx(1.0)
    assert agreement.kendall_tau_b([[1], [2], [3]], [[3], [2], [1]]) == pytest.approx(-1.0)
    # one discordant pair of three: (2 - 1) / 3
    assert agreement.kendall_tau_b([[1], [2], [3]], [[2], [1], [3]]) == pytest.approx(1 / 3)


def test_krippendorff_alpha_ordinal_matches_krippendorffs_own_example():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 coders, 12 units
    # with missing values; ordinal alpha = 0.815.
    coders = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = [[coder[u] for coder in coders if coder[u] is not None] for u in range(12)]
    assert agreement.krippendorff_alpha_ordinal(units) == pytest.approx(0.815, abs=0.001)


def test_krippendorff_alpha_perfect_agreement():
    assert agreement.krippendorff_alpha_ordinal([[1, 1], [2, 2], [3, 3]]) == pytest.approx(1.0)
