"""Issue 18's complete exports: every row of every kind says where it came from; the prompt-completion SFT rows,
the implicit-prompt preference rows and the pairs' margin are what TRL reads, load in `datasets` and train a step."""

import io
import json
from datetime import datetime

import datasets
import pytest
import torch
from django.conf import settings

from annotate.importers import import_run
from annotate.models import CandidateSet, ImportBatch, Label, Message, MessageSource, Ranking
from annotate.services import tree
from tests.annotate.factories import ranking_items
from training import services
from training.exporters.rows import annotator_pseudonym
from training.models import SnapshotKind

pytestmark = pytest.mark.django_db

PAIRS = [
    {"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5"},
    {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Seven."},
]


@pytest.fixture(autouse=True)
def snapshot_store(tmp_path, settings):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch):
    # A cache of its own: `datasets` keys its cache by the folder's path, and pytest reuses tmp paths across runs.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def rows_of(snapshot, stem=None) -> list[dict]:
    folder = settings.SNAPSHOT_STORE / snapshot.folder
    return [json.loads(line) for split in ("train", "test")
            for line in (folder / f"{stem or snapshot.kind}-{split}.jsonl").read_text().splitlines()]


def small_project(project, member):
    """Imported pairs (with their rankings) and text, an annotator's chat that goes on after a model's reply, and
    one ranking of a demonstration and three model replies in three tiers: [[demonstration], [m1, m2], [m3]]."""
    pairs = "".join(json.dumps(pair) + "\n" for pair in PAIRS).encode()
    import_run(project=project, format="pairs", stream=io.BytesIO(pairs), filename="pairs.jsonl")
    corpus = b"Two plus two is four.\n\nBlue is a colour.\n"
    import_run(project=project, format="text", stream=io.BytesIO(corpus), filename="corpus.txt")

    def model(parent, text):
        return tree.message_create(project=project, parent=parent, role="assistant", text=text, source="model",
                                   origin={"model_version": "sft-v1", "model_name": "tiny-gpt"})

    joke = tree.message_create(project=project, parent=None, role="user", text="Tell me a joke.", source="annotator",
                               author=member)
    first = model(joke, "Why did the chicken cross the road?")
    again = tree.message_create(project=project, parent=first, role="user", text="Another one?", source="annotator",
                                author=member)
    demonstration = tree.message_create(project=project, parent=again, role="assistant", text="Knock knock.",
                                        source="annotator", author=member)
    Message.objects.filter(pk=demonstration.pk).update(review_state="accepted")
    m1, m2, m3 = (model(again, text) for text in ("No.", "I am out of jokes.", "Jokes are banned."))
    ranked = CandidateSet.objects.create(project=project, parent=again, kind="ranking",
                                         message_ids=[demonstration.id, m1.id, m2.id, m3.id])
    ranking = Ranking.objects.create(candidate_set=ranked, annotator=member, guideline_version=2,
                                     tiers=[[demonstration.id], [m1.id, m2.id], [m3.id]])
    return {"demonstration": demonstration, "m1": m1, "m2": m2, "m3": m3, "ranking": ranking, "again": again}


def dicts_in(value, wanted):
    """Every dict anywhere in a row for which `wanted(dict)` holds, outermost first."""
    if isinstance(value, dict):
        if wanted(value):
            yield value
        for inner in value.values():
            yield from dicts_in(inner, wanted)
    elif isinstance(value, list):
        for inner in value:
            yield from dicts_in(inner, wanted)


def origins_in(value):
    """Every message origin anywhere in a row's provenance (a dict with a message id and a source)."""
    return dicts_in(value, lambda found: "message_id" in found and "source" in found)


def expected_origin(project, message: Message, files: dict) -> dict:
    # What does not apply is empty, never null (parquet.empty_filled): 0 for an id or line, "" for a name.
    import_id = message.origin.get("import")
    return {
        "message_id": message.id, "source": message.source, "at": message.created_at,
        "annotator": annotator_pseudonym(project.id, message.author_id) if message.source == MessageSource.ANNOTATOR
        else "",
        "model_version": message.origin.get("model_version", ""), "model_name": message.origin.get("model_name", ""),
        "source_user": message.origin.get("source_user", ""),
        "import_id": import_id or 0, "file": files.get(import_id, ""), "line": message.origin.get("line", 0),
    }


def test_every_row_of_every_kind_says_where_it_came_from(project, member):
    made = small_project(project, member)
    # What the flags kind exports: labelled messages (not through label_save, so that nothing is excluded).
    Label.objects.create(message=made["m3"], annotator=member, flags=["toxic"])
    Label.objects.create(message=made["m1"], annotator=member, quality=3)
    files = dict(ImportBatch.objects.values_list("id", "filename"))
    pairs_batch = ImportBatch.objects.get(filename="pairs.jsonl")
    messages = {message.id: message for message in Message.objects.all()}
    sources_seen = set()
    for kind in SnapshotKind.values:
        snapshot = services.snapshot_create(project=project, kind=kind, demonstrations="all", parquet=False)
        rows = rows_of(snapshot)
        assert rows, kind
        for row in rows:
            provenance = row["provenance"]
            if kind == "pretraining":
                assert provenance["import_id"] in files and provenance["file"] == "corpus.txt", row
                assert provenance["at"] and provenance["document_id"], row
                continue
            found = list(origins_in(provenance))
            assert found, (kind, row)
            for origin in found:
                # Each message names its annotator, its import batch, file and line, or the model version that wrote it.
                when = datetime.fromisoformat(origin["at"])  # PostgreSQL writes 0.50746 for 0.507460
                assert {**origin, "at": when} == expected_origin(project, messages[origin["message_id"]], files), origin
                assert origin["annotator"] or origin["import_id"] or origin["model_version"], (kind, origin)
                sources_seen.add((kind, origin["source"]))
            if kind in ("sft", "sft_completion", "prompts"):
                # Every turn of the conversation, in order, not only its last.
                assert [origin["message_id"] for origin in provenance["turns"]] == [
                    m.id for m in _path(messages, provenance["turns"][-1]["message_id"])], row
            if kind in ("preference", "implicit_pairs"):
                if provenance["imported"]:
                    # An imported ranking: the file and line it was read from, under the source's pseudonym.
                    assert provenance["import_id"] == pairs_batch.id and provenance["file"] == "pairs.jsonl", row
                    assert provenance["line"] in (1, 2) and provenance["annotator"], row
                else:
                    assert provenance["annotator"] == annotator_pseudonym(project.id, member.id), row
                    assert provenance["import_id"] == 0 and provenance["guideline_version"] == 2, row
    for kind in ("sft", "sft_completion", "preference", "implicit_pairs", "unpaired"):
        assert {source for seen, source in sources_seen if seen == kind} == {"annotator", "import", "model"}, kind

    lines = {origin["line"] for row in rows_of(project.snapshots.get(kind="preference"))
             for origin in origins_in(row["provenance"]) if origin["import_id"] == pairs_batch.id}
    assert lines == {1, 2}  # each imported reply names its own line of pairs.jsonl


def _path(messages: dict, message_id: int) -> list[Message]:
    path = [messages[message_id]]
    while path[-1].parent_id:
        path.append(messages[path[-1].parent_id])
    return path[::-1]


def test_prompt_completion_rows_are_the_sft_conversations_split_before_their_reply(project, member):
    made = small_project(project, member)
    sft = rows_of(services.snapshot_create(project=project, kind="sft", parquet=False))
    completion = rows_of(services.snapshot_create(project=project, kind="sft_completion", parquet=False))
    assert [set(row) for row in completion] == [{"prompt", "completion", "provenance"}] * len(sft)
    assert sorted(json.dumps([row["prompt"] + row["completion"], row["provenance"]]) for row in completion) == sorted(
        json.dumps([row["messages"], row["provenance"]]) for row in sft)
    # Accepted demonstrations only, by default: the annotator's reply after the model's, with the turns before it.
    (row,) = completion
    assert row["prompt"] == [
        {"role": "user", "content": "Tell me a joke."},
        {"role": "assistant", "content": "Why did the chicken cross the road?"},
        {"role": "user", "content": "Another one?"},
    ]
    assert row["completion"] == [{"role": "assistant", "content": "Knock knock."}]
    assert row["provenance"]["reply"]["message_id"] == made["demonstration"].id
    assert row["provenance"]["turns"][1]["model_version"] == "sft-v1"


def test_margin_is_the_tier_distance_and_implicit_pairs_carry_the_prompt_in_each_side(project, member):
    made = small_project(project, member)
    demonstration, m1, m2, m3 = (made[name].id for name in ("demonstration", "m1", "m2", "m3"))
    explicit = rows_of(services.snapshot_create(project=project, kind="preference", parquet=False))
    implicit = rows_of(services.snapshot_create(project=project, kind="implicit_pairs", parquet=False))

    def margins(rows):
        return {(row["provenance"]["chosen"]["message_id"], row["provenance"]["rejected"]["message_id"]): row["margin"]
                for row in rows if row["provenance"]["ranking_id"] == made["ranking"].id}

    assert margins(explicit) == {(demonstration, m1): 1, (demonstration, m2): 1, (demonstration, m3): 2,
                                 (m1, m3): 1, (m2, m3): 1}
    assert [row["margin"] for row in explicit if row["provenance"]["imported"]] == [1, 1]  # a pair is one tier apart

    assert len(implicit) == len(explicit) == 7 and all("prompt" not in row for row in implicit)
    by_pair = {(row["provenance"]["ranking_id"], row["provenance"]["chosen"]["message_id"],
                row["provenance"]["rejected"]["message_id"]): row for row in explicit}
    for row in implicit:
        same = by_pair[(row["provenance"]["ranking_id"], row["provenance"]["chosen"]["message_id"],
                        row["provenance"]["rejected"]["message_id"])]
        assert row["chosen"] == same["prompt"] + same["chosen"] and row["rejected"] == same["prompt"] + same["rejected"]
        assert row["margin"] == same["margin"] and row["provenance"] == same["provenance"]
    # Both forms keep the raw rankings and the consensus beside the pairs.
    assert len(rows_of(project.snapshots.get(kind="implicit_pairs"), "rankings")) == 3

    # The middle tier excluded (flagged, say): what is left is still two tiers apart, as the annotator set it.
    Message.objects.filter(pk__in=[m1, m2]).update(excluded=True)
    again = rows_of(services.snapshot_create(project=project, kind="implicit_pairs", parquet=False))
    assert margins(again) == {(demonstration, m3): 2}


@pytest.mark.slow
@pytest.mark.training
def test_the_new_kinds_load_as_folders_and_train_sft_and_a_reward_model_one_step(project, member, tmp_path):
    from transformers import GPT2ForSequenceClassification
    from trl import RewardConfig, RewardTrainer, SFTConfig, SFTTrainer

    from training.trainers.scratch import gpt_from_config, tokenizer_train

    small_project(project, member)
    for candidate_set in ranking_items(project, 24, k=3):
        Ranking.objects.create(candidate_set=candidate_set, annotator=member, tiers=[[m] for m in candidate_set.message_ids])
        Message.objects.filter(pk=candidate_set.message_ids[0]).update(review_state="accepted")
    tokenizer = tokenizer_train(Message.objects.values_list("text", flat=True), vocab_size=400)

    def loaded(kind):
        snapshot = services.snapshot_create(project=project, kind=kind)
        # As it is, through its dataset card: the splits and their counts, each column typed by the Parquet schema.
        found = datasets.load_dataset(str(settings.SNAPSHOT_STORE / snapshot.folder))
        assert {split: rows.num_rows for split, rows in found.items()} == snapshot.rows
        return found["train"]

    sft = loaded("sft_completion")
    model = gpt_from_config(tokenizer, layers=1, heads=2, width=32, context=128)
    args = SFTConfig(output_dir=str(tmp_path / "sft"), max_steps=1, per_device_train_batch_size=4, report_to=[],
                     use_cpu=True, max_length=128, save_strategy="no")
    trainer = SFTTrainer(model=model, args=args, train_dataset=sft, processing_class=tokenizer)
    # Prompt-completion rows: the loss is on the completion's tokens only (TRL labels the rest -100).
    for row, example in zip(sft, trainer.train_dataset, strict=True):
        learnt = tokenizer.decode([i for i, label in zip(example["input_ids"], example["labels"], strict=True)
                                   if label != -100])
        assert row["completion"][0]["content"] in learnt and row["prompt"][-1]["content"] not in learnt, learnt
    result = trainer.train()
    assert result.global_step == 1 and torch.isfinite(torch.tensor(result.training_loss))

    pairs = loaded("implicit_pairs")
    assert "prompt" not in pairs.column_names and pairs.features["margin"].dtype == "int64" and min(pairs["margin"]) >= 1
    base = gpt_from_config(tokenizer, layers=1, heads=2, width=32, context=128)
    model = GPT2ForSequenceClassification(base.config.__class__(**{**base.config.to_dict(), "num_labels": 1}))
    args = RewardConfig(output_dir=str(tmp_path / "rm"), max_steps=1, per_device_train_batch_size=4, report_to=[],
                        use_cpu=True, max_length=128, save_strategy="no")
    trainer = RewardTrainer(model=model, args=args, train_dataset=pairs, processing_class=tokenizer)
    # The margin reaches the loss: RewardTrainer's collator passes the column on as a tensor.
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    assert batch["margin"].tolist() == [float(m) for m in pairs["margin"][:4]]
    assert trainer.train().global_step == 1


def test_raw_json_files_load_alone_whichever_origins_a_split_holds(project, member, tmp_path):
    """`datasets` types a JSON file by its values: a field null in every row of the train file (no import there)
    would be typed null and the test file's import ids would fail to cast. No exported field is ever null, so
    the rows of one origin and the rows of another load as two splits of one dataset, with no features given."""
    made = small_project(project, member)
    Label.objects.create(message=made["m3"], annotator=member, flags=["toxic"])
    Label.objects.create(message=made["m1"], annotator=member, quality=3)
    for kind in SnapshotKind.values:
        snapshot = services.snapshot_create(project=project, kind=kind, demonstrations="all", parquet=False)
        folder = settings.SNAPSHOT_STORE / snapshot.folder
        for stem in [kind] + (["rankings"] if kind in ("preference", "implicit_pairs") else []):
            lines = [line for split in ("train", "test")
                     for line in (folder / f"{stem}-{split}.jsonl").read_text().splitlines()]
            assert lines and not any("null" in line for line in lines), (stem, lines)
            # Rows of annotators and models here only, then rows with an import in them (or the other way).
            imported = [line for line in lines if any(found["import_id"] for found in _imports_in(json.loads(line)))]
            rest = [line for line in lines if line not in imported]
            for first, second in ((rest, imported), (imported, rest)):
                if not (first and second):
                    continue
                files = {}
                for split, chosen in (("train", first), ("test", second)):
                    files[split] = tmp_path / f"{stem}-{len(files)}-{id(first)}.jsonl"
                    files[split].write_text("\n".join(chosen) + "\n")
                loaded = datasets.load_dataset("json", data_files={k: str(v) for k, v in files.items()},
                                               cache_dir=str(tmp_path / "hf" / f"{stem}-{id(first)}"))
                assert (loaded["train"].num_rows, loaded["test"].num_rows) == (len(first), len(second)), stem


def _imports_in(value):
    """Every dict in a row that has an import id (an origin, a pair's provenance, a ranking, a document)."""
    return dicts_in(value, lambda found: "import_id" in found)
