"""Training pages as admins and annotators use them: rounds (start, follow, cancel), curves drawn
from the metrics, models with deploy, generation, leaderboard, and the chat page."""

import pytest
from django.test import Client

from annotate.models import Ranking
from annotate.services import tree
from annotate.services.accounts import project_create
from training import selectors
from training.leaderboard import INTERVAL_MIN_VOTES
from training.models import Deployment, GeneratedReply, GenerationJob, MetricPoint, ModelKind, ModelVersion, RunStatus, TrainingRun
from training.services import runs
from training.trainers.config import PRESETS
from tests.training.factories import arithmetic_project

pytestmark = pytest.mark.django_db


def logged_in(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def filled(project, member):
    return arithmetic_project(project, member, prompts=12)


def test_an_admin_starts_a_round_from_the_page_and_follows_it(filled, owner, member, outsider):
    url = f"/projects/{filled.id}/training/"
    assert logged_in(outsider).get(url).status_code == 404
    assert logged_in(member).get(url).status_code == 403
    page = logged_in(owner).get(url)
    assert page.status_code == 200 and b"Start round 1" in page.content

    refused = logged_in(owner).post(url, {"preset": "tiny", "recipe": "ppo", "seed": 0, "processes": 1,
                                          "config": '{"sft": {"learning_rate": "fast"}}'})
    assert refused.status_code == 400 and b"learning_rate must be a number" in refused.content
    assert not TrainingRun.objects.exists()

    started = logged_in(owner).post(url, {"preset": "tiny", "recipe": "rloo", "seed": 3, "processes": 1, "config": ""})
    run = TrainingRun.objects.get()
    assert started.status_code == 302 and started["Location"] == f"/runs/{run.id}/"
    assert (run.algorithm, run.seed, run.status) == ("rloo", 3, RunStatus.QUEUED)

    page = logged_in(owner).get(f"/runs/{run.id}/")
    assert page.status_code == 200 and b"Cancel round" in page.content and b"rloo" in page.content
    assert logged_in(member).get(f"/runs/{run.id}/").status_code == 403
    assert logged_in(outsider).get(f"/runs/{run.id}/").status_code == 404

    assert b"Cancelling" in page.content and b"No worker has picked this round up yet." in page.content
    assert b"charts.js" in page.content and b"points.json" in page.content

    assert logged_in(member).post(f"/runs/{run.id}/cancel/").status_code == 403
    cancelled = logged_in(owner).post(f"/runs/{run.id}/cancel/", follow=True)
    assert b"Cancelling round 1" in cancelled.content and b"Retry as a new round" in cancelled.content
    assert TrainingRun.objects.get().status == RunStatus.CANCELLED


def test_the_round_page_offers_every_preset(filled, owner):
    page = logged_in(owner).get(f"/projects/{filled.id}/training/").content.decode()
    for preset in PRESETS:
        assert f'<option value="{preset}"' in page


def test_a_rounds_points_come_as_json_after_the_id_the_page_has(filled, owner, member, outsider, make_user):
    run = runs.run_create(project=filled, by=owner, preset="tiny", recipe="ppo")
    sft, reward = run.stages.get(name="sft"), run.stages.get(name="reward")
    MetricPoint.objects.bulk_create(MetricPoint(stage=sft, step=s, values={"loss": 3.0 / s, "learning_rate": 1e-3})
                                    for s in range(1, 6))
    url = f"/runs/{run.id}/points.json"
    assert logged_in(outsider).get(url).status_code == 404
    assert logged_in(member).get(url).status_code == 403

    first = logged_in(owner).get(url)
    assert first.status_code == 200 and first["Cache-Control"] == "no-store"
    body = first.json()
    assert [(p["stage"], p["step"]) for p in body["points"]] == [("sft", s) for s in range(1, 6)]
    assert body["points"][0]["values"] == {"loss": 3.0, "learning_rate": 1e-3}
    assert body["labels"] == {"learning_rate": "learning rate", "loss": "training loss"} and body["more"] is False

    # The trainer writes two more points: the next poll gets only those.
    MetricPoint.objects.bulk_create([MetricPoint(stage=sft, step=6, values={"loss": 0.4}),
                                     MetricPoint(stage=reward, step=1, values={"reward_accuracy": 0.5})])
    newer = logged_in(owner).get(url, {"after": body["last"]}).json()
    assert [(p["stage"], p["step"]) for p in newer["points"]] == [("sft", 6), ("reward", 1)]
    assert logged_in(owner).get(url, {"after": newer["last"]}).json() == {
        "points": [], "last": newer["last"], "more": False, "labels": {}}
    assert logged_in(owner).get(url, {"after": "x"}).status_code == 400

    # Another project's round is not reachable through this one's admin.
    stranger = make_user("stranger", staff=True)
    other = runs.run_create(project=arithmetic_project(project_create(name="Other", created_by=stranger), stranger,
                                                       prompts=12), by=stranger, preset="tiny", recipe="ppo")
    assert logged_in(owner).get(f"/runs/{other.id}/points.json").status_code == 404


def test_a_long_rounds_points_come_in_pages(filled, owner):
    run = runs.run_create(project=filled, by=owner, preset="tiny", recipe="ppo")
    stage = run.stages.get(name="sft")
    MetricPoint.objects.bulk_create(MetricPoint(stage=stage, step=s, values={"loss": 1.0}) for s in range(7))
    page = selectors.run_points(run=run, limit=5)
    assert len(page["points"]) == 5 and page["more"] is True
    rest = selectors.run_points(run=run, after=page["last"], limit=5)
    assert [p["step"] for p in rest["points"]] == [5, 6] and rest["more"] is False


def test_models_page_deploys_generates_and_shows_evaluation(filled, owner, member):
    first, second = (runs.run_create(project=filled, by=owner) for _ in range(2))
    base = ModelVersion.objects.create(project=filled, kind=ModelKind.BASE, version=1, folder="b", run=first,
                                       metrics={"eval_loss": 2.5, "parameters": 147008.0})
    sft = ModelVersion.objects.create(project=filled, kind=ModelKind.SFT, version=1, folder="s", parent=base, run=first,
                                      metrics={"eval_loss": 1.25, "bleu": 12.5, "rouge_l": 0.4, "hidden_check_greedy": 0.78,
                                               "hidden_check_greedy_ci95": [0.71, 0.84], "my_own_figure": 0.123456})
    ModelVersion.objects.create(project=filled, kind=ModelKind.SFT, version=2, folder="s2", parent=base, run=second,
                                metrics={"eval_loss": 1.0, "bleu": 20.0, "rouge_l": 0.5})
    url = f"/projects/{filled.id}/models/"
    assert logged_in(member).get(url).status_code == 403
    page = logged_in(owner).get(url)
    assert page.status_code == 200
    text = page.content.decode()
    assert "sft-v2" in text and "sft-v1" in text and "Nothing is deployed" in text
    # Readable names, units and numbers; a figure the table does not know keeps its key, in words.
    assert "<td class=\"num\">147k</td>" in text and "147008" not in text
    assert "held-out loss <span class=\"unit\">(nats/token)</span>" in text and "BLEU" in text
    assert "78.0% (71.0–84.0%)" in text and "my own figure" in text and "0.123" in text and "0.1235" not in text
    # Side by side: one row per metric, a cell per version, newest first; "–" where one was not measured.
    sft_rows = page.context["comparison"][ModelKind.SFT]["rows"]
    assert next(r["cells"] for r in sft_rows if r["name"] == "bleu") == ["20", "12.5"]
    assert next(r["cells"] for r in sft_rows if r["name"] == "hidden_check_greedy") == ["–", "78.0% (71.0–84.0%)"]
    # The score plots' figures, per round, for the page's script to draw.
    panels = {panel["title"]: panel for panel in page.context["score_panels"]}
    loss = {s["name"]: s["points"] for s in panels["Held-out loss"]["series"]}
    assert loss["SFT model: held-out loss"] == [[1, 1.25, "sft-v1"], [2, 1.0, "sft-v2"]]
    shares = {s["name"]: s["points"] for s in panels["Held-out and hidden-check scores"]["series"]}
    assert shares["SFT model: hidden check, greedy"] == [[1, 78.0, "sft-v1"]]
    assert 'id="score-panels"' in text and "models.js" in text
    # One version's page reads the same.
    version_page = logged_in(owner).get(f"/projects/{filled.id}/models/{sft.id}/").content.decode()
    assert "78.0% (71.0–84.0%)" in version_page and "ROUGE-L F1" in version_page and "0.4000" not in version_page
    assert "hidden_check_greedy_ci95" not in version_page

    bad = logged_in(owner).post(f"{url}deploy/", {"model_version": sft.id, "backend": "transformers", "temperature": -1,
                                                   "top_p": 0.9, "max_new_tokens": 16, "seed": 0, "share": 1})
    assert bad.status_code == 400 and not Deployment.objects.exists()
    deployed = logged_in(owner).post(f"{url}deploy/", {"model_version": sft.id, "backend": "transformers", "temperature": 0.7,
                                                        "top_p": 0.9, "max_new_tokens": 16, "seed": 0, "share": 1, "replace": "on"})
    assert deployed.status_code == 302
    assert Deployment.objects.get().sampling == {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 16, "seed": 0}
    assert logged_in(member).post(f"{url}generate/", {"max_prompts": 5}).status_code == 403
    logged_in(owner).post(f"{url}generate/", {"max_prompts": 5})
    assert GenerationJob.objects.get().max_prompts == 5
    page = logged_in(owner).get(url)
    assert b"Generate candidates" in page.content and b"Undeploy" in page.content

    chat = logged_in(member).get(f"/projects/{filled.id}/chat/")
    assert chat.status_code == 200 and b"sft-v1" in chat.content and b"chat.js" in chat.content


def test_the_chat_page_says_when_nothing_is_deployed(filled, member, outsider):
    assert logged_in(outsider).get(f"/projects/{filled.id}/chat/").status_code == 404
    page = logged_in(member).get(f"/projects/{filled.id}/chat/")
    assert page.status_code == 200 and b"No model is deployed" in page.content


def test_the_leaderboard_shows_the_count_and_no_interval_from_a_few_votes(filled, owner):
    prompt = tree.message_create(project=filled, parent=None, role="user", text="What is 3 + 4?", source="import",
                                 create_work=False)
    replies = {}
    for number in (1, 2):
        version = ModelVersion.objects.create(project=filled, kind=ModelKind.POLICY, version=number, folder=f"p{number}")
        message = tree.message_create(project=filled, parent=prompt, role="assistant", text=f"{number + 5}",
                                      source="model", create_work=False, origin={"model_version": version.name})
        GeneratedReply.objects.create(message=message, model_version=version)
        replies[number] = message.id
    pair = tree.candidate_set_create(project=filled, message_ids=[replies[1], replies[2]], kind="compare")
    Ranking.objects.bulk_create(Ranking(candidate_set=pair, external_annotator=f"voter-{n}",
                                        tiers=[[replies[2]], [replies[1]]]) for n in range(3))
    page = logged_in(owner).get(f"/projects/{filled.id}/models/").content.decode()
    row = page[page.index("<td>policy-v2</td>"):]
    row = row[: row.index("</tr>")]
    assert "too few votes" in row and '<td class="num">3</td>' in row and "…" not in row
    assert f"shown from {INTERVAL_MIN_VOTES} votes" in page
