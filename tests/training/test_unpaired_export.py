"""The unpaired export (TRL's prompt / completion / label rows, for KTO and BCO): which judgements make a reply
desirable or not, one row per prompt and reply, the held-out split of every other kind, files `datasets` loads."""

import json

import datasets
import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.urls import reverse

from annotate.models import Message, Ranking
from annotate.services import submits, tree
from tests.annotate.factories import ranking_items
from training import services
from training.exporters.rows import is_heldout

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def snapshot_store(tmp_path, settings):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"


def rows_by_split(snapshot):
    folder = settings.SNAPSHOT_STORE / snapshot.folder
    return {split: [json.loads(line) for line in (folder / f"{snapshot.kind}-{split}.jsonl").read_text().splitlines()]
            for split in snapshot.rows}


def judged_project(project, member, reviewer, other):
    """Demonstrations reviewed, two rankings of one set that disagree, quality labels, an "all bad" ranking."""
    prompt = tree.message_create(project=project, parent=None, role="user", text="What is 2 + 3?", source="import")
    demonstrations = {}
    for text in ("5", "6", "7"):
        demonstrations[text] = tree.message_create(project=project, parent=prompt, role="assistant", text=text,
                                                   source="annotator", author=member)
    submits.review_save(message=demonstrations["5"], reviewer=reviewer, accepted=True)
    submits.review_save(message=demonstrations["6"], reviewer=reviewer, accepted=False, comment="2 + 3 is 5")
    # Flagged (excluded at the project's threshold of one), then rejected: it never leaves, not even as a bad example.
    submits.label_submit(message=demonstrations["7"], annotator=other, flags=["personal_data"])
    submits.review_save(message=Message.objects.get(pk=demonstrations["7"].pk), reviewer=reviewer, accepted=False,
                           comment="names a person")

    first, second = ranking_items(project, 2, k=4)
    a, b, c, d = first.message_ids
    Ranking.objects.create(candidate_set=first, annotator=member, tiers=[[a], [b], [c], [d]])
    Ranking.objects.create(candidate_set=first, annotator=other, tiers=[[b], [a], [c], [d]])
    submits.label_submit(message=Message.objects.get(pk=b), annotator=member, quality=1)  # b: 1 for, 1 against
    submits.label_submit(message=Message.objects.get(pk=c), annotator=member, quality=3)  # the middle: no vote
    e, f, g, h = second.message_ids
    Message.objects.filter(pk=e).update(source="annotator", author=member)
    submits.review_save(message=Message.objects.get(pk=e), reviewer=reviewer, accepted=True)
    Message.objects.filter(pk__in=[f, g]).update(text="Both of these say 9.")
    Ranking.objects.create(candidate_set=second, annotator=member, tiers=[], all_bad=True)
    return {"prompt": prompt, "first": first, "second": second, **demonstrations}


def test_each_judged_reply_is_one_row_labelled_as_its_judges_say_and_loads_with_datasets(project, member, reviewer,
                                                                                         make_user):
    other = make_user("other")
    made = judged_project(project, member, reviewer, other)
    a, _, _, d = made["first"].message_ids
    e, f, g, h = made["second"].message_ids
    snapshot = services.snapshot_create(project=project, kind="unpaired")
    split_of = rows_by_split(snapshot)
    rows = [row for split in split_of.values() for row in split]
    found = {(row["completion"][0]["content"], row["label"], row["provenance"]["settled_by"]) for row in rows}
    text = {m.id: m.text for m in Message.objects.all()}
    assert found == {
        ("5", True, "review"), ("6", False, "review"),  # accepted and rejected demonstrations; "7" was flagged
        (text[a], True, "majority"), (text[d], False, "majority"),  # b ties, c has no vote
        (text[e], True, "review"),  # accepted: the review decides over the "all bad" ranking
        ("Both of these say 9.", False, "majority"), (text[h], False, "majority"),
    }
    assert len(rows) == len(found) == sum(snapshot.rows.values())

    by_text = {row["completion"][0]["content"]: row for row in rows}
    assert by_text["5"]["prompt"] == [{"role": "user", "content": "What is 2 + 3?"}]
    assert by_text["5"]["completion"] == [{"role": "assistant", "content": "5"}]
    pooled = by_text["Both of these say 9."]["provenance"]
    assert pooled["message_ids"] == [f, g] and [j["kind"] for j in pooled["judgements"]] == ["all_bad", "all_bad"]
    assert {j["kind"] for j in by_text[text[e]]["provenance"]["judgements"]} == {"review", "all_bad"}
    assert [(j["kind"], j["desirable"]) for j in by_text[text[d]]["provenance"]["judgements"]] == [
        ("ranking_bottom", False), ("ranking_bottom", False)]
    judges = {j["annotator"] for row in rows for j in row["provenance"]["judgements"]}
    assert all(judge.startswith("a-") for judge in judges) and len(judges) == 3  # member, other, reviewer
    assert "member" not in json.dumps(rows) and "reviewer" not in json.dumps(rows)

    # The split of every other kind: a held-out prompt is held out here too, and in the preference pairs.
    pairs = services.snapshot_create(project=project, kind="preference")
    pair_splits = {row["provenance"]["root_id"]: split for split, found in rows_by_split(pairs).items()
                   for row in found}
    for split, found in split_of.items():
        for row in found:
            root = row["provenance"]["root_id"]
            assert split == ("test" if is_heldout(project.id, root) else "train")
            assert pair_splits.get(root, split) == split

    folder = settings.SNAPSHOT_STORE / snapshot.folder
    # The folder as it is, with its card's features: the JSON alone leaves a provenance field that is null in every
    # row of one split (no imported message fell there) typed null, and datasets then cannot cast the other split.
    loaded = datasets.load_dataset(str(folder))
    for split, count in snapshot.rows.items():
        assert loaded[split].num_rows == count
        assert loaded[split].features["label"].dtype == "bool"
        parquet = datasets.load_dataset("parquet", data_files=str(folder / f"unpaired-{split}.parquet"), split="train")
        assert parquet.to_list() == split_of[split]
    assert {"prompt", "completion", "label"} <= set(loaded[next(iter(snapshot.rows))].column_names)


def test_filters_keep_judgements_and_the_kind_is_offered_on_the_exports_page(project, member, reviewer, make_user,
                                                                              client, owner):
    other = make_user("other")
    made = judged_project(project, member, reviewer, other)
    a, b, _, d = made["first"].message_ids
    e, _, _, h = made["second"].message_ids
    text = {m.id: m.text for m in Message.objects.all()}
    snapshot = services.snapshot_create(project=project, kind="unpaired", filters={"annotator_id": member.id})
    rows = [row for found in rows_by_split(snapshot).values() for row in found]
    # Only the member's judgements: the reviewer's verdicts are left out, so a rejected demonstration gives no row
    # (it leaves only as its rejection) and e is what the member's "all bad" said of it.
    assert {(row["completion"][0]["content"], row["label"]) for row in rows} == {
        (text[a], True), (text[b], False), (text[d], False),
        (text[e], False), ("Both of these say 9.", False), (text[h], False),
    }
    assert snapshot.filters == {"annotator_id": member.id}
    with pytest.raises(ValidationError, match="no unpaired judgements"):
        services.snapshot_create(project=project, kind="unpaired", filters={"since": "2999-01-01T00:00:00"})
    with pytest.raises(ValidationError, match="do not apply to unpaired"):
        services.snapshot_create(project=project, kind="unpaired", filters={"min_quality": 4})

    # Nothing above an exported reply may be excluded: flag the prompt and its rows are gone.
    tree.message_exclude(message=made["prompt"], reason="flagged by 1")
    rows = [row for found in rows_by_split(services.snapshot_create(project=project, kind="unpaired")).values()
            for row in found]
    assert {row["completion"][0]["content"] for row in rows}.isdisjoint({"5", "6"}) and rows

    client.force_login(owner)
    page = client.get(reverse("training:exports", args=[project.id]))
    assert page.status_code == 200 and b'<option value="unpaired">Unpaired judgements</option>' in page.content
