"""The lossless tree export (training/exporters/trees.py): whole conversation trees in Open-Assistant's nested
form with every judgement on each message, read back by the OASST trees importer into a fresh project and
exported again to the same trees and judgements."""

import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command

from annotate.importers import ImportRefused, import_run
from annotate.models import CandidateSetKind, ContributorDeletion, GoldAnswer, GoldResume, ImportBatch, ImportJob, Label, Message, MessageRole, MessageSource, Ranking, Review, Role, TaskKind
from annotate.rules import compare_order
from annotate.screen.detectors import Span
from annotate.services import accounts, queue, screening, submits, tree
from training.exporters.trees import tree_records
from training.models import (
    DatasetSnapshot,
    Deployment,
    ExportJob,
    GeneratedReply,
    GenerationJob,
    MetricPoint,
    ModelKind,
    ModelVersion,
    RunStage,
    ScreenClassifier,
    ScreenJob,
    TrainingRun,
)

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent.parent / "annotate" / "fixtures"


def judged_project(project, *, owner, member, reviewer, make_user):
    """Fill the project with a bit of everything a project holds: an OASST import with its merged ranking, a text
    corpus, a contributor deletion, a gold answer,
    a prompt with a demonstration and two model replies, a comparison and a ranking through the queue,
    flags and a quality label, an accepted review, a guideline change, settings changes, an invite, a
    removed member, and the training rows (round, stage, metrics, snapshot, versions, deployment, jobs)."""
    with (FIXTURES / "oasst-trees.jsonl").open("rb") as stream:
        import_run(project=project, format="oasst-trees", stream=stream, filename="oasst-trees.jsonl", by=owner)
    import_run(project=project, format="text", stream=io.BytesIO(b"Two is prime.\n\nNine is not."), filename="t.txt")
    ContributorDeletion.objects.create(project=project, pseudonym="oasst:00112233aabbccdd", counts={"messages": 0},
                                       deleted_by=owner)
    accounts.project_update_guidelines(project=project, guidelines="Be correct and kind.")
    accounts.project_settings_update(project=project, replies_per_ranking=3, overlap=1)
    accounts.invite_create(project=project, role=Role.ANNOTATOR, created_by=owner, note="for Ada")
    leaver = make_user("leaver")
    accounts.membership_set(project=project, user=leaver, role=Role.ANNOTATOR)
    project.memberships.filter(user=leaver).delete()  # its audit history names a membership that is gone

    run = TrainingRun.objects.create(project=project, number=1, algorithm="ppo", created_by=owner)
    snapshot = DatasetSnapshot.objects.create(project=project, kind="sft", version=1, rows={"train": 1},
                                              filters={"annotator_id": member.id}, folder="p/sft-v1")
    sft = ModelVersion.objects.create(project=project, kind=ModelKind.SFT, version=1, folder="p/sft-v1", run=run,
                                      snapshot=snapshot, metrics={"loss": 1.5})
    stage = RunStage.objects.create(run=run, order=0, name="sft", snapshot=snapshot, model_version=sft)
    MetricPoint.objects.create(stage=stage, step=1, values={"loss": 2.0})
    deployment = Deployment.objects.create(project=project, model_version=sft, sampling={"temperature": 0.7})
    job = GenerationJob.objects.create(project=project, requested_by=owner)
    job.versions.add(sft)
    ExportJob.objects.create(project=project, kind="sft", options={"filters": {"annotator_id": member.id}})

    prompt = tree.message_create(project=project, parent=None, role=MessageRole.USER, text="Name a prime.",
                                 source=MessageSource.ANNOTATOR, author=owner, guideline_version=2, time_spent_ms=900)
    demonstration = tree.message_create(project=project, parent=prompt, role=MessageRole.ASSISTANT, text="7 is prime.",
                                        source=MessageSource.ANNOTATOR, author=owner, guideline_version=2,
                                        time_spent_ms=4000)
    replies = [demonstration]
    for text in ("2 is prime.", "9 is prime."):
        reply = tree.message_create(project=project, parent=prompt, role=MessageRole.ASSISTANT, text=text,
                                    source=MessageSource.MODEL,
                                    origin={"model_version": sft.name, "model_version_id": sft.id,
                                            "sampling": {"temperature": 0.7}})
        GeneratedReply.objects.create(message=reply, model_version=sft, deployment=deployment, job=job,
                                      sampling={"temperature": 0.7})
        replies.append(reply)
    tree.candidate_set_create(project=project, message_ids=[replies[1].id, replies[2].id], kind=CandidateSetKind.COMPARE)
    compare = queue.task_next(project=project, annotator=member, role=Role.ANNOTATOR, kind=TaskKind.COMPARE)
    submits.task_submit(task_id=compare.id, annotator=member, submit_key="c1", payload={"choice": "A"},
                           time_spent_ms=2500)
    ranking_task = queue.task_next(project=project, annotator=reviewer, role=Role.REVIEWER, kind=TaskKind.RANKING)
    ranked = ranking_task.item.candidate_set.message_ids
    submits.task_submit(task_id=ranking_task.id, annotator=reviewer, submit_key="r1",
                           payload={"tiers": [[ranked[0]], [ranked[1], ranked[2]]]}, time_spent_ms=7000)
    # The ranking's item is also gold (its known answer names replies), and an admin let the member work again.
    GoldAnswer.objects.create(project=project, item=ranking_task.item, answer={"tiers": [[ranked[0]], ranked[1:]]},
                              needed_before=1, created_by=owner)
    GoldResume.objects.create(project=project, annotator=member, resumed_by=owner)
    submits.label_submit(message=replies[2], annotator=member, quality=1, flags=["off_task"], time_spent_ms=300)
    submits.label_submit(message=replies[1], annotator=reviewer, quality=5, time_spent_ms=200)
    submits.review_save(message=demonstration, reviewer=reviewer, accepted=True, comment="right",
                           guideline_version=2, time_spent_ms=1100)
    queue.task_next(project=project, annotator=member, role=Role.ANNOTATOR, kind=TaskKind.LABEL)  # a live lease
    # The content screen: on, with a word list; a prompt with an email in it; a chat reply it stopped (kept as
    # text, naming the version); a backfill job; the classifier an admin chose.
    screening.screen_configure(project=project, enabled=True, words=["darn"])
    tree.message_create(project=project, parent=None, role=MessageRole.USER, text="Mail pat@example.com a prime.",
                        source=MessageSource.ANNOTATOR, author=owner)
    stopped = screening.Verdict([Span("word", 0, 4, "wordlist")], ["block"])
    screening.findings_save(screening.findings_rows(project=project, verdict=stopped, where="chat", text="darn it",
                                                    user=member, model_version_id=sft.id))
    ScreenJob.objects.create(project=project, requested_by=owner, texts_done=3, texts_total=3, counts={"email": 1})
    # A ranking changed and a label withdrawn: the trail (their history) travels too.
    from annotate.services import corrections

    changed = Ranking.objects.filter(candidate_set__project=project, candidate_set__kind="ranking").exclude(annotator=None).first()
    first = changed.tiers
    corrections.ranking_change(ranking=changed, by=changed.annotator, tiers=first[::-1])
    corrections.ranking_change(ranking=changed, by=changed.annotator, tiers=first)  # second thoughts: as it was
    second_thoughts = Label.objects.create(message=Message.objects.filter(project=project).last(), annotator=reviewer,
                                           quality=1)
    corrections.label_withdraw(label=second_thoughts, by=owner)
    batch = ImportBatch.objects.filter(project=project).first()
    ImportJob.objects.create(project=project, format=batch.format, filename=batch.filename, sha256=batch.sha256,
                             status="succeeded", bytes_total=10, bytes_done=10, batch=batch, requested_by=owner)
    screen = ModelVersion.objects.create(project=project, kind=ModelKind.SCREEN, version=1, folder="p/screen-v1",
                                         metrics={"precision": 0.9, "recall": 0.8})
    ScreenClassifier.objects.create(project=project, model_version=screen, threshold=0.6, chosen_by=owner)
    return project


def canonical(records) -> str:
    return json.dumps(list(records), sort_keys=True, ensure_ascii=False)


def exported(project, tmp_path) -> Path:
    """The project's trees as manage.py export_trees writes them."""
    path = tmp_path / f"trees-{project.id}.jsonl"
    call_command("export_trees", str(project.id), str(path))
    return path


def test_a_tree_export_imported_into_a_fresh_project_exports_the_same_trees_and_judgements(
    project, owner, member, reviewer, make_user, tmp_path
):
    judged_project(project, owner=owner, member=member, reviewer=reviewer, make_user=make_user)
    first = list(tree_records(project))
    fresh = accounts.project_create(name="Copy", created_by=owner)
    call_command("import_data", str(exported(project, tmp_path)), "--project", str(fresh.id), "--format", "oasst-trees")
    second = list(tree_records(fresh))
    assert canonical(second) == canonical(first)

    # What a reader of the file sees: the prime tree with its three replies, each judgement on its message.
    prime = next(record for record in first if record["prompt"]["text"] == "Name a prime.")["prompt"]
    assert prime["platform"]["author"].startswith("a-") and prime["platform"]["guideline_version"] == 2
    assert [reply["text"] for reply in prime["replies"]] == ["7 is prime.", "2 is prime.", "9 is prime."]
    demonstration, two, nine = prime["replies"]
    assert demonstration["platform"]["review_state"] == "accepted"
    review = demonstration["platform"]["judgements"]["reviews"][0]
    assert review["reviewer"].startswith("a-") and review["reviewer"] != prime["platform"]["author"]
    assert (review["accepted"], review["comment"], review["guideline_version"], review["time_spent_ms"]) == (
        True, "right", 2, 1100)
    assert two["synthetic"] and two["model_name"] == "sft-v1" and two["platform"]["sampling"] == {"temperature": 0.7}
    assert nine["platform"]["excluded"] and nine["platform"]["judgements"]["labels"][0]["flags"] == ["off_task"]
    sets = {entry["kind"]: entry for entry in prime["platform"]["candidate_sets"]}
    # The comparison: which reply its task showed as A, and that A won (the member chose "A").
    vote = sets["compare"]["rankings"][0]
    compare = Ranking.objects.get(candidate_set__project=project, candidate_set__kind="compare")
    shown_a = Message.objects.get(id=compare_order(compare.task_id, compare.candidate_set.message_ids)[0])
    assert vote["shown_as_a"] == next(reply["message_id"] for reply in prime["replies"] if reply["text"] == shown_a.text)
    assert vote["tiers"][0] == [vote["shown_as_a"]] and vote["time_spent_ms"] == 2500
    ranking = sets["ranking"]["rankings"][0]
    assert [len(tier) for tier in ranking["tiers"]] == [1, 2] and ranking["time_spent_ms"] == 7000

    # The copy holds them as rows: the same people (by pseudonym), the imported tree's merged ranks as well.
    assert Label.objects.filter(message__project=fresh).count() == 2
    assert Review.objects.filter(message__project=fresh, accepted=True).count() == 1
    assert Ranking.objects.filter(candidate_set__project=fresh).count() == Ranking.objects.filter(
        candidate_set__project=project).count() == 3
    assert not Label.objects.filter(message__project=fresh, annotator__in=[member, reviewer]).exists()



def test_a_tree_export_with_a_judgement_it_cannot_hold_is_refused_whole_with_its_line(
    project, owner, member, reviewer, make_user, tmp_path
):
    judged_project(project, owner=owner, member=member, reviewer=reviewer, make_user=make_user)
    lines = exported(project, tmp_path).read_text().splitlines()
    number = next(n for n, line in enumerate(lines, 1) if '"quality":1,' in line)
    lines[number - 1] = lines[number - 1].replace('"quality":1,', '"quality":7,', 1)
    fresh = accounts.project_create(name="Copy", created_by=owner)
    with pytest.raises(ImportRefused) as refused:
        import_run(project=fresh, format="oasst-trees", stream=io.BytesIO("\n".join(lines).encode()), filename="bad.jsonl")
    assert refused.value.line == number and "label quality 7 is not 1 to 5" in refused.value.reason
    assert not Message.objects.filter(project=fresh).exists() and not Label.objects.filter(message__project=fresh).exists()
