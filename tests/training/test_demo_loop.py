"""The demo loop end to end on the tiny preset: scripted annotators over real HTTP, one round, the
hidden check of every version, deployment and generation of the next round's candidates."""

import json
import random

import pytest

from annotate import demo_data
from annotate.management.commands.demo import demo_project_create
from annotate.models import Message, MessageRole, Ranking, ReviewState, Task, TaskState
from training.demo_loop import round_run
from training.models import Deployment, ModelKind, ModelVersion

pytestmark = [pytest.mark.slow, pytest.mark.training, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def stores(tmp_path, settings):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"
    settings.MODEL_STORE = tmp_path / "models"
    settings.DATA_DIR = tmp_path
    return tmp_path


def test_the_hidden_check_accepts_only_the_right_answer_in_the_format():
    problem = demo_data.Problem("Alice has 12 coins and gives away 5. How many coins are left?", 7)
    assert demo_data.answer_of(problem.prompt) == 7
    assert demo_data.reply_check(problem.prompt, "The answer is 7.")
    assert not demo_data.reply_check(problem.prompt, "The answer is 8.")
    assert not demo_data.reply_check(problem.prompt, "It is 7.")
    assert [demo_data.reply_grade(problem.prompt, r) for r in ("The answer is 7.", "It is 7.", "The answer is 6.", "hm")] == [3, 2, 1, 0]
    assert demo_data.answer_of("What is 3 + 9?") == 12 and demo_data.answer_of("What is 13 - 9?") == 4
    for p in demo_data.prompt_pool(300):
        assert demo_data.answer_of(p.prompt) == p.answer
    # Held-out problems never enter the project.
    assert not {p.prompt for p in demo_data.heldout_problems()} & {p.prompt for p in demo_data.prompt_pool(2000)}
    rng = random.Random(0)
    assert all(demo_data.reply_check(p.prompt, demo_data.reply_write(p.prompt, rng, error_rate=0, sloppy_rate=0))
               for p in demo_data.prompt_pool(50))


# reset_sequences: the held-out split hashes each root message's id, so the same ids every run
# give the same split (with 12 seed prompts an unlucky range of ids could hold out none).
@pytest.mark.django_db(transaction=True, reset_sequences=True)
def test_scripted_annotators_and_one_tiny_round_run_end_to_end(stores):
    project = demo_project_create(seed_prompts=12, corpus_documents=300)
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.get(username="admin")
    lines = []
    result = round_run(project=project, admin=admin, number=1, preset="tiny", heldout=20, out=lines.append)

    # The annotators did every task through the API: K demonstrations per seed prompt, each reviewed,
    # and every set ranked by two people other than its authors.
    demos = Message.objects.filter(project=project, role=MessageRole.ASSISTANT, source="annotator")
    assert demos.count() == 12 * 4
    assert not demos.filter(review_state=ReviewState.PENDING).exists()
    rejected = demos.filter(review_state=ReviewState.REJECTED)
    assert 0 < rejected.count() < demos.count() // 2
    assert Ranking.objects.filter(candidate_set__project=project).count() == 12 * 2
    assert not Task.objects.filter(project=project, state=TaskState.LEASED).exists()
    for ranking in Ranking.objects.filter(candidate_set__project=project):
        authors = set(Message.objects.filter(pk__in=ranking.candidate_set.message_ids).values_list("author_id", flat=True))
        assert ranking.annotator_id not in authors

    # Every version of the round is measured by the hidden check with its interval, and stored.
    assert {figure["kind"] for figure in result["versions"].values()} == {"base", "sft", "policy"}
    for name, figure in result["versions"].items():
        for mode in ("greedy", "sampled"):
            f = figure[mode]
            assert f["n"] == 20 and 0 <= f["low"] <= f["score"] <= f["high"] <= 1
        version = ModelVersion.objects.get(project=project, kind=figure["kind"])
        assert version.metrics["hidden_check_n"] == 20 and "hidden_check_greedy_ci95" in version.metrics
    assert 0 <= result["reward"]["accuracy"] <= 1
    assert result["agreement"]["sets_with_overlap"] == 12 and -1 <= result["agreement"]["krippendorff_alpha"] <= 1
    stored = json.loads((stores / "demo-rounds" / f"project-{project.id}.json").read_text())
    assert [r["round"] for r in stored] == [1]
    assert any("hidden check on 20 held-out prompts" in line for line in lines)

    # The policy is deployed; with every seed prompt ranked, round 2's annotators write prompts and the
    # generation job fills each with the model's replies next to its demonstration.
    policy = ModelVersion.objects.get(project=project, kind=ModelKind.POLICY)
    assert Deployment.objects.get(project=project, is_active=True).model_version == policy
