"""The training pages kept open in Chromium: a round's page while its worker runs it (the badge, the
stages and the curves follow what the worker writes, without a reload; Cancel answers at once), the
models page at a desktop's and a phone's width, the export page while a worker writes an export.
The round's worker is played by the test, writing the rows the supervisor writes
(training.services.supervisor._apply)."""

import time
from importlib.resources import files

import pytest
from django.utils import timezone

from annotate.services import accounts as account_services
from tests.browser.person import click, click_and_wait, log_in
from tests.browser.test_annotating import run_queued_jobs
from tests.training.factories import arithmetic_project
from training.models import MetricPoint, ModelKind, ModelVersion, RunStage, RunStatus, StageStatus, TrainingRun
from training.services import runs

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-enough-password"
# The bound: new points are on screen within this many seconds of the trainer writing them.
SEEN_WITHIN_S = 10
# axe-core as its PyPI wheel ships it, added to each window as an init script (the page's
# Content-Security-Policy refuses a script tag added to it).
AXE_SCRIPT = files("axe_playwright_python") / "axe.min.js"


def accessibility_problems(page) -> list[str]:
    """Return axe-core's serious and critical findings on the page, one line each."""
    results = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']}: {node['target']}" for v in results["violations"] if v["impact"] in ("serious", "critical")
            for node in v["nodes"]]


def fits(page, width: int) -> bool:
    """Whether the page, at `width` px wide, needs no sideways scrolling."""
    page.set_viewport_size({"width": width, "height": 900})
    page.wait_for_timeout(100)
    return page.evaluate("document.documentElement.scrollWidth") <= width


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
    page.context.add_init_script(path=str(AXE_SCRIPT))
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
    assert accessibility_problems(page) == []
    assert fits(page, 390)
    shot(page, "round-page-running-390")
    assert fits(page, 1280)

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


def test_the_models_page_shows_versions_side_by_side_and_fits_the_window(make_user, new_page, shot):
    admin = make_user("ada", staff=True, password=PASSWORD)
    project = account_services.project_create(name="Arithmetic", created_by=admin)
    parent = None
    for number in (1, 2, 3):
        run = TrainingRun.objects.create(project=project, number=number, algorithm="ppo", status=RunStatus.SUCCEEDED)
        for kind, metrics in (
            (ModelKind.BASE, {"eval_loss": 3.0 - number / 4, "perplexity": 20.0 / number, "parameters": 147008.0}),
            (ModelKind.SFT, {"eval_loss": 2.0 - number / 5, "bleu": 10.0 * number, "rouge_l": 0.2 * number,
                             "hidden_check_greedy": 0.2 * number, "hidden_check_greedy_ci95": [0.15 * number, 0.25 * number],
                             "hidden_check_sampled": 0.18 * number, "general_check": 0.1 * number, "eval_rows": 300,
                             "win_rate_vs_previous_optimistic_and_then_some_long_name": 0.5}),
            (ModelKind.REWARD, {"reward_accuracy": 0.6 + number / 20, "mean_margin": 0.25 * number, "eval_rows": 120}),
        ):
            parent = ModelVersion.objects.create(project=project, kind=kind, version=number, folder=f"{kind}-{number}",
                                                 run=run, parent=parent, metrics=metrics)
    page = new_page()
    log_in(page, "ada", PASSWORD)
    page.context.add_init_script(path=str(AXE_SCRIPT))
    page.goto(f"/projects/{project.id}/models/")
    sft = page.locator("section.card", has=page.locator("h2", has_text="SFT model"))
    # Versions side by side, newest first, a readable row per metric.
    assert sft.locator("thead th").all_inner_texts()[1:] == ["sft-v3", "sft-v2", "sft-v1"]
    assert sft.locator('tr[data-metric="hidden_check_greedy"]').inner_text().split("\t") == [
        "hidden check, greedy", "60.0% (45.0–75.0%)", "40.0% (30.0–50.0%)", "20.0% (15.0–25.0%)"]
    assert "147k" in page.locator("section.card", has=page.locator("h2", has_text="Base model")).inner_text()
    assert "0.0000" not in page.locator("main").inner_text()
    # The scores across rounds, drawn: a line per kind and figure, a point per round.
    scores = page.locator('figure[data-title="Held-out and hidden-check scores"]')
    assert scores.locator('.chart-series[data-series="SFT model: hidden check, greedy"] circle').count() == 3
    assert scores.locator('.chart-series[data-series="Reward model: reward accuracy"]').get_attribute("data-points") == "3"
    assert "SFT model: hidden check, greedy: 60 at round 3" in scores.locator(".chart-legend").inner_text()
    loss = page.locator('figure[data-title="Held-out loss"]')
    assert loss.locator(".chart-series").count() == 2  # base and SFT
    assert accessibility_problems(page) == []
    for width in (1280, 390):
        assert fits(page, width), width
        shot(page, f"models-{width}")
    # At 390 px the versions' table scrolls inside its own box.
    box = sft.locator(".table-scroll")
    assert box.evaluate("element => element.scrollWidth > element.clientWidth")
    # So do one version's page and the rounds' page, with their tables and the form to start one.
    for url in (f"/projects/{project.id}/models/{parent.id}/", f"/projects/{project.id}/training/"):
        page.goto(url)
        assert fits(page, 390) and accessibility_problems(page) == [], url


def test_the_export_page_shows_a_finished_export_without_a_reload(make_user, new_page):
    admin = make_user("ada", staff=True, password=PASSWORD)
    project = arithmetic_project(account_services.project_create(name="Arithmetic", created_by=admin), admin, prompts=12)
    page = new_page()
    log_in(page, "ada", PASSWORD)
    page.context.add_init_script(path=str(AXE_SCRIPT))
    page.goto(f"/projects/{project.id}/exports/")
    click(page, "label[for=id_kind]")
    page.keyboard.type("Prompts")
    click_and_wait(page, "form button[type=submit]:has-text('Export')")
    page.locator("#export-queue", has_text="waiting for a worker").wait_for(state="visible")
    assert page.get_by_text("No snapshots yet.").is_visible()
    page.evaluate("window.__same_page = true")  # gone if the page reloads
    run_queued_jobs()
    page.locator("table.files a", has_text="prompts").first.wait_for(state="visible", timeout=SEEN_WITHIN_S * 1000)
    assert page.locator("#export-queue").inner_text().count("waiting for a worker") == 0
    assert page.evaluate("window.__same_page") is True
    assert fits(page, 390) and accessibility_problems(page) == []
