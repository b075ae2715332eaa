"""Correcting work from the keyboard (issue 19): skipping with a reason (S asks why, a digit picks a reason, Enter
skips; S twice skips with none; another reason needs the annotator's words) and editing a model's reply."""

import pytest

from annotate.models import Role, Task, TaskState
from annotate.services import accounts as account_services
from annotate.services import queue
from tests.annotate.factories import ranking_items
from tests.browser.person import log_in, press_and_wait
from tests.browser.test_walk import AXE_SCRIPT, axe_problems, sideways_px

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
    page.context.add_init_script(path=str(AXE_SCRIPT))
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
    assert axe_problems(page) == []  # the dialog as it is open
    page.set_viewport_size({"width": 390, "height": 800})
    assert sideways_px(page) <= 0  # and on a phone
    page.set_viewport_size({"width": 1280, "height": 900})
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


def test_an_annotator_edits_a_model_reply_from_the_keyboard(make_user, new_page, shot):
    from annotate.models import Message, MessageSource, Ranking
    from annotate.services import tree

    admin = make_user("ada", staff=True, password=PASSWORD)
    annotator = make_user("nina", password=PASSWORD)
    project = account_services.project_create(name="Sums", created_by=admin)
    account_services.membership_set(project=project, user=annotator, role=Role.ANNOTATOR)
    prompt = tree.message_create(project=project, parent=None, role="user", text="What is 2 + 2?",
                                 source=MessageSource.IMPORT)
    original = tree.message_create(project=project, parent=prompt, role="assistant", text="It is 5.",
                                   source=MessageSource.MODEL, origin={"model_version": "sft-v1"})
    weights = {kind: 0 for kind in ("prompt", "demonstration", "ranking", "compare", "label", "review")}
    account_services.project_settings_update(project=project, task_mix={**weights, "edit": 1})

    page = new_page()
    page.context.add_init_script(path=str(AXE_SCRIPT))
    log_in(page, "nina", PASSWORD)
    task = queue.task_next(project=project, annotator=annotator, role=Role.ANNOTATOR, kind="edit")
    page.goto(f"/tasks/{task.id}/")
    assert axe_problems(page) == []
    # The text box starts as the reply, with the cursor in it: mend it and save with Ctrl+Enter.
    assert page.evaluate("document.activeElement.id") == "text"
    assert page.locator("#text").input_value() == "It is 5."
    page.keyboard.press("Control+A")
    page.keyboard.type("It is 4: two and two make four.")
    shot(page, "41-edit-reply")
    press_and_wait(page, "Control+Enter")
    edited = Message.objects.get(author=annotator)
    assert (edited.text, edited.parent_id) == ("It is 4: two and two make four.", prompt.id)
    assert Ranking.objects.get(annotator=annotator).tiers == [[edited.id], [original.id]]
    assert Task.objects.get(pk=task.id).state == TaskState.SUBMITTED
