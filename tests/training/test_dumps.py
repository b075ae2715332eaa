"""Project backup and restore (training/services/dumps.py, manage.py project_dump / project_load): every
project-scoped model travels, a dump loaded into a fresh project dumps to the same content, and a corrupt or
unknown archive is refused with its reason and writes nothing."""

import hashlib
import io
import json
import re
import tarfile

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from annotate.models import (
    CandidateSetKind,
    Label,
    Membership,
    Message,
    Project,
    Ranking,
    Task,
)
from annotate.rules import compare_order
from tests.training.test_tree_export import canonical, judged_project
from training.exporters.trees import tree_records
from training.models import GeneratedReply, ModelKind, ModelVersion, ScreenClassifier
from training.services.snapshots import snapshot_create
from training.services.dumps import (
    TABLES,
    DumpRefused,
    project_dump,
    project_load,
    project_scoped_models,
)

pytestmark = pytest.mark.django_db


def contents(path) -> dict[str, bytes]:
    """Every file of an archive, the manifest without the moment it was written."""
    with tarfile.open(path, "r:gz") as archive:
        files = {member.name: archive.extractfile(member).read() for member in archive.getmembers()}
    manifest = json.loads(files["manifest.json"])
    del manifest["dumped_at"]
    files["manifest.json"] = json.dumps(manifest, sort_keys=True).encode()
    return files


def rows(path, table) -> list[dict]:
    return [json.loads(line) for line in contents(path)[f"{table}.jsonl"].splitlines()]


def without_ids(text: str) -> str:
    """A tree export with the project's own message ids ("p3-m41") numbered in order of appearance."""
    numbers = {}
    return re.sub(r"p\d+-m\d+", lambda found: f"m{numbers.setdefault(found.group(), len(numbers))}", text)


def shown_as_a_and_b(project) -> list[str]:
    task = Task.objects.get(project=project, kind="compare")
    return [Message.objects.get(id=m).text for m in compare_order(task.id, task.item.candidate_set.message_ids)]


def test_every_project_scoped_model_is_in_the_dump():
    scoped = {model._meta.label for model in project_scoped_models()}
    assert {"annotate.Message", "annotate.HistoricalMembership", "training.GenerationJob_versions"} <= scoped
    assert sorted(scoped - set(TABLES)) == [], "project-scoped models that project_dump does not carry"
    assert sorted(set(TABLES) - scoped) == []


@pytest.fixture
def judged(project, owner, member, reviewer, make_user):
    return judged_project(project, owner=owner, member=member, reviewer=reviewer, make_user=make_user)


def test_dump_load_and_dump_again_gives_the_same_archive(judged, member, tmp_path):
    first, second = tmp_path / "first.tar.gz", tmp_path / "second.tar.gz"
    call_command("project_dump", str(judged.id), str(first))
    call_command("project_load", str(first), "--name", "Restored")
    restored = Project.objects.get(name="Restored")
    project_dump(project=restored, path=second)
    one, two = contents(first), contents(second)
    empty = [entry["name"] for entry in json.loads(one["manifest.json"])["files"] if not entry["rows"]]
    assert empty == [], "tables this test does not fill, so does not check"
    assert set(one) == set(two) == {"manifest.json", "people.jsonl"} | {f"{label}.jsonl" for label in TABLES}
    two["annotate.Project.jsonl"] = two["annotate.Project.jsonl"].replace(b'"Restored"', b'"Arithmetic"')
    two["annotate.HistoricalProject.jsonl"] = one["annotate.HistoricalProject.jsonl"]  # renamed only in its row
    # Loaded into the installation it came from, an invite gets a link of its own; nothing else differs.
    assert rows(first, "annotate.Invite")[0]["token"] != rows(second, "annotate.Invite")[0]["token"]
    one["annotate.Invite.jsonl"] = two["annotate.Invite.jsonl"] = b""
    assert {name: one[name] for name in one if name != "manifest.json"} == {name: two[name] for name in two
                                                                          if name != "manifest.json"}

    # The copy is a project of its own that reads as the original: same trees and judgements, people as
    # pseudonymous stand-ins (members too), a compare task still showing the same reply as A.
    assert without_ids(canonical(tree_records(restored))) == without_ids(canonical(tree_records(judged)))
    assert Message.objects.filter(project=restored).count() == Message.objects.filter(project=judged).count() > 5
    assert not Membership.objects.filter(project=restored, user=member).exists()
    assert Membership.objects.filter(project=restored, role="admin", user__is_active=False).count() == 1
    assert shown_as_a_and_b(restored) == shown_as_a_and_b(judged)
    version = ModelVersion.objects.get(project=restored, kind=ModelKind.SFT)
    assert GeneratedReply.objects.filter(model_version=version).count() == 2 and version.metrics == {"loss": 1.5}
    assert restored.history.count() == judged.history.count() >= 2
    ranking = Ranking.objects.get(candidate_set__project=restored, candidate_set__kind=CandidateSetKind.RANKING,
                                  annotator__isnull=False)
    assert Message.objects.filter(id__in=[m for tier in ranking.tiers for m in tier], project=restored).count() == 3
    assert Task.objects.get(id=ranking.task_id).result == {"ranking_id": ranking.id}
    # The screen travels: its settings, findings on the restored messages, the chosen classifier.
    assert restored.screen.enabled and restored.screen.words == ["darn"]
    finding = restored.screen_findings.get(kind="email")
    assert finding.message.project == restored and finding.message.text[finding.start:finding.end] == "pat@example.com"
    chat = restored.screen_findings.get(where="chat")
    assert chat.text == "darn it" and chat.model_version_id == version.id
    assert ScreenClassifier.objects.get(project=restored).model_version.project == restored


def test_members_travel_as_accounts_when_asked(judged, member, reviewer, tmp_path):
    archive = tmp_path / "accounts.tar.gz"
    project_dump(project=judged, path=archive, members="accounts")
    people = {line["key"] for line in rows(archive, "people") if "account" in line}
    assert {"owner", "member", "reviewer"} <= people
    restored = project_load(path=archive, name="Restored")
    assert set(Membership.objects.filter(project=restored).values_list("user__username", flat=True)) == {
        "owner", "member", "reviewer"}
    assert Label.objects.filter(message__project=restored, annotator=member).count() == 1


def tampered(source, target, edit):
    """Copy an archive with edit(files) applied to its files (a dict of name to bytes)."""
    with tarfile.open(source, "r:gz") as archive:
        files = {member.name: archive.extractfile(member).read() for member in archive.getmembers()}
    edit(files)
    with tarfile.open(target, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return target


def manifest_edit(change):
    def edit(files):
        files["manifest.json"] = json.dumps(change(json.loads(files["manifest.json"]))).encode()
    return edit


def unknown_version(manifest):
    return {**manifest, "version": 99}


def changed_text(files):
    files["annotate.Message.jsonl"] = files["annotate.Message.jsonl"].replace(b"prime", b"prim3", 1)


def without(name):
    return lambda files: files.pop(name)


def a_field_this_installation_lacks(files):
    """A well-formed, correctly signed archive whose last table names a field no model has: refused only
    once every table before it is written."""
    name = "training.MetricPoint.jsonl"
    first, *rest = files[name].splitlines()
    files[name] = b"\n".join([json.dumps({**json.loads(first), "colour": "red"}).encode(), *rest]) + b"\n"
    manifest = json.loads(files["manifest.json"])
    next(entry for entry in manifest["files"] if entry["name"] == name)["sha256"] = hashlib.sha256(files[name]).hexdigest()
    files["manifest.json"] = json.dumps(manifest).encode()


@pytest.mark.parametrize("edit, reason", [
    (manifest_edit(unknown_version), "format version 99 is not one this installation reads"),
    (changed_text, "annotate.Message.jsonl is corrupt: its sha256 is"),
    (without("annotate.Ranking.jsonl"), "annotate.Ranking.jsonl is missing from the archive"),
    (without("manifest.json"), "no manifest.json: not a project dump"),
    (a_field_this_installation_lacks, "training.MetricPoint has no field colour"),
])
def test_an_unknown_or_corrupt_archive_is_refused_with_its_reason_and_writes_nothing(judged, tmp_path, edit, reason):
    good = tmp_path / "good.tar.gz"
    project_dump(project=judged, path=good)
    bad = tampered(good, tmp_path / "bad.tar.gz", edit)
    before = [model.objects.count() for model in (Project, Message, Ranking, Membership, get_user_model())]
    with pytest.raises(DumpRefused) as refused:
        project_load(path=bad)
    assert reason in refused.value.reason
    with pytest.raises(CommandError, match="refused, nothing was written"):
        call_command("project_load", str(bad))
    assert [model.objects.count() for model in (Project, Message, Ranking, Membership, get_user_model())] == before


def test_project_admins_download_the_dump_and_others_cannot(judged, owner, member, outsider, make_user, api_as, tmp_path):
    url = f"/api/projects/{judged.id}/dump/"
    admin = make_user("admin")  # a project admin who is not site staff
    Membership.objects.create(project=judged, user=admin, role="admin")
    answer = api_as(admin).get(url)
    assert answer.status_code == 200 and answer["Content-Type"] == "application/gzip"
    assert 'filename="project-' in answer["Content-Disposition"]
    downloaded = tmp_path / "downloaded.tar.gz"
    downloaded.write_bytes(b"".join(answer.streaming_content))
    assert "account" not in contents(downloaded)["people.jsonl"].decode()
    restored = project_load(path=downloaded, name="From the API")
    assert Message.objects.filter(project=restored).count() == Message.objects.filter(project=judged).count()

    assert api_as(admin).get(url, {"members": "accounts"}).status_code == 403  # emails leave only by staff
    assert api_as(owner).get(url, {"members": "accounts"}).status_code == 200
    assert api_as(owner).get(url, {"members": "everyone"}).status_code == 400
    assert api_as(member).get(url).status_code == 403
    assert api_as(outsider).get(url).status_code == 404
    assert api_as(None).get(url).status_code == 401


def test_people_keep_their_pseudonyms_in_the_restored_projects_snapshots(judged, tmp_path, settings):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"
    archive = tmp_path / "judged.tar.gz"
    project_dump(project=judged, path=archive)
    restored = project_load(path=archive, name="Restored")

    def pseudonyms(project) -> set[str]:
        found = set()
        for kind in ("preference", "unpaired"):
            snapshot = snapshot_create(project=project, kind=kind, parquet=False)
            for path in (settings.SNAPSHOT_STORE / snapshot.folder).glob("*.jsonl"):
                found |= set(re.findall(r'"(a-[0-9a-f]{12})"', path.read_text()))
        return found

    assert len(pseudonyms(judged)) >= 2
    assert pseudonyms(restored) == pseudonyms(judged)
