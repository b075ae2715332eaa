"""Content is shown, never run: prompts, replies, guidelines, comments and file names carrying
script, shown on every page that displays content, every link in them clicked."""

import pytest

from annotate.models import CandidateSetKind, Message, MessageSource, Role
from annotate.services import accounts as account_services
from annotate.services import queue, submits, tree
from tests.browser.person import click, click_and_wait, log_in, press_and_wait
from tests.helpers import run_queued_jobs

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-enough-password"
PAYLOADS = [
    "<script>window.__x=1</script>",
    '<img src=x onerror="window.__x=2">',
    "[a](javascript:window.__x=3)",
    "<svg onload=window.__x=4>",
    "[b](&#106;avascript:window.__x=5)",
    '"\'><img src=x onerror=window.__x=6>',
    "[c](JaVaScRiPt:window.__x=7)",
    "[a safe link](https://example.invalid/page)",  # kept, opens in a new tab
]
EVIL = "\n\n".join(PAYLOADS)


def assert_inert(page, *, expect_text=True):
    """Click every link in the shown content, then check that nothing ran and nothing executable
    made it into the page."""
    closed = page.locator("details:not(.flag-menu):not([open]) > summary")
    while closed.count():
        click(page, closed.first)  # open the guidelines, so their links can be clicked too
    links = [link for link in page.locator(".md a").all() if link.is_visible()]
    for link in links:
        click(page, link)
    if expect_text:
        assert links, f"no link to click on {page.url}"
        assert all(link.get_attribute("href") == "https://example.invalid/page" for link in links)
    page.wait_for_timeout(150)
    assert page.evaluate("window.__x") is None, page.url
    assert page.locator("main script, main iframe, main object, main embed, [onerror], [onload]").count() == 0, page.url
    assert page.locator("main img:not(.plot), main svg").count() == 0, page.url
    for popup in page.context.pages:
        if popup is not page:
            # Only the safe link opened anything (a page that cannot load: .invalid never resolves).
            assert popup.url in ("about:blank", "", "https://example.invalid/page") or popup.url.startswith("chrome-error:"), popup.url
            popup.close()
    if expect_text:
        assert "window.__x=1" in page.locator("main").inner_text(), f"the content is not shown on {page.url}"
    click(page, "h1")  # the focus leaves what was clicked, so the page's keys work again


def only_these(page, project, label):
    page.goto(f"/projects/{project.id}/")
    click_and_wait(page, f"table.waiting tr:has-text('{label}') button")


def test_script_in_content_never_runs_anywhere(make_user, new_page, shot, tmp_path):
    admin = make_user("ada", staff=True, password=PASSWORD)
    project = account_services.project_create(name="Hostile content", guidelines="Be careful.", created_by=admin)
    account_services.project_settings_update(project=project, overlap=1, replies_per_ranking=3)
    people = {}
    for name, role in (("nina", Role.ANNOTATOR), ("eve", Role.ANNOTATOR), ("rita", Role.REVIEWER)):
        people[name] = make_user(name, password=PASSWORD)
        account_services.membership_set(project=project, user=people[name], role=role)

    # Hostile text everywhere: a chat waiting for its next turn, three replies to rank, two to
    # compare, a reply to label, a demonstration to review.
    def message(text, parent=None, **extra):
        role = "user" if parent is None or parent.role == "assistant" else "assistant"
        return tree.message_create(project=project, parent=parent, role=role, text=text, source=MessageSource.IMPORT, **extra)

    prompt = message(EVIL)
    replies = [message(f"Reply {n}\n\n{EVIL}", parent=prompt) for n in range(3)]  # a ranking set of 3
    pair_prompt = message(f"Pair\n\n{EVIL}")
    pair = [message(f"Side {side}\n\n{EVIL}", parent=pair_prompt) for side in "AB"]
    tree.candidate_set_create(project=project, message_ids=[m.id for m in pair], kind=CandidateSetKind.COMPARE)
    task = queue.task_next(project=project, annotator=people["eve"], role=Role.ANNOTATOR, kind="demonstration")
    submits.task_submit(task_id=task.id, annotator=people["eve"], submit_key="e1", payload={"text": f"Eve says\n\n{EVIL}"})
    assert Message.objects.filter(author=people["eve"]).count() == 1 and len(replies) == 3

    # The admin puts script into the guidelines and imports a hostile file with a hostile name.
    page = new_page()
    log_in(page, "ada", PASSWORD)
    page.goto(f"/projects/{project.id}/admin/")
    click(page, "#id_guidelines")
    page.keyboard.press("Control+A")
    page.keyboard.type(EVIL)
    click_and_wait(page, "text=Save the guidelines")
    assert_inert(page, expect_text=False)  # the guidelines' source is in a text box
    shot(page, "30-xss-admin-settings")
    hostile = tmp_path / '<img src=x onerror="window.__x=8">.jsonl'
    hostile.write_text("".join(f'{{"prompt": {__import__("json").dumps(f"Imported {n}: " + EVIL)}}}\n' for n in range(2)))
    page.goto(f"/projects/{project.id}/admin/imports/")
    click(page, "label[for=id_format]")
    page.keyboard.type("prompts-j")
    with page.expect_file_chooser() as chooser:
        click(page, "#id_file")
    chooser.value.set_files(str(hostile))
    click_and_wait(page, "form button[type=submit]:has-text('Import')")
    assert "onerror" in page.locator("#import-queue").inner_text()  # the file name, shown as text
    run_queued_jobs()
    page.locator("#imports table", has_text="onerror").wait_for(timeout=10_000)
    assert_inert(page, expect_text=False)
    shot(page, "31-xss-admin-imports")

    # An annotator meets it on every kind of task, and writes some of her own.
    page = new_page()
    log_in(page, "nina", PASSWORD)
    page.goto(f"/projects/{project.id}/")
    assert_inert(page)  # the guidelines
    only_these(page, project, "Write a prompt")
    assert_inert(page)
    shot(page, "32-xss-task-prompt")
    click(page, "#text")
    page.keyboard.type(EVIL)
    press_and_wait(page, "Control+Enter")

    only_these(page, project, "Write a demonstration")
    assert_inert(page)
    shot(page, "33-xss-task-demonstration")
    click(page, "#text")
    page.keyboard.type(EVIL)
    press_and_wait(page, "Control+Enter")

    only_these(page, project, "Rank replies")
    assert_inert(page)
    shot(page, "34-xss-task-ranking")
    for key in ("1", "2"):
        page.keyboard.press(key)
    assert_inert(page)  # the ranking bar shows the replies' first words
    press_and_wait(page, "Enter")

    only_these(page, project, "Compare two replies")
    assert_inert(page)
    shot(page, "35-xss-task-compare")
    page.keyboard.press("a")
    press_and_wait(page, "Enter")

    only_these(page, project, "Label a message")
    assert_inert(page)
    shot(page, "36-xss-task-label")
    page.keyboard.press("t")
    press_and_wait(page, "Enter")

    page.goto(f"/projects/{project.id}/history/")
    assert_inert(page)
    shot(page, "37-xss-history")

    # The reviewer reviews Eve's demonstration and rejects it, quoting script back at her.
    page = new_page()
    log_in(page, "rita", PASSWORD)
    only_these(page, project, "Review a demonstration")
    while "Eve says" not in page.locator(".target").inner_text():
        page.keyboard.press("s")  # Nina's demonstration comes first; skip to Eve's (S, S: with no reason)
        press_and_wait(page, "s")
    assert_inert(page)
    shot(page, "38-xss-task-review")
    page.keyboard.press("r")
    page.keyboard.type(PAYLOADS[0] + PAYLOADS[1])
    press_and_wait(page, "Control+Enter")
    page.goto(f"/projects/{project.id}/admin/progress/")
    assert_inert(page, expect_text=False)

    page = new_page()
    log_in(page, "eve", PASSWORD)
    page.goto(f"/projects/{project.id}/history/")
    assert "onerror" in page.locator(".review").inner_text()  # the comment, shown as text
    assert_inert(page)
    shot(page, "39-xss-history-reviewed")

    # The admin's lists of content.
    page = new_page()
    log_in(page, "ada", PASSWORD)
    page.goto(f"/projects/{project.id}/admin/flagged/")
    assert page.locator(".excluded-message").count() >= 2  # Nina's flag and Rita's rejection
    assert_inert(page)
    shot(page, "40-xss-admin-flagged")
    for path in ("admin/progress/", "admin/members/", "exports/"):
        page.goto(f"/projects/{project.id}/{path}")
        assert_inert(page, expect_text=False)
