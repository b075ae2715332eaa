"""What a walk through every page as a new annotator, reviewer and admin found (issue 19), in
Chromium: a refused ranking that could never be sent, pages that scroll sideways on a phone,
axe-core's serious findings, and the small things a user stumbles on."""

import re
from datetime import timedelta
from importlib.resources import files

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from annotate.models import CandidateSetKind, Membership, MessageSource, Ranking, Role, Task, TaskState
from annotate.services import accounts as account_services
from annotate.services import judgements, queue, tree
from tests.annotate.factories import ranking_items
from tests.browser.person import click, log_in, press_and_wait

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-enough-password"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
# axe-core as its PyPI wheel ships it: nothing is fetched, nothing is copied into the repository.
AXE_SCRIPT = files("axe_playwright_python") / "axe.min.js"


def axe_problems(page) -> list[str]:
    """Run axe-core on the page; return its serious and critical findings, one line each."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE_SCRIPT))
    results = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{violation['id']} ({violation['impact']}): {node['target']} {node['failureSummary'][:160]!r}"
        for violation in results["violations"]
        if violation["impact"] in ("serious", "critical")
        for node in violation["nodes"]
    ]


def sideways_px(page) -> int:
    """How far the page scrolls sideways (0 when it fits the window)."""
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


@pytest.fixture
def team(make_user):
    """A project with an admin, a reviewer and an annotator."""
    admin = make_user("ada", staff=True, password=PASSWORD)
    project = account_services.project_create(name="Arithmetic helper", guidelines="Be **correct**, then brief.",
                                               created_by=admin, description="Teach a model to do sums.")
    account_services.project_settings_update(project=project, overlap=1)
    people = {"admin": admin, "project": project}
    for name, role in (("rita", Role.REVIEWER), ("nina", Role.ANNOTATOR)):
        people[name] = make_user(name, password=PASSWORD)
        account_services.membership_set(project=project, user=people[name], role=role)
    return people


def lease(team, kind, who="nina"):
    role = Membership.objects.get(project=team["project"], user=team[who]).role
    return queue.task_next(project=team["project"], annotator=team[who], role=role, kind=kind)


def labels_to_ids(page) -> dict[str, int]:
    cards = page.locator(".candidate")
    return {cards.nth(i).get_attribute("data-label"): int(cards.nth(i).get_attribute("data-id")) for i in range(cards.count())}


def test_a_refused_ranking_can_be_put_right_and_sent_from_the_keyboard(team, new_page):
    (candidates,) = ranking_items(team["project"], 1, k=4)
    task = lease(team, "ranking")
    page = new_page()
    log_in(page, "nina", PASSWORD)
    page.goto(f"/tasks/{task.id}/")
    ids = labels_to_ids(page)
    error = page.locator("#client-error")

    # Enter before anything is placed: refused in the page, and both buttons still work.
    page.keyboard.press("Enter")
    assert "Place all 4 replies" in error.inner_text()
    # Twice over: a second refused submit must not be swallowed as "already sending".
    page.keyboard.press("Enter")
    assert error.is_visible()
    assert page.locator("#submit").is_enabled() and page.locator("#skip").is_enabled()

    # All four tied: refused too.
    for key in ("1", "2", "3", "2", "t", "3", "t", "4", "t"):  # 4 is placed last by itself
        page.keyboard.press(key)
    assert page.locator("#rank-list .sep.tied").count() == 3
    page.keyboard.press("Enter")
    assert "All replies are tied" in error.inner_text()
    assert page.locator("#submit").is_enabled() and page.locator("#skip").is_enabled()
    assert Task.objects.get(pk=task.id).state == TaskState.LEASED

    # Untie 4: a ranking that says something, and it is sent.
    page.keyboard.press("4")
    page.keyboard.press("t")
    press_and_wait(page, "Enter")
    ranking = Ranking.objects.get(candidate_set=candidates)
    assert ranking.tiers == [[ids["1"], ids["2"], ids["3"]], [ids["4"]]]
    assert Task.objects.get(pk=task.id).state == TaskState.SUBMITTED
