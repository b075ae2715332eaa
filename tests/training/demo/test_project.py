import pytest
from django.core.management import call_command

from annotate.models import CorpusText, Membership, Message, Project, WorkItem

pytestmark = pytest.mark.django_db


def test_demo_setup_creates_logins_a_project_and_work_and_can_run_twice(capsys):
    call_command("demo", "--setup-only")
    call_command("demo", "--setup-only")
    out = capsys.readouterr().out
    assert "alice     demo-pass-2026   (annotator)" in out
    project = Project.objects.get()
    assert {m.user.username for m in Membership.objects.filter(project=project)} == {
        "admin", "reviewer", "alice", "bob", "carol", "dave", "erin", "frank"}
    # 300 seed prompts, each with two replies of an earlier assistant and waiting for two
    # demonstrations (round 1's comparisons are the rankings of these four), loaded once.
    assert Message.objects.filter(project=project, parent=None).count() == 300
    assert Message.objects.filter(project=project, source="import", role="assistant").count() == 600
    assert WorkItem.objects.filter(project=project, kind="demonstration", open_slots=2).count() == 300
    assert CorpusText.objects.filter(project=project).exists()
    from django.test import Client

    client = Client()
    assert client.login(username="alice", password="demo-pass-2026")
