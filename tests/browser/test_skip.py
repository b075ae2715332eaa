"""Skipping with a reason from the keyboard (issue 19): S asks why, a digit picks a reason, Enter skips; S twice
skips with none; another reason needs the annotator's words before the browser sends it."""

import pytest

from annotate.models import Role, Task, TaskState
from annotate.services import accounts as account_services
from annotate.services import queue
from tests.annotate.factories import ranking_items
from tests.browser.person import log_in, press_and_wait

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "a-long-enough-password"


def test_an_annotator_skips_with_a_reason_from_the_keyboard(make_user, new_page, shot):
    admin = make_user("ada", staff=True, password=PASSWORD)
    annotator = make_user("nina", password=PASSWORD)
    project = account_services.project_create(name="Sums", created_by=admin)
    account_services.membership_set(project=project, user=annotator, role=Role.ANNOTATOR)
    weights = {kind: 0 for kind in ("prompt", "demonstration", "ranking", "compare", "label", "review")}
    account_services.project_settings_update(project=project, overlap=1, task_mix={**weights, "ranking": 1})
    ranking_items(project, 3, k=2, overlap=1)

    page = new_page()
    log_in(page, "nina", PASSWORD)
    task = queue.task_next(project=project, annotator=annotator, role=Role.ANNOTATOR, kind="ranking")
    page.goto(f"/tasks/{task.id}/")
    page.wait_for_selector("#task-form")

    # S asks why; 2 picks "It needs knowledge I do not have"; Enter skips; the next task comes.
    page.keyboard.press("s")
    dialog = page.locator("#skip-dialog")
    assert dialog.is_visible() and "Skip this task: why?" in dialog.inner_text()
    page.keyboard.press("2")
    assert page.locator("input[name=reason][value=expertise]").is_checked()
    shot(page, "40-skip-reason")
    press_and_wait(page, "Enter")
    assert "Skipped. You will not get that one again." in page.locator(".messages").inner_text()

    # Another reason (5) puts the cursor in the note, which the browser asks for before it sends.
    page.keyboard.press("s")
    page.keyboard.press("5")
    assert page.evaluate("document.activeElement.id") == "skip-note"
    page.keyboard.press("Enter")
    page.wait_for_timeout(300)
    assert dialog.is_visible() and Task.objects.filter(state=TaskState.SKIPPED).count() == 1  # not sent without words
    page.keyboard.type("Both replies are in Finnish.")
    press_and_wait(page, "Enter")

    # Esc keeps working; then S, S skips with no reason.
    page.keyboard.press("s")
    page.keyboard.press("Escape")
    assert not dialog.is_visible()
    page.keyboard.press("s")
    press_and_wait(page, "s")
    assert list(Task.objects.filter(state=TaskState.SKIPPED).order_by("id").values_list("skip_reason", "skip_note")) == [
        ("expertise", ""), ("other", "Both replies are in Finnish."), ("", "")]
