"""Training pages as admins and annotators use them: rounds (start, follow, cancel), curves drawn
from the metrics, models with deploy, generation, leaderboard, and the chat page."""

import pytest
from django.test import Client

from training.models import Deployment, GenerationJob, MetricPoint, ModelKind, ModelVersion, RunStatus, TrainingRun
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

    stage = run.stages.get(name="sft")
    MetricPoint.objects.bulk_create(MetricPoint(stage=stage, step=s, values={"loss": 3.0 / s, "learning_rate": 1e-3}) for s in range(1, 6))
    curves = logged_in(owner).get(f"/runs/{run.id}/curves.svg")
    assert curves.status_code == 200 and curves["Content-Type"] == "image/svg+xml"
    assert b"<svg" in curves.content and b"loss" in curves.content
    assert logged_in(member).get(f"/runs/{run.id}/curves.svg").status_code == 403

    assert logged_in(member).post(f"/runs/{run.id}/cancel/").status_code == 403
    cancelled = logged_in(owner).post(f"/runs/{run.id}/cancel/", follow=True)
    assert b"Cancelling round 1" in cancelled.content and b"Retry as a new round" in cancelled.content
    assert TrainingRun.objects.get().status == RunStatus.CANCELLED


def test_models_page_deploys_generates_and_shows_evaluation(filled, owner, member):
    base = ModelVersion.objects.create(project=filled, kind=ModelKind.BASE, version=1, folder="b", metrics={"eval_loss": 2.5})
    sft = ModelVersion.objects.create(project=filled, kind=ModelKind.SFT, version=1, folder="s", parent=base,
                                      metrics={"eval_loss": 1.25, "bleu": 12.5, "rouge_l": 0.4})
    ModelVersion.objects.create(project=filled, kind=ModelKind.SFT, version=2, folder="s2", parent=base,
                                metrics={"eval_loss": 1.0, "bleu": 20.0, "rouge_l": 0.5})
    url = f"/projects/{filled.id}/models/"
    assert logged_in(member).get(url).status_code == 403
    page = logged_in(owner).get(url)
    assert page.status_code == 200
    assert b"sft-v2" in page.content and b"sft-v1" in page.content and b"12.5000" in page.content  # side by side
    assert b"Nothing is deployed" in page.content

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
