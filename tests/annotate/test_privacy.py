"""Privacy: keyed pseudonyms that public ids cannot recompute, and deleting one contributor's data."""

import hashlib
import importlib
import io
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection

from annotate.importers import import_run
from annotate.importers.base import source_user_pseudonym
from annotate.models import ContributorDeletion, Label, Message, MessageSource, Ranking, ReviewState, Role, Task, TaskState
from annotate.services import accounts, contributors, queue, submits, tree
from tests.annotate.factories import ranking_items
from tests.helpers import run_python
from training import services
from training.exporters.rows import annotator_pseudonym

pytestmark = pytest.mark.django_db
FIXTURES = Path(__file__).parent / "fixtures"
OASST_USERS = ("u-a", "u-b", "u-c", "u-d", "u-e")
KINDS = ("sft", "preference", "prompts", "unpaired")


@pytest.fixture(autouse=True)
def snapshot_store(tmp_path, settings):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"


def public_recomputation(user_id: str) -> str:
    """What anyone with Open-Assistant's published user ids could compute: the old, unkeyed pseudonym."""
    return f"oasst:{hashlib.blake2b(user_id.encode(), digest_size=8).hexdigest()}"


def import_oasst(project):
    with (FIXTURES / "oasst-messages.jsonl").open("rb") as stream:
        return import_run(project=project, format="oasst-messages", stream=stream, filename="oasst-messages.jsonl")


def exported(project, kind) -> str:
    """Every file of a new snapshot of `kind` (rows, side files), as one text; "" when there is nothing to export."""
    try:
        snapshot = services.snapshot_create(project=project, kind=kind, **({"demonstrations": "all"} if kind == "sft" else {}))
    except ValidationError:
        return ""
    folder = settings.SNAPSHOT_STORE / snapshot.folder
    return "\n".join(path.read_text() for path in sorted(folder.glob("*.jsonl")))


def pseudonyms_in(text: str, key: str) -> set:
    found = set()
    for line in filter(None, text.splitlines()):
        stack = [json.loads(line)]
        while stack:
            value = stack.pop()
            if isinstance(value, dict):
                found.update(str(v) for k, v in value.items() if k == key and v)
                stack.extend(value.values())
            elif isinstance(value, list):
                stack.extend(value)
    return found


# ---------------------------------------------------------------------------------------------
# Keyed pseudonyms


def test_imported_authors_cannot_be_found_from_their_public_user_ids(project):
    import_oasst(project)
    # The pairs: the ranked replies' authors (an SFT export of everything leaves out the replies that lost).
    pairs = exported(project, "preference")
    authors = pseudonyms_in(pairs, "source_user")
    assert len(authors) == 3  # the replies' authors u-b, u-c, u-d
    assert authors.isdisjoint(public_recomputation(user) for user in OASST_USERS)
    assert authors == {source_user_pseudonym("oasst", user) for user in ("u-b", "u-c", "u-d")}
    stored = set(Message.objects.values_list("origin__source_user", flat=True))
    assert stored.isdisjoint(public_recomputation(user) for user in OASST_USERS)
    ranker = Ranking.objects.get().external_annotator
    assert ranker.startswith("oasst:") and ranker != public_recomputation("merged-ranks")


def test_one_person_keeps_one_pseudonym_across_exports_and_two_keys_give_two(project, member, settings):
    candidate_set = ranking_items(project, 1, k=2)[0]
    Ranking.objects.create(candidate_set=candidate_set, annotator=member, tiers=[[m] for m in candidate_set.message_ids])
    first = pseudonyms_in(exported(project, "preference"), "annotator")
    settings.SECRET_KEY = "another secret key, as after a rotation" * 2
    second = pseudonyms_in(exported(project, "preference"), "annotator")
    assert first == second == {annotator_pseudonym(project.id, member.id)}
    imported = source_user_pseudonym("oasst", "u-a")
    assert imported == source_user_pseudonym("oasst", "u-a")

    settings.PSEUDONYM_KEY = "a different installation's pseudonym key" * 2
    third = pseudonyms_in(exported(project, "preference"), "annotator")
    assert len(third) == 1 and third != first
    assert source_user_pseudonym("oasst", "u-a") != imported


def test_the_migration_keys_stored_pseudonyms_as_a_new_import_would(project):
    # Rows as the unkeyed importer left them, and one value that is no unkeyed pseudonym.
    prompt = tree.message_create(project=project, parent=None, role="user", text="Hi", source=MessageSource.IMPORT,
                                 origin={"source_id": "old-1", "source_user": public_recomputation("u-a")})
    reply = tree.message_create(project=project, parent=prompt, role="assistant", text="Hello", source=MessageSource.IMPORT,
                                origin={"source_user": "hand-written"})
    other = tree.message_create(project=project, parent=prompt, role="assistant", text="Hey", source=MessageSource.IMPORT)
    candidate_set = tree.candidate_set_create(project=project, message_ids=[reply.id, other.id], kind="compare")
    ranking = Ranking.objects.create(candidate_set=candidate_set, external_annotator=public_recomputation("merged-ranks"),
                                     tiers=[[reply.id], [other.id]])
    migration = importlib.import_module("annotate.migrations.0005_keyed_source_pseudonyms")
    migration.rekey(None, SimpleNamespace(connection=connection))

    prompt.refresh_from_db(), reply.refresh_from_db(), ranking.refresh_from_db()
    assert prompt.origin["source_user"] == source_user_pseudonym("oasst", "u-a")
    assert ranking.external_annotator == source_user_pseudonym("oasst", "merged-ranks")
    assert reply.origin["source_user"] == "hand-written"
    # u-a imported after the migration is the same person as before it.
    import_oasst(project)
    assert Message.objects.get(project=project, origin__source_id="p1").origin["source_user"] == prompt.origin["source_user"]


def test_production_requires_a_pseudonym_key_and_development_generates_its_own(tmp_path):
    code = ("import sys; sys.path[:0] = ['platform', '.']\n"
            "import os; os.environ['DJANGO_SETTINGS_MODULE'] = 'platform_config.settings'\n"
            "from django.conf import settings\nprint('KEYS', settings.SECRET_KEY, settings.PSEUDONYM_KEY)\n")
    base = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "SECRET_KEY", "PSEUDONYM_KEY")}
    base["PLATFORM_DATA_DIR"] = str(tmp_path / "data")
    production = run_python(code, env={**base, "PLATFORM_ENV": "production", "SECRET_KEY": "k" * 40,
                                       "ALLOWED_HOSTS": "example.org"})
    assert "ImproperlyConfigured: PSEUDONYM_KEY must be set when PLATFORM_ENV=production" in production.stderr
    development = run_python(code, env=base)
    assert development.returncode == 0, development.stderr
    key = (tmp_path / "data" / "pseudonym_key").read_text().strip()
    assert development.stdout.split() == ["KEYS", (tmp_path / "data" / "secret_key").read_text().strip(), key]
    assert oct((tmp_path / "data" / "pseudonym_key").stat().st_mode & 0o777) == "0o600"


# ---------------------------------------------------------------------------------------------
# Deleting one contributor's data


@pytest.fixture
def other(make_user, project):
    user = make_user("other")
    accounts.membership_set(project=project, user=user, role=Role.ANNOTATOR)
    return user


def test_deleting_an_annotator_takes_their_judgements_and_texts_out_of_the_next_export(project, member, other, reviewer):
    # The member's prompt, with another annotator's demonstration under it.
    theirs = tree.message_create(project=project, parent=None, role="user", text="Member's own prompt about Lyon",
                                 source=MessageSource.ANNOTATOR, author=member)
    answer = tree.message_create(project=project, parent=theirs, role="assistant", text="Other's answer about Lyon",
                                 source=MessageSource.ANNOTATOR, author=other)
    # Another annotator's prompt, with the member's demonstration (accepted by the member and a reviewer).
    prompt = tree.message_create(project=project, parent=None, role="user", text="Other's prompt about Nantes",
                                 source=MessageSource.ANNOTATOR, author=other)
    demonstration = tree.message_create(project=project, parent=prompt, role="assistant",
                                        text="Member's demonstration about Nantes", source=MessageSource.ANNOTATOR,
                                        author=member)
    submits.review_save(message=demonstration, reviewer=reviewer, accepted=True)
    imported = tree.message_create(project=project, parent=prompt, role="assistant", text="An imported reply",
                                   source=MessageSource.IMPORT)
    tree.candidate_set_create(project=project, message_ids=[demonstration.id, imported.id], kind="compare")
    # The member reviewed the other's answer (as a reviewer would) and ranked and labelled imported replies.
    accounts.membership_set(project=project, user=member, role=Role.REVIEWER)
    submits.review_save(message=answer, reviewer=member, accepted=True)
    # Rankings through the queue, as annotators give them: the item counts each one.
    candidate_set, later = ranking_items(project, 2, k=3)
    a, b, c = candidate_set.message_ids
    for annotator, tiers in ((member, [[a], [b], [c]]), (other, [[c], [b], [a]])):
        task = queue.task_next(project=project, annotator=annotator, role=Role.ANNOTATOR, kind="ranking")
        assert task.item.candidate_set_id == candidate_set.id
        submits.task_submit(task_id=task.id, annotator=annotator, submit_key=f"k{task.id}", payload={"tiers": tiers})
    item = task.item
    item.refresh_from_db()
    assert (item.done, item.open_slots) == (2, 0)
    submits.label_submit(message=Message.objects.get(pk=a), annotator=member, quality=5)
    leased = queue.task_next(project=project, annotator=member, role=Role.ANNOTATOR, kind="ranking")
    assert leased.item.candidate_set_id == later.id

    pseudonym = annotator_pseudonym(project.id, member.id)
    texts = ("Member's own prompt about Lyon", "Other's answer about Lyon", "Member's demonstration about Nantes")
    before = {kind: exported(project, kind) for kind in KINDS}
    assert all(text in before["sft"] + before["prompts"] for text in texts)
    assert pseudonym in before["preference"] and pseudonym in before["unpaired"]

    counts = contributors.contributor_delete(project=project, user=member)
    assert counts == {"rankings": 1, "labels": 1, "reviews": 1, "messages": 2, "messages_under_theirs": 1,
                      "others_judgements_on_them": 1, "work_items_closed": 1, "slots_reopened": 1}

    after = {kind: exported(project, kind) for kind in KINDS}
    for kind, text in after.items():
        assert pseudonym not in text, kind
        assert not any(gone in text for gone in texts), kind
    # What others did stays: the other annotator's ranking, their prompt, the reviewer's verdicts elsewhere.
    assert pseudonyms_in(after["preference"], "annotator") == {annotator_pseudonym(project.id, other.id)}
    assert "Other's prompt about Nantes" in after["prompts"]
    assert not Label.objects.filter(annotator=member).exists()
    assert Task.objects.get(pk=leased.pk).state == TaskState.EXPIRED  # what they held is never submitted
    # The set they ranked asks one more annotator, never them again.
    item.refresh_from_db()
    assert (item.done, item.open_slots) == (1, 1)
    assert queue.task_next(project=project, annotator=member, role=Role.ANNOTATOR, kind="ranking") is None


def test_a_deleted_reviewer_s_verdict_no_longer_accepts_a_demonstration(project, member, reviewer):
    prompt = tree.message_create(project=project, parent=None, role="user", text="Name a river.",
                                 source=MessageSource.ANNOTATOR, author=member)
    reply = tree.message_create(project=project, parent=prompt, role="assistant", text="The Loire.",
                                source=MessageSource.ANNOTATOR, author=member)
    submits.review_save(message=reply, reviewer=reviewer, accepted=True)
    assert "The Loire." in exported(project, "sft")
    assert contributors.contributor_delete(project=project, user=reviewer)["reviews"] == 1
    reply.refresh_from_db()
    assert reply.review_state == ReviewState.PENDING
    with pytest.raises(ValidationError):
        services.snapshot_create(project=project, kind="sft")  # nothing accepted is left


def test_deleting_an_imported_author_by_their_source_id_from_the_command_line(project):
    import_oasst(project)
    out = io.StringIO()
    # u-b wrote "12 / 4 = 3" (which u-a's follow-up answers) and "Hello there!".
    call_command("contributor_delete", project=project.id, source_user="oasst:u-b", stdout=out)
    assert "2 messages, 1 messages under theirs" in out.getvalue()
    everything = "\n".join(exported(project, kind) for kind in KINDS)
    for gone in ("12 / 4 = 3", "Hello there!", "And 12 / 3?"):
        assert gone not in everything
    assert source_user_pseudonym("oasst", "u-b") not in everything
    # The merged OASST ranking keeps its order of the replies still there: one pair, 12 / 4 = 4 over three.
    pairs = [json.loads(line) for line in exported(project, "preference").splitlines() if '"chosen"' in line]
    assert [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs] == [("12 / 4 = 4", "three")]
    assert "Say hello." in everything
    # Importing the source again does not bring them back: the deletion is remembered.
    deletion = ContributorDeletion.objects.get(project=project)
    assert deletion.pseudonym == source_user_pseudonym("oasst", "u-b") and deletion.counts["messages"] == 2
    with (FIXTURES / "oasst-trees.jsonl").open("rb") as stream:
        again = import_run(project=project, format="oasst-trees", stream=stream)
    assert (again.counts["messages"], again.counts["already_there"], again.counts["by_deleted_contributors"]) == (0, 3, 1)
    assert not Message.objects.filter(project=project, text__in=["12 / 4 = 3", "And 12 / 3?"]).exists()


def test_a_deletion_that_names_nobody_or_finds_nothing_is_refused_and_deletes_nothing(project, member):
    candidate_set = ranking_items(project, 1, k=2)[0]
    Ranking.objects.create(candidate_set=candidate_set, annotator=member, tiers=[[m] for m in candidate_set.message_ids])
    with pytest.raises(ValidationError):
        contributors.contributor_delete(project=project)
    with pytest.raises(ValidationError):
        contributors.contributor_delete(project=project, user=member, pseudonym="oasst:0123456789abcdef")
    with pytest.raises(CommandError, match="nothing in this project is theirs"):
        call_command("contributor_delete", project=project.id, pseudonym="oasst:0123456789abcdef")
    with pytest.raises(CommandError, match="no user"):
        call_command("contributor_delete", project=project.id, user="nobody")
    assert Ranking.objects.filter(annotator=member).count() == 1


def test_the_api_deletes_for_project_admins_only(project, owner, member, outsider, api_as):
    candidate_set = ranking_items(project, 1, k=2)[0]
    Ranking.objects.create(candidate_set=candidate_set, annotator=member, tiers=[[m] for m in candidate_set.message_ids])
    url = f"/api/projects/{project.id}/contributors/delete/"
    assert api_as(outsider).post(url, {"user_id": member.id}, format="json").status_code == 404
    assert api_as(member).post(url, {"user_id": member.id}, format="json").status_code == 403
    assert api_as(None).post(url, {"user_id": member.id}, format="json").status_code == 401
    assert Ranking.objects.filter(annotator=member).count() == 1
    admin = api_as(owner)
    assert admin.post(url, {}, format="json").status_code == 400
    assert admin.post(url, {"user_id": outsider.id}, format="json").status_code == 404  # never in the project
    answer = admin.post(url, {"user_id": member.id, "remove_member": True}, format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["counts"]["rankings"] == 1
    assert not Ranking.objects.filter(annotator=member).exists()
    assert not project.memberships.get(user=member).is_active
    assert ContributorDeletion.objects.get(project=project, user=member).deleted_by == owner
    again = admin.post(url, {"user_id": member.id}, format="json")
    assert again.status_code == 400 and "nothing in this project is theirs" in again.content.decode()
