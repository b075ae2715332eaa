"""Clean splits: no prompt and no document in both splits of any export, and a split once exported stays."""

import importlib
import io
import json
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.db import connection

from annotate.importers import import_run
from annotate.models import CorpusText, Message
from training import services
from training.exporters.rows import content_digest, content_split

pytestmark = pytest.mark.django_db
FIXTURES = Path(__file__).parent.parent / "annotate" / "fixtures"
CONVERSATION_KINDS = ("sft", "preference", "prompts", "unpaired")


@pytest.fixture(autouse=True)
def snapshot_store(tmp_path, settings):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"


def rows_by_split(snapshot) -> dict[str, list[dict]]:
    found = {}
    for split in ("train", "test"):
        path = settings.SNAPSHOT_STORE / snapshot.folder / f"{snapshot.kind}-{split}.jsonl"
        found[split] = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return found


def normalised(text: str) -> str:
    return " ".join(text.casefold().split())


def first_turn(row: dict) -> str:
    conversation = row.get("messages") or row.get("prompt")
    return conversation[0]["content"]


def splits_of(snapshot, key) -> dict[str, set]:
    """Normalised text -> the splits it appears in."""
    where = defaultdict(set)
    for split, found in rows_by_split(snapshot).items():
        for row in found:
            where[normalised(key(row))].add(split)
    return where


def texts_in_both_splits(project, count: int) -> list[str]:
    """`count` distinct prompts, the first two of which the content rule holds out and the next two it does
    not, so an export shows both splits whatever ids the database hands out."""
    held, kept, i = [], [], 0
    while len(held) < 2 or len(kept) < count - 2:
        text = f"What is {i} + {i}?"
        (held if content_split(project.id, content_digest(text)) == "test" else kept).append(text)
        i += 1
    return held[:2] + kept[: count - 2]


def copies(text: str) -> list[str]:
    """The same prompt as datasets concatenated from several sources write it."""
    return [text, text.upper(), f"  {text.lower()}\t", text.replace(" ", "  ")]


def import_lines(project, format: str, lines: list, name: str):
    body = "".join(json.dumps(line) + "\n" for line in lines) if format != "text" else "\n\n".join(lines) + "\n"
    return import_run(project=project, format=format, stream=io.BytesIO(body.encode()), filename=name)


def test_no_normalised_root_prompt_is_in_both_splits_of_any_conversation_export(project):
    prompts = texts_in_both_splits(project, 8)
    pairs = [{"prompt": copy, "chosen": f"{i * 2}.", "rejected": "I do not know."}
             for i, text in enumerate(prompts) for copy in copies(text)]
    import_lines(project, "pairs", pairs, "pairs.jsonl")
    assert Message.objects.filter(project=project, parent__isnull=True).count() == 4 * len(prompts)
    for kind in CONVERSATION_KINDS:
        options = {"demonstrations": "all"} if kind == "sft" else {}
        snapshot = services.snapshot_create(project=project, kind=kind, **options)
        where = splits_of(snapshot, first_turn)
        assert len(where) == len(prompts), kind
        assert {text for text, found in where.items() if len(found) > 1} == set(), kind
        assert set().union(*where.values()) == {"train", "test"}, kind


def test_no_pretraining_document_is_in_both_splits(project):
    documents = [f"Chapter {i}. It was a dark and stormy night; the rain fell in torrents." for i in range(40)]
    import_lines(project, "text", [copy for text in documents for copy in copies(text)], "corpus.txt")
    snapshot = services.snapshot_create(project=project, kind="pretraining")
    where = splits_of(snapshot, lambda row: row["text"])
    assert len(where) == 40 and sum(len(found) for found in rows_by_split(snapshot).values()) == 160
    assert {text for text, found in where.items() if len(found) > 1} == set()
    assert set().union(*where.values()) == {"train", "test"}
    # Every document exported is remembered in the split it went to, with the digest that decided it.
    remembered = CorpusText.objects.filter(project=project).values_list("text", "split", "split_key")
    assert {split for _, split, _ in remembered} == {"train", "test"}
    assert all(bytes(key) == content_digest(text) for text, _, key in remembered)
    again = services.snapshot_create(project=project, kind="pretraining")
    assert rows_by_split(again) == rows_by_split(snapshot)


def test_a_root_exported_before_keeps_its_split_and_its_later_copies_join_it(project):
    prompts = texts_in_both_splits(project, 4)
    held, kept = prompts[0], prompts[2]
    import_lines(project, "prompts-jsonl", [{"prompt": held}, {"prompt": kept}], "first.jsonl")
    # As the split-by-root-id rule may have left them: the held-out one in train, the other held out.
    Message.objects.filter(project=project, text=held).update(split="train")
    Message.objects.filter(project=project, text=kept).update(split="test")
    first = splits_of(services.snapshot_create(project=project, kind="prompts"), first_turn)
    assert first == {normalised(held): {"train"}, normalised(kept): {"test"}}

    # New copies take the split of the copies already exported, not the content rule's.
    import_lines(project, "prompts-jsonl", [{"prompt": copy} for copy in copies(held)[1:] + copies(kept)[1:]],
                 "second.jsonl")
    again = splits_of(services.snapshot_create(project=project, kind="prompts"), first_turn)
    assert again == first
    assert set(Message.objects.filter(project=project, text__iexact=held).values_list("split", flat=True)) == {"train"}


def test_copies_remembered_in_both_splits_are_all_held_out(project):
    text = texts_in_both_splits(project, 4)[2]  # the content rule would keep it in train
    import_lines(project, "prompts-jsonl", [{"prompt": copy} for copy in copies(text)[:2]], "prompts.jsonl")
    first, second = Message.objects.filter(project=project).order_by("id")
    Message.objects.filter(id=first.id).update(split="train")
    Message.objects.filter(id=second.id).update(split="test")
    snapshot = services.snapshot_create(project=project, kind="prompts")
    assert splits_of(snapshot, first_turn) == {normalised(text): {"test"}}
    assert len(rows_by_split(snapshot)["test"]) == 2


def test_an_oasst_tree_imported_flat_then_nested_merges_and_says_what_was_new(project):
    with (FIXTURES / "oasst-messages.jsonl").open("rb") as stream:
        flat = import_run(project=project, format="oasst-messages", stream=stream)
    before = Message.objects.filter(project=project).count()
    with (FIXTURES / "oasst-trees.jsonl").open("rb") as stream:
        nested = import_run(project=project, format="oasst-trees", stream=stream)
    assert flat.counts["messages"] == before == 7
    # The nested file holds the first tree (5 messages kept, the deleted ones left out) and nothing new.
    assert nested.counts["messages"] == 0 and nested.counts["already_there"] == 5
    assert nested.counts["conversations"] == 0 and nested.counts["rankings"] == 0
    assert Message.objects.filter(project=project).count() == before
    grown = {"message_id": "r4", "parent_id": "f1", "user_id": "u-b", "text": "12 / 3 = 4", "role": "assistant",
             "deleted": False, "rank": None}
    more = import_lines(project, "oasst-messages", [{"message_id": "p1", "parent_id": None, "user_id": "u-a",
                                                     "text": "What is 12 / 4?", "role": "prompter"},
                                                    {"message_id": "f1", "parent_id": "r1", "user_id": "u-a",
                                                     "text": "And 12 / 3?", "role": "prompter"}, grown],
                        "grown.jsonl")
    assert more.counts["messages"] == 1 and more.counts["already_there"] == 2
    reply = Message.objects.get(project=project, text="12 / 3 = 4")
    assert reply.parent.text == "And 12 / 3?" and reply.depth == 3
    assert reply.root_id == Message.objects.get(project=project, text="What is 12 / 4?").id
    snapshot = services.snapshot_create(project=project, kind="prompts")
    assert len(splits_of(snapshot, first_turn)) == 2


def test_the_migration_gives_every_remembered_split_its_key(project):
    import_lines(project, "prompts-jsonl", [{"prompt": "Name  a RIVER."}, {"prompt": "Name a city."}], "prompts.jsonl")
    Message.objects.filter(project=project, text="Name  a RIVER.").update(split="test")  # as migration 0004 left it
    importlib.import_module("annotate.migrations.0008_split_keys").fill(None, SimpleNamespace(connection=connection))
    keys = dict(Message.objects.filter(project=project).values_list("text", "split_key"))
    assert bytes(keys["Name  a RIVER."]) == content_digest("name a river.") and keys["Name a city."] is None
