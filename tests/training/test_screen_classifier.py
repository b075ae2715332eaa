"""The screen classifier (issue 21): the flags snapshot it learns from, the minimum of flags before a round may
train it, a real round of the screen recipe in a worker registering a version with its held-out precision and
recall, an admin choosing it through the screen's API, and the screen then finding with it where text enters."""

import json

import pytest
from django.conf import settings

from annotate.models import Label, Message, Project, ScreenFinding
from annotate.services import submits, tree
from tests.helpers import stop
from tests.training.test_grpo_orpo import registered_base
from tests.training.test_runs_train import wait_for, worker
from training import services
from training.models import ModelKind, ModelVersion, RunStatus, TrainingRun
from training.services import runs, screening

RUDE = ["you idiot", "shut up, fool", "what a stupid question", "nobody cares, loser", "go away, moron"]
KIND = ["happy to help", "here is the answer", "good question", "thanks for asking", "let me explain"]


@pytest.fixture
def stores(tmp_path, settings):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"
    settings.MODEL_STORE = tmp_path / "models"
    return tmp_path


def reply(project, text: str) -> Message:
    prompt = tree.message_create(project=project, parent=None, role="user", text=f"Say something like: {text}",
                                 source="annotator")
    return tree.message_create(project=project, parent=prompt, role="assistant", text=text, source="model",
                               origin={"model_version": "sft-v1"})


def flags_rows(project) -> list[dict]:
    snapshot = services.snapshot_create(project=project, kind="flags", parquet=False)
    folder = settings.SNAPSHOT_STORE / snapshot.folder
    assert "**Not for publishing.**" in (folder / "README.md").read_text()  # the card says what it carries
    return [json.loads(line) for split in ("train", "test") for line in
            (folder / f"flags-{split}.jsonl").read_text().splitlines()]


@pytest.mark.django_db
def test_the_flags_snapshot_labels_what_annotators_flagged_and_what_they_judged_clean(
    project, member, owner, stores, client
):
    # On, redacting the address below in exports (a model's address is blocked by default).
    screening.screen_update(project=project, by=owner, enabled=True, actions={"model": {"email": "redact"}})
    toxic, clean, personal, cleared, unlabelled = (
        reply(project, text) for text in ("you idiot", "happy to help, write to jo@example.com", "call 555",
                                          "shut up", "good question"))
    submits.label_submit(message=toxic, annotator=member, flags=["toxic"])  # excluded by the flag
    submits.label_submit(message=clean, annotator=member, quality=4)
    submits.label_submit(message=personal, annotator=member, flags=["personal_data"])
    submits.label_submit(message=cleared, annotator=member, flags=["spam"])
    tree.message_clear(message=Message.objects.get(pk=cleared.pk))  # an admin overruled the flag
    toxic.refresh_from_db()
    assert toxic.excluded

    rows = {row["provenance"]["message"]["message_id"]: row for row in flags_rows(project)}
    # The flagged message is there though excluded from every other export; the one flagged for personal data
    # alone and the unlabelled one are not.
    assert set(rows) == {toxic.id, clean.id, cleared.id}
    assert (rows[toxic.id]["label"], rows[toxic.id]["flags"]) == (True, "toxic")
    assert rows[clean.id]["label"] is False and rows[clean.id]["text"] == "happy to help, write to {{EMAIL_1}}"
    assert rows[cleared.id]["label"] is False and rows[cleared.id]["flags"] == ""
    assert screening.classifier_status(project=project)["flags"] == 1
    assert unlabelled.id not in rows and personal.id not in rows
    client.force_login(owner)
    page = client.get(f"/projects/{project.id}/screen/").content.decode()
    assert "1 flagged so far, <b>199 more</b> needed" in page


@pytest.mark.slow
@pytest.mark.training
@pytest.mark.django_db(transaction=True)
def test_a_screen_round_trains_a_classifier_an_admin_chooses_and_the_screen_then_finds_with_it(
    project, member, owner, stores, api_as, client
):
    texts = [f"{phrase} #{i}" for i in range(8) for phrase in RUDE + KIND]
    for text in texts:
        message = reply(project, text)
        Label.objects.create(message=message, annotator=member, flags=["toxic"] if text.split(" #")[0] in RUDE else [],
                             quality=None if text.split(" #")[0] in RUDE else 4)
    base = registered_base(project)
    api = api_as(owner)
    url = f"/api/projects/{project.id}/screen/"
    assert api.patch(url, {"classifier_min_flags": 50}, format="json").status_code == 200

    # Too few flags: refused before anything is queued, saying how many more it needs.
    answer = api.post(f"/api/projects/{project.id}/runs/create/", {"preset": "tiny", "recipe": "screen"}, format="json")
    assert answer.status_code == 400 and "the project has 40, 10 to go" in json.dumps(answer.json()), answer.content
    assert api.get(url).json()["classifier"] == {"chosen": None, "flags": 40, "min_flags": 50, "flags_needed": 10}
    assert not TrainingRun.objects.exists()

    assert api.patch(url, {"classifier_min_flags": 40}, format="json").status_code == 200
    run = runs.run_create(project=project, by=owner, preset="tiny", recipe="screen")
    assert list(run.stages.values_list("name", flat=True)) == ["screen"]
    process = worker(stores)
    try:
        wait_for(lambda: TrainingRun.objects.get(pk=run.pk).is_finished(), timeout=200, what="the screen round")
    finally:
        stop(process)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    [version] = ModelVersion.objects.filter(project=project, run=run)
    assert version.kind == ModelKind.SCREEN and version.parent == base and version.snapshot.kind == "flags"
    assert version.metrics["eval_rows"] > 0
    for name in ("eval_precision", "eval_recall", "eval_f1", "eval_average_precision"):
        assert 0 <= version.metrics[name] <= 1, name

    # Only a screen classifier of this project is chosen; a refused choice changes nothing else.
    refused = api.patch(url, {"classifier": {"model_version": base.id}, "words": ["x"]}, format="json")
    assert refused.status_code == 400 and "not a screen classifier" in json.dumps(refused.json()), refused.content
    assert api.get(url).json()["words"] == []
    client.force_login(owner)
    page = client.get(f"/projects/{project.id}/screen/").content.decode()
    assert "screen v1" in page and "enough to train" in page
    client.post(f"/projects/{project.id}/screen/classifier/", {"model_version": version.id, "threshold": "0.7"})
    assert api.get(url).json()["classifier"]["chosen"]["threshold"] == 0.7
    # A threshold this low finds every text: what the screen does with a finding is what is checked here (how well
    # a classifier finds harm is bench/screen_classifier_bench.py's).
    chosen = api.patch(url, {"enabled": True, "classifier": {"model_version": version.id, "threshold": 1e-6}},
                       format="json")
    assert chosen.status_code == 200, chosen.content
    assert chosen.json()["classifier"]["chosen"]["model_version"] == version.id

    project = Project.objects.get(pk=project.pk)  # as a request loads it: the screen as the API left it
    held = tree.message_create(project=project, parent=None, role="user", text="you idiot again", source="annotator")
    held.refresh_from_db()
    [finding] = ScreenFinding.objects.filter(message=held)
    assert (finding.kind, finding.detector, finding.detector_version) == ("classifier", "classifier", "screen-v1")
    assert finding.action == "hold" and held.excluded and 0 < finding.score <= 1

    assert api.patch(url, {"classifier": None}, format="json").json()["classifier"]["chosen"] is None
    project = Project.objects.get(pk=project.pk)
    later = tree.message_create(project=project, parent=None, role="user", text="you idiot once more", source="annotator")
    assert not ScreenFinding.objects.filter(message=later).exists()
