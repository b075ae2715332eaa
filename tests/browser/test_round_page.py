"""A round's page kept open in Chromium while its worker runs it: the badge, the stages and the
curves follow what the worker writes, without a reload; Cancel answers at once. The worker is
played by the test, writing the rows the supervisor writes (training.services.supervisor._apply)."""

import time

import pytest
from django.utils import timezone

from annotate.services import accounts as account_services
from tests.browser.person import click, log_in
from tests.training.factories import arithmetic_project
from training.models import MetricPoint, RunStage, RunStatus, StageStatus, TrainingRun
from training.services import runs

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-enough-password"
# The bound: new points are on screen within this many seconds of the trainer writing them.
SEEN_WITHIN_S = 10


def trainer_reports(stage, steps, *, total):
    """Write progress as the supervisor does on one poll: the stage's step and latest metrics, and one point per step."""
    points = [MetricPoint(stage=stage, step=step, values={"loss": 4.0 / step, "learning_rate": 1e-3}) for step in steps]
    RunStage.objects.filter(pk=stage.pk).update(step=steps[-1], total=total, metrics=points[-1].values,
                                                updated_at=timezone.now())
    MetricPoint.objects.bulk_create(points)


def seen_within(page, selector, text, *, since):
    """Wait until `selector` shows `text`; return the seconds since `since`."""
    page.locator(selector, has_text=text).first.wait_for(state="visible", timeout=SEEN_WITHIN_S * 1000)
    return time.monotonic() - since


def test_a_round_page_follows_the_worker_and_cancel_answers_at_once(make_user, new_page, shot):
    admin = make_user("ada", staff=True, password=PASSWORD)
    project = arithmetic_project(account_services.project_create(name="Arithmetic", created_by=admin), admin, prompts=12)
    run = runs.run_create(project=project, by=admin, preset="tiny", recipe="ppo")
    sft = run.stages.get(name="sft")

    page = new_page()
    refused = []  # what the Content-Security-Policy refused, and script errors
    page.on("console", lambda message: "Content Security Policy" in message.text and refused.append(message.text))
    page.on("pageerror", lambda error: refused.append(str(error)))
    log_in(page, "ada", PASSWORD)
    page.goto(f"/runs/{run.id}/")
    assert page.locator("h1 .status").inner_text() == "Queued"
    assert page.get_by_text("No worker has picked this round up yet.").is_visible()
    page.get_by_text("No metrics reported yet.").wait_for(state="visible")

    # A worker claims the round and starts SFT: the badge, the stage and the footer follow.
    started = time.monotonic()
    TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, worker="gpu-node:4242", started_at=timezone.now(),
                                                 heartbeat_at=timezone.now())
    RunStage.objects.filter(pk=sft.pk).update(status=StageStatus.RUNNING, started_at=timezone.now())
    assert seen_within(page, "h1 .status", "Running", since=started) < SEEN_WITHIN_S
    assert page.locator('tr[data-stage="sft"] .status').inner_text() == "running"
    assert page.get_by_text("Last heartbeat from gpu-node:4242 at").is_visible()

    # The trainer reports steps 1-5: the loss curve appears with them, no reload.
    written = time.monotonic()
    trainer_reports(sft, range(1, 6), total=20)
    elapsed = seen_within(page, 'figure[data-metric="loss"] .chart-legend', "sft: 0.8 at step 5", since=written)
    assert elapsed < SEEN_WITHIN_S, f"the points took {elapsed:.1f} s to appear"
    assert page.locator('figure[data-metric="loss"] .chart-series').get_attribute("data-points") == "5"
    assert page.locator('figure[data-metric="loss"] polyline').count() == 1
    assert seen_within(page, 'tr[data-stage="sft"] [data-field="progress"]', "5 / 20", since=written) < SEEN_WITHIN_S
    assert page.locator('tr[data-stage="sft"] progress').get_attribute("value") == "5"
    assert page.get_by_text("No metrics reported yet.").count() == 0

    # Three more steps: the same curve grows by them (only the new points came in).
    written = time.monotonic()
    trainer_reports(sft, range(6, 9), total=20)
    assert seen_within(page, 'figure[data-metric="loss"] .chart-legend', "sft: 0.5 at step 8", since=written) < SEEN_WITHIN_S
    assert page.locator('figure[data-metric="loss"] .chart-series').get_attribute("data-points") == "8"
    assert page.locator('figure[data-metric="learning_rate"] .chart-title').inner_text() == "learning rate"
    shot(page, "round-page-running")

    # Cancel: the page says so the moment it is pressed, and again once the request has gone through.
    click(page, "button:has-text('Cancel round')")
    page.get_by_text("Cancelling…").first.wait_for(state="visible", timeout=1000)
    page.get_by_text("Cancelling round 1: it stops within seconds.").wait_for(state="visible")
    assert TrainingRun.objects.get(pk=run.pk).cancel_requested
    assert page.get_by_text("Cancelling…").first.is_visible()
    assert page.locator('figure[data-metric="loss"] .chart-series').get_attribute("data-points") == "8"

    # The worker stops the stage: the page reloads once into the finished round, with its curves.
    TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.CANCELLED, finished_at=timezone.now())
    RunStage.objects.filter(pk=sft.pk).update(status=StageStatus.CANCELLED)
    page.locator("button", has_text="Retry as a new round").wait_for(state="visible", timeout=SEEN_WITHIN_S * 1000)
    assert page.locator("h1 .status").inner_text() == "Cancelled"
    assert page.get_by_text("Cancelling…").is_hidden()
    page.locator('figure[data-metric="loss"] .chart-series[data-points="8"]').wait_for(state="visible")
    assert refused == [], refused
