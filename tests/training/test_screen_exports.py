"""Exports apply the content screen's stored findings: live spans become numbered placeholders per row."""

import json

import pytest
from django.conf import settings

from annotate.models import Message, ScreenFinding
from annotate.services import screening, tree
from training.exporters.card import card_read
from training.services.snapshots import snapshot_create

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def snapshot_store(tmp_path, settings):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"


def rows_of(snapshot):
    folder = settings.SNAPSHOT_STORE / snapshot.folder
    return [json.loads(line) for split in ("train", "test")
            for line in (folder / f"{snapshot.kind}-{split}.jsonl").read_text().splitlines()]


def conversation(project, prompt_text, reply_text):
    prompt = tree.message_create(project=project, parent=None, role="user", text=prompt_text, source="annotator")
    reply = tree.message_create(project=project, parent=prompt, role="assistant", text=reply_text, source="annotator")
    Message.objects.filter(id=reply.id).update(review_state="accepted")
    return prompt, reply


def test_exports_number_placeholders_per_conversation_and_a_cleared_finding_no_longer_redacts(project, owner):
    screening.screen_configure(project=project, enabled=True)
    conversation(project, "Mail ann@example.com or bob@example.org, then ann@example.com again.",
                 "I wrote to ann@example.com.")
    conversation(project, "Ask bob@example.org about it.", "Fine, bob@example.org it is.")
    sft = rows_of(snapshot_create(project=project, kind="sft", parquet=False))
    texts = sorted([turn["content"] for turn in row["messages"]] for row in sft)
    # Within one conversation the same address is the same placeholder; another row numbers from 1 again.
    assert texts == [
        ["Ask {{EMAIL_1}} about it.", "Fine, {{EMAIL_1}} it is."],
        ["Mail {{EMAIL_1}} or {{EMAIL_2}}, then {{EMAIL_1}} again.", "I wrote to {{EMAIL_1}}."],
    ]
    prompts = rows_of(snapshot_create(project=project, kind="prompts", parquet=False))
    assert sorted(row["prompt"][0]["content"] for row in prompts)[0] == "Ask {{EMAIL_1}} about it."
    # The card counts what was redacted (spans per kind in the messages written, not per row).
    card = card_read(settings.SNAPSHOT_STORE / snapshot_create(project=project, kind="sft", parquet=False).folder)
    assert card["snapshot"]["screen"] == {"enabled": True, "redacted": {"email": 6}, "held_messages": 0}
    # An admin clears a false positive: the next export writes that address as stored.
    bob = ScreenFinding.objects.get(message__text="Ask bob@example.org about it.")
    screening.finding_clear(finding=bob, by=owner)
    sft = rows_of(snapshot_create(project=project, kind="sft", parquet=False))
    assert ["Ask bob@example.org about it.", "Fine, {{EMAIL_1}} it is."] in [
        [turn["content"] for turn in row["messages"]] for row in sft]


def test_switching_the_screen_off_and_on_loses_no_stored_text_and_off_keeps_redacting_stored_findings(project):
    screening.screen_configure(project=project, enabled=True)
    prompt, reply = conversation(project, "Call 415-555-0134 or mail x.y@example.com", "ok")
    screening.screen_configure(project=project, enabled=False)
    screening.screen_configure(project=project, enabled=True)
    prompt.refresh_from_db()
    assert prompt.text == "Call 415-555-0134 or mail x.y@example.com" and not prompt.excluded
    assert ScreenFinding.objects.filter(message=prompt).count() == 2
    row, = rows_of(snapshot_create(project=project, kind="sft", parquet=False))
    assert row["messages"][0]["content"] == "Call {{PHONE_1}} or mail {{EMAIL_1}}"


def test_a_project_without_a_screen_exports_as_stored_and_its_card_names_no_screen(project):
    conversation(project, "Mail ann@example.com", "ok")
    snapshot = snapshot_create(project=project, kind="sft", parquet=False)
    assert rows_of(snapshot)[0]["messages"][0]["content"] == "Mail ann@example.com"
    assert card_read(settings.SNAPSHOT_STORE / snapshot.folder)["snapshot"]["screen"] is None
