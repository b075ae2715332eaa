"""The content screen where annotators' text and imports enter: what is found, held, blocked, cleared, backfilled."""

import io

import pytest

from annotate.importers import import_run
from annotate.models import Message, ScreenAction, ScreenFinding
from annotate.screen import detectors
from annotate.services import screening, tree

pytestmark = pytest.mark.django_db


def screen_on(project, **changes):
    settings, switched = screening.screen_configure(project=project, enabled=True, **changes)
    return settings


def test_a_submitted_prompt_with_an_email_is_stored_with_its_finding_and_redacted_by_default(api_as, member, project):
    screen_on(project)
    client = api_as(member)
    task = client.post(f"/api/projects/{project.id}/tasks/next/", {"kind": "prompt"}, format="json").json()["task"]
    text = "Write to jane.roe@example.com about my order 12345"
    answer = client.post(f"/api/tasks/{task['id']}/submit/", {"text": text, "submit_key": "k1"}, format="json")
    assert answer.status_code == 200, answer.content
    message = Message.objects.get(text=text)
    assert not message.excluded
    finding = ScreenFinding.objects.get(message=message)
    assert (finding.kind, text[finding.start:finding.end], finding.action) == ("email", "jane.roe@example.com", "redact")
    assert finding.where == "submit" and finding.detector and finding.detector_version == detectors.VERSION


def test_a_blocked_kind_refuses_the_submit_naming_it_and_writes_nothing(api_as, member, project):
    screen_on(project, actions={"human": {"email": ScreenAction.BLOCK}})
    client = api_as(member)
    task = client.post(f"/api/projects/{project.id}/tasks/next/", {"kind": "prompt"}, format="json").json()["task"]
    answer = client.post(f"/api/tasks/{task['id']}/submit/", {"text": "mail me: a.person@example.org", "submit_key": "k2"}, format="json")
    assert answer.status_code == 400
    assert "content screen" in answer.content.decode() and "email at characters 10-29" in answer.content.decode()
    assert not Message.objects.filter(project=project).exists()
    assert not ScreenFinding.objects.exists()


def test_a_listed_word_holds_the_message_until_an_admin_clears_it_and_it_stays_cleared(owner, project):
    screen_on(project, words=["Stupid Bot"])
    prompt = tree.message_create(project=project, parent=None, role="user", text="you stupid   bot", source="annotator")
    prompt.refresh_from_db()
    assert prompt.excluded and prompt.excluded_reason.startswith("held by the screen: word")
    finding = ScreenFinding.objects.get(message=prompt)
    screening.finding_clear(finding=finding, by=owner)
    prompt.refresh_from_db()
    assert not prompt.excluded
    # The backfill finds the same span again, and it stays cleared: the message is not held again.
    screening.screen_backfill(project=project)
    prompt.refresh_from_db()
    assert not prompt.excluded
    assert ScreenFinding.objects.filter(message=prompt).count() == 1


def test_switching_on_and_backfilling_keeps_every_stored_text_and_switching_off_loses_nothing(owner, project):
    text = "card 4111 1111 1111 1111 please"
    prompt = tree.message_create(project=project, parent=None, role="user", text=text, source="import")
    assert not ScreenFinding.objects.exists()  # off by default
    settings, switched = screening.screen_configure(project=project, enabled=True)
    assert switched
    counts = screening.screen_backfill(project=project)
    assert counts == {"card": 1}
    screening.screen_configure(project=project, enabled=False)
    prompt.refresh_from_db()
    assert prompt.text == text and ScreenFinding.objects.filter(message=prompt).count() == 1


def test_an_import_with_the_screen_on_holds_and_records_before_anyone_sees_it(owner, project):
    screen_on(project, words=["awful slur"])
    lines = b'{"prompt": "my mail is bob@example.net"}\n{"prompt": "an awful slur here"}\n{"prompt": "plain"}\n'
    batch = import_run(project=project, format="prompts-jsonl", stream=io.BytesIO(lines), filename="p.jsonl", by=owner)
    assert batch.counts["screen_findings"] == {"email": 1, "word": 1}
    held = Message.objects.get(text="an awful slur here")
    assert held.excluded
    assert not Message.objects.get(text="plain").excluded
    assert ScreenFinding.objects.get(message__text__startswith="my mail").where == "import"
