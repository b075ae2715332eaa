"""Snapshot integrity and retention: snapshot_verify (command and admin action) names every file that is missing
or changed; snapshot_prune deletes old snapshots' files and rows but never one still needed."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from annotate.models import Ranking
from tests.annotate.factories import ranking_items
from training import services
from training.models import DatasetSnapshot, ModelKind, ModelVersion, RunStage, RunStatus, TrainingRun
from training.services.snapshots import snapshot_verify

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def snapshot_store(tmp_path, settings):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"


@pytest.fixture
def ranked(project, member):
    for candidate_set in ranking_items(project, 12, k=3):
        Ranking.objects.create(candidate_set=candidate_set, annotator=member, tiers=[[m] for m in candidate_set.message_ids])
    return project


def folder_of(snapshot):
    return settings.SNAPSHOT_STORE / snapshot.folder


def test_verify_names_a_changed_and_a_missing_file_and_fails(ranked, capsys):
    good = services.snapshot_create(project=ranked, kind="preference")
    bad = services.snapshot_create(project=ranked, kind="preference", parquet=False)
    call_command("snapshot_verify")
    assert "2 snapshots" in capsys.readouterr().out

    changed = folder_of(bad) / "preference-train.jsonl"
    data = bytearray(changed.read_bytes())
    data[10] = ord("X") if data[10] != ord("X") else ord("Y")  # the same size, another sha256
    changed.write_bytes(bytes(data))
    (folder_of(bad) / "rankings-train.jsonl").unlink()
    with pytest.raises(CommandError, match="1 of 2 snapshots"):
        call_command("snapshot_verify")
    out = capsys.readouterr().out
    assert f"snapshot {bad.id}" in out and f"snapshot {good.id}" not in out
    assert "preference-train.jsonl: sha256" in out and "rankings-train.jsonl: missing" in out
    call_command("snapshot_verify", str(good.id))  # one snapshot alone, and it is whole
    with pytest.raises(CommandError, match="no snapshot with id 999999"):
        call_command("snapshot_verify", "999999")


def test_the_admin_action_verifies_the_selected_snapshots_for_staff_only(ranked, owner, member):
    good = services.snapshot_create(project=ranked, kind="preference")
    bad = services.snapshot_create(project=ranked, kind="prompts")
    (folder_of(bad) / "README.md").write_text("edited by hand\n")
    url = "/admin/training/datasetsnapshot/"
    form = {"action": "verify_files", "_selected_action": [good.id, bad.id]}

    outsider = Client()
    outsider.force_login(member)
    assert outsider.post(url, form).status_code == 302  # to the admin's login: not staff
    owner.is_superuser = True
    owner.save()
    staff = Client()
    staff.force_login(owner)
    page = staff.post(url, form, follow=True).content.decode()
    assert f"{good}: all {len(good.files)} files match" in page
    assert f"{bad}: README.md: " in page and "bytes" in page


def test_prune_keeps_what_a_model_or_a_round_needs_and_the_newest_and_deletes_the_rest(
    ranked, project, member, capsys, settings, django_capture_on_commit_callbacks
):
    trained, staged, running, resumable, cancelled, unused = (
        services.snapshot_create(project=ranked, kind="preference") for _ in range(6)
    )
    newest_sft = _sft_snapshot(project, member)
    recent = services.snapshot_create(project=ranked, kind="preference")
    old = [trained, staged, running, resumable, cancelled, unused, newest_sft]
    DatasetSnapshot.objects.filter(id__in=[s.id for s in old]).update(created_at=timezone.now() - timedelta(days=40))

    # The model versions: one names its snapshot, one is the model of a stage that read its own.
    ModelVersion.objects.create(project=project, kind=ModelKind.REWARD, version=1, folder="r", snapshot=trained)
    policy = ModelVersion.objects.create(project=project, kind=ModelKind.POLICY, version=1, folder="p")
    for number, (status, snapshot, model) in enumerate([
        (RunStatus.SUCCEEDED, staged, policy), (RunStatus.RUNNING, running, None), (RunStatus.FAILED, resumable, None),
        (RunStatus.CANCELLED, cancelled, None),
    ], start=1):
        run = TrainingRun.objects.create(project=project, number=number, status=status, algorithm="dpo")
        RunStage.objects.create(run=run, order=0, name="sft", snapshot=snapshot, model_version=model)

    settings.SNAPSHOT_KEEP_DAYS = 0
    call_command("snapshot_prune")
    assert "Retention is off" in capsys.readouterr().out
    assert DatasetSnapshot.objects.count() == 8

    settings.SNAPSHOT_KEEP_DAYS = 30
    call_command("snapshot_prune", "--dry-run", verbosity=2)
    out = capsys.readouterr().out
    assert out.count("would delete snapshot") == 2
    assert f"would delete snapshot {cancelled.id} " in out and f"would delete snapshot {unused.id} " in out
    assert f"kept snapshot {trained.id} " in out and "model version reward-v1 was trained on it" in out
    assert "model version policy-v1 was trained on it" in out and "round 2 reads it (running)" in out
    assert "round 3 reads it (failed: it may be resumed)" in out and "the newest sft snapshot of its project" in out
    assert DatasetSnapshot.objects.count() == 8 and folder_of(unused).is_dir()  # a dry run deletes nothing

    with django_capture_on_commit_callbacks(execute=True):  # the files go when the deletion commits
        call_command("snapshot_prune")
    assert "2 snapshots older than 30 days deleted" in capsys.readouterr().out
    assert set(DatasetSnapshot.objects.values_list("id", flat=True)) == {
        trained.id, staged.id, running.id, resumable.id, newest_sft.id, recent.id}
    assert not folder_of(cancelled).exists() and not folder_of(unused).exists()
    for kept in (trained, staged, running, resumable, newest_sft, recent):
        assert snapshot_verify(snapshot=kept) == [], kept  # every file of those kept is still there
    assert RunStage.objects.get(run__number=4).snapshot is None  # the cancelled round's stage lost its snapshot
    call_command("snapshot_prune", "--days", "1", verbosity=2)
    assert "0 snapshots older than 1 days deleted" in capsys.readouterr().out  # the rest is still needed


def _sft_snapshot(project, member):
    from annotate.models import Message

    reply = Message.objects.filter(project=project, role="assistant").first()
    Message.objects.filter(pk=reply.pk).update(review_state="accepted", source="annotator", author=member)
    return services.snapshot_create(project=project, kind="sft")
