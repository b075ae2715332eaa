"""Edit this reply (issue 19): an annotator mends a model's reply; the edit is a demonstration beside it and a
pair, the edit over the original, in the exports. Off until an admin gives the kind a weight."""

import pytest

from annotate.models import Message, MessageSource, Ranking, Task, WorkItem
from annotate.services import accounts as account_services
from annotate.services import tree
from tests.annotate.test_queue import next_task, only, submit

pytestmark = pytest.mark.django_db


def model_replies(project, count=2):
    prompts = [tree.message_create(project=project, parent=None, role="user", text=f"What is {n} + {n}?",
                                   source=MessageSource.IMPORT) for n in range(count)]
    return [tree.message_create(project=project, parent=prompt, role="assistant", text=f"It is {n}{n}.",
                                source=MessageSource.MODEL, origin={"model_version": "sft-v1"})
            for n, prompt in enumerate(prompts)]


def test_edits_are_off_until_weighted_then_every_model_reply_waits_for_one(project, owner):
    first = model_replies(project, 1)
    assert not WorkItem.objects.filter(kind="edit").exists()  # a project that never asked for edits gets none
    only(project, edit=1)
    assert list(WorkItem.objects.filter(kind="edit").values_list("message_id", flat=True)) == [first[0].id]
    later = model_replies(project, 1)  # written after: its item comes with it
    assert WorkItem.objects.filter(kind="edit", message=later[0]).count() == 1
    account_services.project_settings_update(project=project, overlap=2)  # saving again makes no second item
    assert WorkItem.objects.filter(kind="edit").count() == 2
    annotated = tree.message_create(project=project, parent=later[0].parent, role="assistant", text="Two.",
                                    source=MessageSource.ANNOTATOR, author=owner)
    assert not WorkItem.objects.filter(kind="edit", message=annotated).exists()  # people's replies are reviewed


def test_an_edit_is_a_demonstration_and_a_pair_over_the_original_in_the_exports(api_as, member, project, settings, tmp_path):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"
    only(project, edit=1)
    (reply, _) = model_replies(project, 2)
    api = api_as(member)
    task = next_task(api, project, "edit")
    assert task["kind"] == "edit" and task["conversation"][-1]["text"] in ("It is 00.", "It is 11.")
    original = Message.objects.get(pk=task["conversation"][-1]["id"])
    unchanged = submit(api, task, text=f"  {original.text} ")
    assert unchanged.status_code == 400 and "the reply is unchanged" in str(unchanged.json())
    done = submit(api, task, key="k2", text=original.text.replace("It is", "The sum is") + " (Each digit doubled.)")
    assert done.status_code == 200, done.content
    edited = Message.objects.get(pk=done.json()["result"]["message_id"])
    assert (edited.parent_id, edited.role, edited.author, edited.source) == (original.parent_id, "assistant", member, "annotator")
    assert edited.review_state == "pending" and edited.origin == {"edited_from": original.id}
    ranking = Ranking.objects.get(pk=done.json()["result"]["ranking_id"])
    assert ranking.tiers == [[edited.id], [original.id]] and ranking.annotator == member
    assert Task.objects.get(pk=task["id"]).state == "submitted"
    assert WorkItem.objects.filter(kind="review", message=edited).exists()  # reviewed like any demonstration

    from training import services

    pairs = services.snapshot_create(project=project, kind="preference", parquet=False)
    rows = [__import__("json").loads(line) for split in ("train", "test")
            for line in (settings.SNAPSHOT_STORE / pairs.folder / f"preference-{split}.jsonl").read_text().splitlines()]
    assert [(row["chosen"][0]["content"], row["rejected"][0]["content"]) for row in rows] == [(edited.text, original.text)]
    Message.objects.filter(pk=edited.pk).update(review_state="accepted")
    sft = services.snapshot_create(project=project, kind="sft", parquet=False)
    texts = [line for split in ("train", "test")
             for line in (settings.SNAPSHOT_STORE / sft.folder / f"sft-{split}.jsonl").read_text().splitlines()]
    assert len(texts) == 1 and edited.text in texts[0]


def test_an_edits_pair_is_not_withdrawn_apart_from_the_edit(api_as, member, project):
    only(project, edit=1)
    model_replies(project, 1)
    api = api_as(member)
    task = next_task(api, project, "edit")
    done = submit(api, task, text="Twice nothing is nothing.").json()["result"]
    refused = api.post(f"/api/rankings/{done['ranking_id']}/withdraw/")
    assert refused.status_code == 403 and "the pair an edit made" in refused.json()["detail"]
    assert Ranking.objects.filter(pk=done["ranking_id"]).exists()
