"""The consensus weighted by each annotator's reliability: pairs, weights, the export, and what it buys."""

import json

import pytest
from django.conf import settings

from annotate import agreement, consensus
from annotate.models import Ranking
from bench.consensus_bench import measure
from tests.annotate.factories import ranking_items
from training import services


def test_a_rankings_pairs_keep_their_tier_distance_when_replies_are_left_out():
    tiers = [[1], [2, 3], [4]]
    assert list(agreement.tier_pairs(tiers)) == [(1, 2, 1), (1, 3, 1), (1, 4, 2), (2, 4, 1), (3, 4, 1)]
    # Reply 2 and 3 leave (excluded): 1 over 4 is still two tiers apart, as the annotator set them.
    assert list(agreement.tier_pairs(tiers, keep={1, 4})) == [(1, 4, 2)]
    assert list(agreement.tier_pairs([[1, 2]])) == [] and list(agreement.tier_pairs([])) == []


def test_weights_let_the_reliable_outvote_the_many():
    truth, reversed_ = [[1], [2], [3]], [[3], [2], [1]]
    assert agreement.ranked_pairs([1, 2, 3], [truth, reversed_, reversed_]) == [3, 2, 1]
    assert agreement.ranked_pairs([1, 2, 3], [truth, reversed_, reversed_], [0.9, 0.2, 0.2]) == [1, 2, 3]
    # Weights that sum equal on paper are a tie, not a majority of a rounding error: the ids decide.
    assert agreement.ranked_pairs([1, 2], [[[1], [2]], [[2], [1]], [[2], [1]]], [0.3, 0.1, 0.2]) == [1, 2]
    # Equal weights are the unweighted consensus.
    assert agreement.ranked_pairs([1, 2, 3], [truth, reversed_, truth], [0.5] * 3) == [1, 2, 3]


def test_an_annotator_against_everyone_weighs_little_and_gold_lowers_a_weight():
    truth, reversed_ = [[1], [2], [3]], [[3], [2], [1]]
    by_set = {s: [("a", truth), ("b", truth), ("c", truth), ("x", reversed_)] for s in range(6)}
    weights = consensus.reliability_weights(by_set)
    assert weights["a"] == weights["b"] == weights["c"] == pytest.approx((6 + 1) / (6 + 2))
    assert weights["x"] == pytest.approx(1 / 8)  # tau -1 on every set counts as 0: only the prior is left
    # a missed every gold item: less say than the contrarian; b got them all: a little below its agreement.
    with_gold = consensus.reliability_weights(by_set, gold={"a": (0, 10), "b": (10, 10)})
    assert with_gold["a"] < with_gold["x"] < with_gold["b"] == pytest.approx(weights["b"] * 11 / 12)


def test_with_two_random_annotators_of_five_the_weighted_consensus_agrees_with_the_truth_more_often():
    # The bench's measurement, smaller: 60 sets of 4 (15 gold), three seeds, pooled over the held-out sets.
    runs = [measure(seed, sets=60, gold=15, random_annotators=2, bradley_terry=False) for seed in (0, 1, 2)]
    share = {name: sum(run[name][0] for run in runs) / sum(run[name][1] for run in runs) for name in runs[0]}
    assert share["weighted"] - share["unweighted"] >= 0.05
    assert share["weighted, no gold"] - share["unweighted"] >= 0.05
    # With nobody at random there is nothing to correct: weighting costs at most a point.
    calm = [measure(seed, sets=60, gold=15, random_annotators=0, bradley_terry=False) for seed in (0, 1, 2)]
    calm_share = {name: sum(run[name][0] for run in calm) / sum(run[name][1] for run in calm) for name in calm[0]}
    assert calm_share["weighted"] >= calm_share["unweighted"] - 0.01


@pytest.fixture
def snapshot_store(tmp_path, settings):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"


def side_rows(snapshot, stem):
    folder = settings.SNAPSHOT_STORE / snapshot.folder
    return [json.loads(line) for split in ("train", "test") for line in (folder / f"{stem}-{split}.jsonl").read_text().splitlines()]


@pytest.mark.django_db
def test_the_preference_export_carries_the_weighted_consensus_and_each_annotators_weight(
    project, make_user, snapshot_store
):
    good = [make_user(name) for name in ("ann", "bob", "cat", "dan")]
    contrarians = [make_user(name) for name in ("xav", "yan")]
    sets = ranking_items(project, 4, k=4)
    for candidate_set in sets[:3]:
        a, b, c, d = candidate_set.message_ids
        for user in good:
            Ranking.objects.create(candidate_set=candidate_set, annotator=user, tiers=[[a], [b], [c], [d]])
        for user in contrarians:
            Ranking.objects.create(candidate_set=candidate_set, annotator=user, tiers=[[d], [c], [b], [a]])
    # On the last set only one careful annotator is left against the two who always disagreed.
    target = sets[3]
    a, b, c, d = target.message_ids
    Ranking.objects.create(candidate_set=target, annotator=good[0], tiers=[[a], [b], [c], [d]])
    for user in contrarians:
        Ranking.objects.create(candidate_set=target, annotator=user, tiers=[[d], [c], [b], [a]])

    snapshot = services.snapshot_create(project=project, kind="preference", parquet=False)
    # The raw judgements stay: every ranking, in the rankings side file.
    pseudonym = {row["ranking_id"]: row["annotator"] for row in side_rows(snapshot, "rankings")}
    assert len(pseudonym) == Ranking.objects.count() == 3 * 6 + 3
    by_user = {Ranking.objects.get(pk=ranking_id).annotator.username: who for ranking_id, who in pseudonym.items()}
    consensus_rows = {row["candidate_set_id"]: row for row in side_rows(snapshot, "consensus")}
    last = consensus_rows[target.id]
    assert last["order"] == [d, c, b, a]  # two votes to one
    assert last["weighted_order"] == [a, b, c, d]  # the one who agreed with the others all along
    weights = {entry["annotator"]: entry["weight"] for entry in last["weights"]}
    assert set(weights) == {by_user["ann"], by_user["xav"], by_user["yan"]}
    # ann: tau 1 on three sets, -1 on the last; xav and yan: below 0 throughout (prior only).
    assert weights[by_user["ann"]] == pytest.approx((3 - 1 + 1) / (4 + 2))
    assert weights[by_user["xav"]] == weights[by_user["yan"]] == pytest.approx(1 / 6)
    # Where the careful majority ranked, weighting changes nothing.
    assert all(consensus_rows[s.id]["weighted_order"] == consensus_rows[s.id]["order"] == list(s.message_ids)
               for s in sets[:3])


@pytest.mark.django_db
def test_an_imported_ranking_is_weighed_under_its_source_identity(project, member, snapshot_store):
    candidate_set = ranking_items(project, 1, k=3)[0]
    a, b, c = candidate_set.message_ids
    Ranking.objects.create(candidate_set=candidate_set, annotator=member, tiers=[[a], [b], [c]])
    Ranking.objects.create(candidate_set=candidate_set, external_annotator="oasst:42", tiers=[[a], [c], [b]])
    assert consensus.project_weights(project=project) == {
        member.id: pytest.approx((1 / 3 + 1) / 3), "external:oasst:42": pytest.approx((1 / 3 + 1) / 3),
    }
    snapshot = services.snapshot_create(project=project, kind="preference", parquet=False)
    (row,) = side_rows(snapshot, "consensus")
    assert [entry["annotator"] for entry in row["weights"]][1:] == ["oasst:42"] and row["rankings"] == 2
    assert row["weighted_order"] == row["order"] == [a, b, c]
