"""Rubric ratings (issue 19): a project defines labelled 1-5 scales; label tasks ask for them beside quality and
flags; the API, the page and the lossless tree export carry the scores."""

import json

import pytest

from annotate.models import Label, Message, MessageSource
from annotate.services import queue, tree
from tests.annotate.test_pages import client_for
from tests.annotate.test_queue import only

pytestmark = pytest.mark.django_db
RUBRICS = [{"key": "helpful", "label": "Helpful"}, {"key": "honest", "label": "Honest", "help": "no made-up facts"}]


def test_rubrics_are_defined_scored_on_label_tasks_and_exported(api_as, owner, member, project, settings, tmp_path):
    url = f"/api/projects/{project.id}/settings/"
    bad = api_as(owner).patch(url, {"rubrics": [{"key": "Helpful!"}]}, format="json")
    assert bad.status_code == 400 and "a `key` of lowercase letters" in str(bad.json())
    twice = api_as(owner).patch(url, {"rubrics": [{"key": "kind"}, {"key": "kind"}]}, format="json")
    assert "the key 'kind' is used twice" in str(twice.json())
    assert api_as(owner).patch(url, {"rubrics": RUBRICS}, format="json").json()["rubrics"] == [
        {"key": "helpful", "label": "Helpful", "help": ""}, {"key": "honest", "label": "Honest", "help": "no made-up facts"}]
    assert api_as(member).get(url).json()["rubrics"][1]["label"] == "Honest"  # members read them

    only(project, label=1)
    prompt = tree.message_create(project=project, parent=None, role="user", text="Capital of France?", source=MessageSource.IMPORT)
    reply = tree.message_create(project=project, parent=prompt, role="assistant", text="Paris.", source=MessageSource.IMPORT)
    task = queue.task_next(project=project, annotator=member, role="annotator", kind="label")
    page = client_for(member).get(f"/tasks/{task.id}/").content.decode()
    assert 'name="rubric_helpful"' in page and "no made-up facts" in page
    # A score out of range, or for a rubric the project does not have, is refused naming it.
    answer = api_as(member).post(f"/api/tasks/{task.id}/submit/", {"submit_key": "k", "rubrics": {"helpful": 7}}, format="json")
    assert answer.status_code == 400 and "helpful: a score is a whole number from 1 to 5, not '7'" in str(answer.json())
    answer = api_as(member).post(f"/api/tasks/{task.id}/submit/", {"submit_key": "k", "rubrics": {"kind": 3}}, format="json")
    assert "not rubrics of this project: ['kind']" in str(answer.json())
    # From the page: quality and the two scales.
    done = client_for(member).post(f"/tasks/{task.id}/submit/", {"submit_key": "p", "quality": "4", "rubric_helpful": "5",
                                                                  "rubric_honest": "3"})
    assert done.status_code == 302
    label = Label.objects.get(message=reply if Label.objects.filter(message=reply).exists() else prompt)
    assert (label.quality, label.rubric_scores) == (4, {"helpful": 5, "honest": 3})

    settings.SNAPSHOT_STORE = tmp_path / "snapshots"
    from django.core.management import call_command
    out = tmp_path / "trees.jsonl"
    call_command("export_trees", str(project.id), str(out))
    found = [label["rubric_scores"] for label in _labels_in(json.loads(out.read_text()))]
    assert found == [{"helpful": 5, "honest": 3}]
    assert Message.objects.filter(project=project).count() == 2


def _labels_in(value):
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "labels" and isinstance(inner, list):
                yield from inner
            else:
                yield from _labels_in(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _labels_in(inner)
