"""The demo loop end to end on the tiny preset: scripted annotators over real HTTP, one round, the
hidden check of every version, deployment and generation of the next round's candidates."""

import json
import random
import re

import pytest

from annotate.models import CandidateSet, Message, MessageRole, Ranking, ReviewState, Task, TaskState
from training.demo import annotators as demo_annotators
from training.demo import data as demo_data
from training.demo.project import demo_project_create
from training.demo.rounds import round_run
from training.models import Deployment, ModelKind, ModelVersion

pytestmark = [pytest.mark.slow, pytest.mark.training, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def stores(tmp_path, settings):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"
    settings.MODEL_STORE = tmp_path / "models"
    settings.DATA_DIR = tmp_path
    return tmp_path


def test_the_hidden_check_accepts_only_the_right_answer_in_the_asked_form():
    problem = demo_data.Problem("Alice has 12 coins and gives away 5. How many coins are left?", 7)
    assert demo_data.answer_of(problem.prompt) == 7
    assert demo_data.reply_check(problem.prompt, "The answer is 7.")
    assert not demo_data.reply_check(problem.prompt, "The answer is 8.")
    assert not demo_data.reply_check(problem.prompt, "It is 7.")
    assert [demo_data.reply_grade(problem.prompt, r) for r in ("The answer is 7.", "I think it is 7.", "The answer is 6.", "hm")] == [4, 2, 1, 0]
    # A prompt that asks for a form is answered right only in that form.
    asks = {"What is 3 + 4? Answer briefly.": ("It is 7.", "The answer is 7.", "It is 8."),
            "What is 3 + 4? End your answer with an exclamation mark.": ("The answer is 7!", "The answer is 7.", "The answer is 8!"),
            "What is 3 + 4? Begin your answer with Sure.": ("Sure, the answer is 7.", "The answer is 7.", "Sure, the answer is 5.")}
    for prompt, (right, guidelines_form, wrong) in asks.items():
        assert demo_data.answer_of(prompt) == 7
        grades = [demo_data.reply_grade(prompt, r) for r in (right, guidelines_form, "7, I believe.", wrong, "hm")]
        assert grades == [4, 3, 2, 1, 0]
        assert demo_data.reply_check(prompt, right) and not demo_data.reply_check(prompt, guidelines_form)
    assert demo_data.answer_of("What is 3 + 9?") == 12 and demo_data.answer_of("What is 13 - 9?") == 4
    pool = demo_data.prompt_pool(600)
    for p in pool:
        assert demo_data.answer_of(p.prompt) == p.answer
    assert {demo_data.instruction_of(p.prompt) for p in pool} == set(demo_data.FORMS)
    # Held-out problems never enter the project.
    assert not {p.prompt for p in demo_data.heldout_problems()} & {p.prompt for p in demo_data.prompt_pool(2000)}
    rng = random.Random(0)
    assert all(demo_data.reply_check(p.prompt, demo_data.reply_write(p.prompt, rng, error_rate=0, sloppy_rate=0))
               for p in demo_data.prompt_pool(50))
    # A writer who follows the asked form half the time writes the guidelines' form otherwise.
    asked = [p for p in pool if demo_data.instruction_of(p.prompt)]
    written = [demo_data.reply_write(p.prompt, rng, error_rate=0, sloppy_rate=0, follow_rate=0.5) for p in asked]
    followed = sum(demo_data.reply_check(p.prompt, w) for p, w in zip(asked, written))
    assert 0.4 < followed / len(asked) < 0.6
    assert all(demo_data.reply_grade(p.prompt, w) >= 2 for p, w in zip(asked, written))
    # The pretraining corpus states the sums, never in a reply form the hidden check wants.
    documents = demo_data.corpus(500)
    assert not any(form in d for d in documents for form in ("The answer is", "It is", "Sure,", "!"))
    questions = [d.split("? ") for d in documents if "? " in d]
    assert len(questions) > 250 and all(demo_data.answer_of(q + "?") == int(re.search(r"\d+", a).group()) for q, a in questions)
    # The earlier assistant is right in the asked form about a fifth of the time.
    right = sum(demo_data.reply_check(p.prompt, demo_data.earlier_reply(p.prompt, rng)) for p in pool)
    assert 0.12 < right / len(pool) < 0.3


def test_a_scripted_annotator_ties_replies_that_say_the_same_and_skips_a_set_of_one_text():
    problem = "What is 7 + 5?"
    annotator = demo_annotators.Annotator(demo_annotators.ANNOTATORS[3], "http://unused", 1, random.Random(0))
    for _ in range(50):
        tiers = annotator.rank(problem, [{"id": 1, "text": "The answer is 12."}, {"id": 2, "text": "The answer is 12."},
                                         {"id": 3, "text": "The answer is 11."}, {"id": 4, "text": "The answer is 12. "}])
        tier_of = {candidate: index for index, tier in enumerate(tiers) for candidate in tier}
        assert tier_of[1] == tier_of[2] == tier_of[4] != tier_of[3]
    same = [{"id": i, "text": "The answer is 12."} for i in range(4)]
    assert annotator.rank(problem, same) is None


# reset_sequences: the held-out split hashes each root message's id, so the same ids every run
# give the same split (with 12 seed prompts an unlucky range of ids could hold out none).
@pytest.mark.django_db(transaction=True, reset_sequences=True)
def test_scripted_annotators_and_one_tiny_round_run_end_to_end(stores):
    project = demo_project_create(seed_prompts=12, corpus_documents=300)
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.get(username="admin")
    lines = []
    # The base model as the demo preset trains it: one padded row per pretraining document. Each stage
    # trains a few steps only: this test is about the loop around them, and how the tiny preset's
    # stages learn is tests/training/test_trainers.py's (and the round's, test_runs_train.py's).
    few_steps = {"base": {"packing": False, "max_steps": 4}, "sft": {"max_steps": 4}, "reward": {"max_steps": 4},
                 "ppo": {"total_episodes": 8}}
    result = round_run(project=project, admin=admin, number=1, preset="tiny", heldout=20, prompts_per_round=6,
                       config=few_steps, out=lines.append)
    seeds = list(Message.objects.filter(project=project, role=MessageRole.USER).order_by("id")[:12])

    # Each seed prompt came with two replies of an earlier assistant; the annotators did every task
    # through the API: two demonstrations per seed prompt, each reviewed, and every set ranked by
    # two people other than its authors, unless all its replies say the same (then all skip it).
    demos = Message.objects.filter(project=project, role=MessageRole.ASSISTANT, source="annotator", parent__in=seeds)
    assert demos.count() == 12 * 2
    assert Message.objects.filter(project=project, source="import", role=MessageRole.ASSISTANT).count() == 12 * 2
    assert not demos.filter(review_state=ReviewState.PENDING).exists()
    # The reviewer accepts a right number whatever its wording, with a little noise.
    verdicts = [(d.review_state == ReviewState.ACCEPTED, demo_data.reply_grade(d.parent.text, d.text) >= 2) for d in demos]
    assert sum(accepted != right for accepted, right in verdicts) <= 3
    assert not Task.objects.filter(project=project, state=TaskState.LEASED).exists()
    ranked = 0
    for candidate_set in CandidateSet.objects.filter(project=project, parent__in=seeds):
        rankings = list(Ranking.objects.filter(candidate_set=candidate_set))
        texts = {m.text for m in Message.objects.filter(pk__in=candidate_set.message_ids)}
        assert len(rankings) == (0 if len(texts) == 1 else 2)
        authors = set(Message.objects.filter(pk__in=candidate_set.message_ids).values_list("author_id", flat=True))
        assert not {r.annotator_id for r in rankings} & authors
        ranked += bool(rankings)
    assert ranked >= 9

    # Every version of the round is measured by the hidden check with its interval, and stored.
    assert {figure["kind"] for figure in result["versions"].values()} == {"base", "sft", "policy"}
    for name, figure in result["versions"].items():
        for mode in ("greedy", "sampled"):
            f = figure[mode]
            assert f["n"] == 20 and 0 <= f["low"] <= f["score"] <= f["high"] <= 1
        version = ModelVersion.objects.get(project=project, kind=figure["kind"])
        if figure["kind"] == "base":
            assert version.config["overrides"] == few_steps["base"]
        assert version.metrics["hidden_check_n"] == 20 and "hidden_check_greedy_ci95" in version.metrics
    assert 0 <= result["reward"]["accuracy"] <= 1
    assert result["agreement"]["sets_with_overlap"] == ranked and -1 <= result["agreement"]["krippendorff_alpha"] <= 1
    stored = json.loads((stores / "demo-rounds" / f"project-{project.id}.json").read_text())
    assert [r["round"] for r in stored] == [1]
    assert any("hidden check on 20 held-out prompts" in line for line in lines)

    # The policy is deployed; the annotators wrote the next round's prompts, each with one
    # demonstration, and the policy wrote the rest of each set of K, which waits to be ranked.
    policy = ModelVersion.objects.get(project=project, kind=ModelKind.POLICY)
    assert Deployment.objects.get(project=project, is_active=True).model_version == policy
    fresh = Message.objects.filter(project=project, role=MessageRole.USER).exclude(pk__in=[s.pk for s in seeds])
    assert fresh.count() == 6 == result["next_round"]["prompts"]
    for prompt in fresh:
        replies = Message.objects.filter(parent=prompt, excluded=False)
        assert replies.count() == 4
        assert replies.filter(source="annotator").count() <= 1
        assert all(r.generated.model_version == policy for r in replies.filter(source="model"))
        candidate_set = CandidateSet.objects.get(parent=prompt)
        assert not Ranking.objects.filter(candidate_set=candidate_set).exists()
    assert result["next_round"]["candidates"] == Message.objects.filter(parent__in=fresh, source="model").count() >= 6 * 3
