"""Serving models back: deploy a tiny model, generate candidates into the ranking queue with their
provenance, stream a chat reply, run an arena, and rank versions by Bradley-Terry."""

import json
import math
import random
import time

import pytest
from django.conf import settings

from annotate.models import CandidateSet, CandidateSetKind, Message, Ranking, TaskKind, WorkItem
from annotate.services import queue, tree
from tests.helpers import run_queued_jobs
from training.models import GeneratedReply, GenerationJob, ModelKind, ModelVersion
from training.services import serving
from training.trainers.scratch import gpt_from_config, tokenizer_train

pytestmark = [pytest.mark.slow, pytest.mark.training, pytest.mark.django_db(transaction=True)]

TEXTS = [f"What is {a} plus {b}? It is {a + b}, since {a} and {b} make {a + b}." for a in range(10) for b in range(10)]


@pytest.fixture(autouse=True)
def stores(tmp_path, settings):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"
    settings.MODEL_STORE = tmp_path / "models"


# Words that each become one token with their leading space, so an untrained model's babble has
# spaces, and the streamer (which hands on text a word at a time) has many chunks to give.
SYLLABLES = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "de", "gu"]
WORDS = [a + b for a in SYLLABLES for b in SYLLABLES]
BABBLE = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(50)]


def tiny_version(project, number: int, *, kind=ModelKind.POLICY, width: int = 32, layers: int = 1,
                 texts=TEXTS, vocab_size: int = 300) -> ModelVersion:
    """A randomly initialised GPT with our tokenizer, registered as a model version."""
    import torch

    torch.manual_seed(number)
    tokenizer = tokenizer_train(texts, vocab_size=vocab_size)
    model = gpt_from_config(tokenizer, layers=layers, heads=2, width=width, context=256)
    folder = f"project-{project.id}/test/{kind}-{number}"
    model.save_pretrained(settings.MODEL_STORE / folder)
    tokenizer.save_pretrained(settings.MODEL_STORE / folder)
    return ModelVersion.objects.create(project=project, kind=kind, version=number, folder=folder)


def prompts(project, count):
    return [
        tree.message_create(project=project, parent=None, role="user", text=f"What is {i} plus {i}?", source="import")
        for i in range(count)
    ]


def test_a_deployed_model_writes_k_replies_that_annotators_then_rank(project, owner, member, outsider, api_as):
    project.settings.replies_per_ranking = 4
    project.settings.save()
    version = tiny_version(project, 1)
    asked = prompts(project, 3)
    url = f"/api/projects/{project.id}/deployments/create/"
    body = {"model_version_id": version.id, "sampling": {"temperature": 0.9, "max_new_tokens": 12, "seed": 3}}
    assert api_as(outsider).post(url, body, format="json").status_code == 404
    assert api_as(member).post(url, body, format="json").status_code == 403
    assert api_as(owner).post(url, {**body, "sampling": {"temperature": -1}}, format="json").status_code == 400
    assert api_as(owner).post(url, body, format="json").status_code == 201
    assert api_as(owner).post(url, body, format="json").status_code == 409  # already deployed

    queued = api_as(owner).post(f"/api/projects/{project.id}/generation/create/", {"max_prompts": 10}, format="json")
    assert queued.status_code == 202
    run_queued_jobs()
    job = GenerationJob.objects.get()
    assert job.status == "succeeded", job.error
    for prompt in asked:
        replies = Message.objects.filter(parent=prompt, role="assistant")
        assert replies.count() == 4
        for reply in replies:
            assert reply.source == "model" and reply.origin["model_version"] == "policy-v1"
            assert reply.origin["sampling"] == {"temperature": 0.9, "top_p": 0.95, "max_new_tokens": 12, "seed": 3}
            assert reply.generated.model_version == version
        candidate_set = CandidateSet.objects.get(parent=prompt, kind=CandidateSetKind.RANKING)
        assert sorted(candidate_set.message_ids) == sorted(replies.values_list("id", flat=True))
    # The new items are in the annotator's queue.
    task = queue.task_next(project=project, annotator=member, role="annotator", kind=TaskKind.RANKING)
    assert task is not None and task.item.candidate_set.parent in asked
    # A second job finds nothing left to do: every prompt has its K replies.
    api_as(owner).post(f"/api/projects/{project.id}/generation/create/", {}, format="json")
    run_queued_jobs()
    assert GenerationJob.objects.order_by("-id").first().replies_written == 0
    assert GeneratedReply.objects.count() == 12


def test_two_deployed_versions_share_the_k_slots_and_rollback_restores_the_earlier(project, owner):
    project.settings.replies_per_ranking = 4
    project.settings.save()
    first, second = tiny_version(project, 1), tiny_version(project, 2)
    serving.deployment_create(project=project, model_version=first, by=owner, sampling={"max_new_tokens": 8})
    serving.deployment_create(project=project, model_version=second, by=owner, sampling={"max_new_tokens": 8})
    asked = prompts(project, 2)
    job = serving.generation_enqueue(project=project, by=owner, max_prompts=5)
    run_queued_jobs()
    job.refresh_from_db()
    assert job.status == "succeeded" and job.replies_written == 8
    for prompt in asked:
        versions = sorted(Message.objects.filter(parent=prompt).values_list("origin__model_version", flat=True))
        assert versions == ["policy-v1", "policy-v1", "policy-v2", "policy-v2"]

    restored = serving.deployment_rollback(project=project, by=owner)
    assert restored.model_version == first
    assert list(project.deployments.filter(is_active=True).values_list("model_version", flat=True)) == [first.id]


def test_a_failed_generation_says_why_and_can_be_retried(project, owner):
    version = tiny_version(project, 1)
    prompts(project, 1)
    broken = serving.deployment_create(project=project, model_version=version, by=owner, backend="openai",
                                       url="http://127.0.0.1:9/v1")
    job = serving.generation_enqueue(project=project, by=owner)
    run_queued_jobs()
    job.refresh_from_db()
    assert job.status == "failed" and "127.0.0.1:9" in job.error
    assert not Message.objects.filter(role="assistant").exists()
    serving.deployment_end(deployment=broken)
    serving.deployment_create(project=project, model_version=version, by=owner, sampling={"max_new_tokens": 6})
    retried = serving.generation_retry(job=job, by=owner)
    run_queued_jobs()
    retried.refresh_from_db()
    assert retried.status == "succeeded" and retried.retry_of == job and retried.replies_written > 0


def test_a_chat_reply_streams_and_the_chat_becomes_a_prompt(project, owner, member, outsider, api_as):
    # Big enough that generating the reply takes far longer than starting it, even on a loaded machine.
    version = tiny_version(project, 1, width=128, layers=4, texts=BABBLE, vocab_size=600)
    serving.deployment_create(project=project, model_version=version, by=owner,
                              sampling={"max_new_tokens": 160, "temperature": 1.0})
    serving.backend_of(version).load()  # the web process keeps the model loaded after the first chat
    url = f"/api/projects/{project.id}/chat/reply/"
    turns = [{"role": "user", "content": "What is 2 plus 2?"}]
    assert api_as(outsider).post(url, {"turns": turns}, format="json").status_code == 404
    assert api_as(member).post(url, {"turns": [{"role": "assistant", "content": "hi"}]}, format="json").status_code == 400
    started = time.monotonic()
    response = api_as(member).post(url, {"turns": turns}, format="json")
    assert response.status_code == 200 and response["X-Model-Version"] == "policy-v1"
    assert response["Content-Type"].startswith("text/event-stream")
    arrivals, events = [], []
    for event in response.streaming_content:
        arrivals.append(time.monotonic() - started)
        events.append(event.decode())
    assert events[-1].startswith("event: done\ndata: ")
    done = json.loads(events[-1].split("data: ", 1)[1])
    assert done["model_version"] == "policy-v1" and done["signature"]
    chunks = [json.loads(event.removeprefix("data: "))["text"] for event in events[:-1]]
    assert len(chunks) >= 3, chunks
    assert arrivals[0] < arrivals[-1] / 2, arrivals  # the first words came long before the reply ended
    reply = "".join(chunks)

    to_prompt = f"/api/projects/{project.id}/chat/prompt/"

    def chat(reply_text, signature):
        return [*turns, {"role": "assistant", "content": reply_text, "signature": signature},
                {"role": "user", "content": "Are you sure?"}]

    # Only the reply the server wrote, as it wrote it, for whoever it wrote it for, goes under the model's name.
    for text, signature, who in ((reply + " And I am never wrong.", done["signature"], member),
                                 (reply, "", member), (reply, done["signature"], owner)):
        refused = api_as(who).post(to_prompt, {"turns": chat(text, signature)}, format="json")
        assert refused.status_code == 400
        assert "turn 2 is not a reply this server generated for you" in refused.json()["turns"][0]
    assert not Message.objects.filter(text="Are you sure?").exists()
    made = api_as(member).post(to_prompt, {"turns": chat(reply, done["signature"])}, format="json")
    assert made.status_code == 201
    last = Message.objects.get(pk=made.json()["message_id"])
    path = serving.conversation_of(last)
    assert [m["content"] for m in path] == ["What is 2 plus 2?", reply.strip(), "Are you sure?"]
    assert last.parent.generated.model_version == version and last.author == member
    assert WorkItem.objects.filter(message=last, kind=TaskKind.DEMONSTRATION).exists()


def test_arena_votes_rank_versions_in_their_true_order(project, owner, member):
    """Three versions whose true strengths are known; simulated blind votes recover the order."""
    versions = [tiny_version(project, n) for n in (1, 2, 3)]
    job = serving.generation_enqueue(project=project, by=owner, kind="arena", versions=versions[:2], max_prompts=3)
    prompts(project, 3)
    run_queued_jobs()
    job.refresh_from_db()
    assert job.status == "succeeded" and job.replies_written == 6
    assert CandidateSet.objects.filter(kind=CandidateSetKind.COMPARE).count() == 3
    task = queue.task_next(project=project, annotator=member, role="annotator", kind=TaskKind.COMPARE)
    assert task is not None

    # Votes between all three, drawn from Bradley-Terry with strengths 2 > 1 > 0 (in logits).
    strength = {"policy-v3": 2.0, "policy-v2": 1.0, "policy-v1": 0.0}
    rng = random.Random(5)
    by_name = {v.name: v for v in versions}
    parent = prompts(project, 1)[0]
    reply_of = {}
    for name, version in by_name.items():
        message = tree.message_create(project=project, parent=parent, role="assistant", text=f"reply of {name}",
                                      source="model", create_work=False, origin={"model_version": name})
        GeneratedReply.objects.create(message=message, model_version=version)
        reply_of[name] = message.id
    pairs = [("policy-v1", "policy-v2"), ("policy-v2", "policy-v3"), ("policy-v1", "policy-v3")]
    votes = []
    for a, b in pairs:
        candidate_set = tree.candidate_set_create(project=project, message_ids=[reply_of[a], reply_of[b]], kind="compare")
        for vote in range(60):
            p_a = 1 / (1 + math.exp(strength[b] - strength[a]))
            first, second = (a, b) if rng.random() < p_a else (b, a)
            votes.append(Ranking(candidate_set=candidate_set, external_annotator=f"voter-{vote}",
                                 tiers=[[reply_of[first]], [reply_of[second]]]))
    Ranking.objects.bulk_create(votes)
    from training import selectors

    board = selectors.version_leaderboard(project=project, samples=100)
    assert [row["version"] for row in board] == ["policy-v3", "policy-v2", "policy-v1"]
    assert board[0]["low"] > board[2]["high"]
    assert all(row["low"] <= row["strength"] <= row["high"] for row in board)

    # Asked again, the same votes give the same board (the bootstrap is seeded); a new vote gives a
    # new board.
    assert selectors.version_leaderboard(project=project, samples=100) == board
    candidate_set = CandidateSet.objects.filter(project=project).first()
    Ranking.objects.create(candidate_set=candidate_set, external_annotator="late voter",
                           tiers=[[reply_of["policy-v1"]], [reply_of["policy-v2"]]])
    assert selectors.version_leaderboard(project=project, samples=100) != board


def test_the_deploy_command_deploys_rolls_back_and_queues_generation(project, owner):
    from django.core.management import CommandError, call_command

    first, second = tiny_version(project, 1), tiny_version(project, 2)
    call_command("deploy", "--project", str(project.id), "--model", "policy-v1", "--temperature", "0.5")
    call_command("deploy", "--project", str(project.id), "--model", "policy-v2")
    active = list(project.deployments.filter(is_active=True))
    assert [d.model_version for d in active] == [second]  # replaces what was deployed
    assert project.deployments.get(model_version=first).sampling["temperature"] == 0.5
    call_command("deploy", "--project", str(project.id), "--rollback", "--generate", "5")
    assert [d.model_version for d in project.deployments.filter(is_active=True)] == [first]
    assert GenerationJob.objects.get().max_prompts == 5
    call_command("deploy", "--project", str(project.id), "--model", "policy-v1", "--undeploy")
    assert not project.deployments.filter(is_active=True).exists()
    with pytest.raises(CommandError, match="no model version 'policy-v9'"):
        call_command("deploy", "--project", str(project.id), "--model", "policy-v9")
    with pytest.raises(CommandError, match="temperature"):
        call_command("deploy", "--project", str(project.id), "--model", "policy-v2", "--temperature", "-1")


def test_a_chat_deeper_than_the_project_allows_is_refused_with_the_reason(project, owner, member, api_as):
    version = ModelVersion.objects.create(project=project, kind=ModelKind.POLICY, version=1, folder="x")
    project.settings.max_depth = 1
    project.settings.save()
    turns = [{"role": "user", "content": "Hello"}]
    signature = serving.chat_reply_sign(project=project, user=member, version=version, turns=turns, reply="Hi.")
    chat = [*turns, {"role": "assistant", "content": "Hi.", "signature": signature},
            {"role": "user", "content": "And then?"}]

    refused = api_as(member).post(f"/api/projects/{project.id}/chat/prompt/", {"turns": chat}, format="json")

    assert refused.status_code == 400 and refused.json() == {"parent": ["the chat is already 1 user turns deep"]}
    assert not Message.objects.filter(project=project).exists()  # nothing half-written
