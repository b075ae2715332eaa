"""A snapshot folder opens as it is: its dataset card's YAML parses, and `datasets.load_dataset(folder)` gives
each split with the rows the export counted, for every kind; a split with no rows still has its files."""

import hashlib
import io
import json
from pathlib import Path

import datasets
import pytest
import yaml
from django.conf import settings

from annotate.importers import import_run
from annotate.models import Label, Message, Ranking
from tests.annotate.factories import ranking_items
from training import services
from training.exporters.card import card_read
from training.exporters.parquet import schemas
from training.exporters.rows import content_digest, content_split
from training.models import SnapshotKind

pytestmark = pytest.mark.django_db

COLUMNS = {
    "sft": {"messages", "provenance"},
    "sft_completion": {"prompt", "completion", "provenance"},
    "preference": {"prompt", "chosen", "rejected", "margin", "provenance"},
    "implicit_pairs": {"chosen", "rejected", "margin", "provenance"},
    "unpaired": {"prompt", "completion", "label", "provenance"},
    "prompts": {"prompt", "provenance"},
    "pretraining": {"text", "provenance"},
    "flags": {"text", "label", "flags", "provenance"},
}


@pytest.fixture(autouse=True)
def snapshot_store(tmp_path, settings):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"
    settings.SNAPSHOT_LICENSE = "cc-by-4.0"


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch):
    # A cache of its own: `datasets` keys its cache by the folder's path, and pytest reuses tmp paths across runs.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def lines(folder: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (folder / name).read_text().splitlines()]


def judged(project, member, prompts=12):
    for candidate_set in ranking_items(project, prompts, k=3):
        Ranking.objects.create(candidate_set=candidate_set, annotator=member, tiers=[[m] for m in candidate_set.message_ids])
        Message.objects.filter(pk=candidate_set.message_ids[0]).update(review_state="accepted", source="annotator", author=member)
        # Labels, for the flags the screen classifier trains on: the last reply toxic, the second plain.
        Label.objects.create(message_id=candidate_set.message_ids[-1], annotator=member, flags=["toxic"])
        Label.objects.create(message_id=candidate_set.message_ids[1], annotator=member, quality=3)


def test_every_kind_has_a_card_that_parses_and_a_folder_that_load_dataset_opens(project, member):
    judged(project, member)
    with (Path(__file__).parent.parent / "annotate" / "fixtures" / "corpus.txt").open("rb") as stream:
        import_run(project=project, format="text", stream=stream, filename="corpus.txt")
    for kind in SnapshotKind.values:
        snapshot = services.snapshot_create(project=project, kind=kind)
        folder = settings.SNAPSHOT_STORE / snapshot.folder
        header = card_read(folder)
        made = header["snapshot"]
        counted = {split: len(lines(folder, f"{kind}-{split}.jsonl")) for split in ("train", "test")}
        assert made["rows"] == counted and sum(counted.values()) > 0, kind
        assert made["project"] == {"id": project.id, "name": project.name} and made["kind"] == kind
        assert made["version"] == snapshot.version and made["platform_version"]["datasets"] == datasets.__version__
        assert made["guideline_versions"]["current"] == project.guideline_version
        assert {source["source"] for source in made["sources"]} and all(source["license"] for source in made["sources"])

        loaded = datasets.load_dataset(str(folder))
        assert {split: rows.num_rows for split, rows in loaded.items()} == {s: n for s, n in counted.items() if n}, kind
        first = next(iter(loaded.values()))
        assert set(first.column_names) == COLUMNS[kind], kind
        assert first.features == datasets.Features.from_arrow_schema(schemas()[kind]), kind  # the Parquet files' types
        split = next(iter(loaded))
        assert first[0] == lines(folder, f"{kind}-{split}.jsonl")[0], kind

        # The card is one of the snapshot's files, with its sha256, so it is verified and downloaded as they are.
        card = next(item for item in snapshot.files if item["name"] == "README.md")
        assert card["sha256"] == hashlib.sha256((folder / "README.md").read_bytes()).hexdigest()

    pretraining = card_read(settings.SNAPSHOT_STORE / project.snapshots.get(kind="pretraining").folder)
    assert pretraining["license"] == "unknown"  # only imported text, and its import named no licence
    assert [source["file"] for source in pretraining["snapshot"]["sources"]] == ["corpus.txt"]
    # An import that names its licence: the card names it for that source, beside the unknown one.
    import_run(project=project, format="text", stream=io.BytesIO(b"Seven is prime.\n\nEight is not.\n"),
               filename="primes.txt", license="cc-by-sa-4.0")
    newer = settings.SNAPSHOT_STORE / services.snapshot_create(project=project, kind="pretraining").folder
    again = card_read(newer)
    assert sorted(again["license"]) == ["cc-by-sa-4.0", "unknown"]
    assert {source["file"]: source["license"] for source in again["snapshot"]["sources"]} == {
        "corpus.txt": "unknown", "primes.txt": "cc-by-sa-4.0"}
    assert "| import primes.txt | 2 | cc-by-sa-4.0 |" in (newer / "README.md").read_text()


def test_a_preference_card_offers_the_rankings_and_the_consensus_as_configs_and_names_the_licences(project, member):
    judged(project, member, prompts=20)
    snapshot = services.snapshot_create(project=project, kind="preference", parquet=False)
    folder = settings.SNAPSHOT_STORE / snapshot.folder
    text = (folder / "README.md").read_text()
    assert text.startswith("---\n") and "datasets.load_dataset" in text
    header = yaml.safe_load(text.split("---\n")[1])
    configs = {config["config_name"]: config for config in header["configs"]}
    assert set(configs) == {"default", "rankings", "consensus"} and configs["default"]["default"] is True
    # JSONL only: the configs point at the JSONL files.
    assert {item["path"] for item in configs["default"]["data_files"]} <= {"preference-train.jsonl", "preference-test.jsonl"}
    # The ranking items were written by the factories as imports; the annotator ranked them.
    assert set(header["license"]) == {"cc-by-4.0", "unknown"}
    assert header["snapshot"]["guideline_versions"]["judged_under"] == sorted(
        set(Ranking.objects.exclude(guideline_version=None).values_list("guideline_version", flat=True)))

    rankings = datasets.load_dataset(str(folder), "rankings")
    assert sum(split.num_rows for split in rankings.values()) == Ranking.objects.count() == 20
    assert rankings["train"].features == datasets.Features.from_arrow_schema(schemas()["rankings"])
    consensus = datasets.load_dataset(str(folder), "consensus")
    assert sum(split.num_rows for split in consensus.values()) == 20


def test_an_empty_split_still_has_its_files_and_the_folder_still_loads(project, member):
    judged(project, member, prompts=1)  # one prompt: all its pairs fall in one split, the other has none
    # In train, as a small project's one prompt usually is (the seeded rule holds out 1 in 10 by project id):
    # `datasets` reads the first split named for its features, so only an empty *test* split streams.
    text = next(t for n in range(100) if content_split(project.id, content_digest(t := f"What is {n} plus {n}?")) == "train")
    Message.objects.filter(project=project, parent=None).update(text=text)
    snapshot = services.snapshot_create(project=project, kind="preference")
    folder = settings.SNAPSHOT_STORE / snapshot.folder
    made = card_read(folder)["snapshot"]
    (full, rows), = snapshot.rows.items()
    empty = ({"train", "test"} - {full}).pop()
    assert (full, empty) == ("train", "test")
    assert made["rows"] == {full: rows, empty: 0} and rows == 3
    for name in (f"preference-{empty}.jsonl", f"preference-{empty}.parquet", f"rankings-{empty}.jsonl",
                 f"consensus-{empty}.jsonl"):
        described = next(item for item in snapshot.files if item["name"] == name)
        assert described["rows"] == 0 and described["bytes"] == (folder / name).stat().st_size

    loaded = datasets.load_dataset(str(folder))
    assert list(loaded) == [full] and loaded[full].num_rows == rows
    for format in ("json", "parquet"):
        suffix = "jsonl" if format == "json" else "parquet"
        files = {split: str(folder / f"preference-{split}.{suffix}") for split in ("train", "test")}
        streamed = datasets.load_dataset(format, data_files=files, streaming=True)
        assert len(list(streamed[empty])) == 0 and len(list(streamed[full])) == rows, format
        alone = datasets.load_dataset(format, data_files=files, split=full)
        assert alone.num_rows == rows, format
