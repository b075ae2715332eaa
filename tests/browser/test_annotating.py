"""A new annotator's first session, a reviewer's review, an admin's import and export: in
Chromium, through the keyboard and the mouse only."""

import json
import re
import pytest

from annotate.models import CandidateSetKind, Label, Message, MessageSource, Ranking, Review, Role, Task, TaskState
from annotate.services import accounts as account_services
from annotate.services import queue, submits, tree
from tests.annotate.factories import ranking_items
from tests.helpers import run_queued_jobs
from tests.browser.person import click, click_and_wait, drag, log_in, press_and_wait, type_into, where

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-enough-password"
FIXTURES = __import__("pathlib").Path(__file__).parent.parent / "annotate" / "fixtures"
GUIDELINES = "## How we work\n\n- Be **correct** first, then brief.\n- Flag anything *toxic*.\n\nSee [the style guide](https://example.org/style)."


@pytest.fixture
def team(make_user):
    """A project with its admin, a reviewer, and work of every kind waiting."""
    admin = make_user("ada", staff=True, password=PASSWORD)
    reviewer = make_user("rita", password=PASSWORD)
    project = account_services.project_create(name="Arithmetic helper", guidelines=GUIDELINES, created_by=admin,
                                               description="Teach a model to do sums, from your feedback.")
    account_services.membership_set(project=project, user=reviewer, role=Role.REVIEWER)
    account_services.project_settings_update(project=project, overlap=1)
    return {"admin": admin, "reviewer": reviewer, "project": project}


def import_message(project, text, parent=None):
    role = "user" if parent is None or parent.role == "assistant" else "assistant"
    return tree.message_create(project=project, parent=parent, role=role, text=text, source=MessageSource.IMPORT)


def only_these(page, label):
    """On the project page, ask for tasks of one kind."""
    if "/projects/" not in page.url or not page.url.rstrip("/").split("/")[-1].isdigit():
        click_and_wait(page, "nav.tabs >> text=Overview")
    click_and_wait(page, f"table.waiting tr:has-text('{label}') button")


def labels_to_ids(page) -> dict[str, int]:
    cards = page.locator(".candidate")
    return {cards.nth(i).get_attribute("data-label"): int(cards.nth(i).get_attribute("data-id")) for i in range(cards.count())}


def task_id(page) -> int:
    return int(re.search(r"/tasks/(\d+)/", page.url).group(1))


def test_a_new_annotator_writes_ranks_compares_and_flags(team, new_page, shot):
    project, admin = team["project"], team["admin"]
    prompt = import_message(project, "What is 6 * 7?")
    reply = import_message(project, "It is 42.", parent=prompt)  # a chat waiting for its next turn
    import_message(project, "What is 10 / 4?")
    first_set, second_set = ranking_items(project, 2, k=4)
    (pair,) = ranking_items(project, 1, k=2, kind=CandidateSetKind.COMPARE)
    invite = account_services.invite_create(project=project, role=Role.ANNOTATOR, created_by=admin, note="Nina")

    page = new_page()
    # Joining through the invite link makes the account and logs in.
    page.goto(f"/invite/{invite.token}/")
    shot(page, "01-invite")
    type_into(page, "#id_username", "nina")
    page.keyboard.press("Tab")  # email is optional
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    press_and_wait(page, "Enter")
    assert page.url.endswith(f"/projects/{project.id}/")
    assert page.locator(".guidelines .md strong", has_text="correct").is_visible()  # Markdown rendered
    shot(page, "02-project-home")

    # Write a prompt: the chat above waits for the user's next turn.
    only_these(page, "Write a prompt")
    assert page.locator("ol.conversation").inner_text().count("It is 42.") == 1
    page.keyboard.type("And what is 42 * 2?")  # the text box has the focus
    page.reload()  # a lost connection or a reload keeps the draft
    assert page.locator("#text").input_value() == "And what is 42 * 2?"
    assert "Draft restored" in page.locator(".draft-state").inner_text()
    shot(page, "03-task-prompt")
    first_task = task_id(page)
    click(page, "#text")
    press_and_wait(page, "Control+Enter")
    written = Message.objects.get(text="And what is 42 * 2?")
    assert (written.parent_id, written.author.username, written.role) == (reply.id, "nina", "user")
    assert task_id(page) != first_task  # the next task is there at once
    assert "Start a new conversation" in page.locator(".instructions").inner_text()

    # The help, then a skip, with the keyboard.
    page.keyboard.press("Escape")  # out of the text box
    page.keyboard.press("?")
    assert page.locator("dialog#help").is_visible()
    shot(page, "04-shortcut-help")
    page.keyboard.press("Escape")
    assert not page.locator("dialog#help").is_visible()
    skipped = task_id(page)
    page.keyboard.press("s")  # asks why (tests/browser/test_skip.py); S again skips with no reason
    press_and_wait(page, "s")
    assert Task.objects.get(pk=skipped).state == TaskState.SKIPPED

    # Write a demonstration.
    only_these(page, "Write a demonstration")
    shot(page, "05-task-demonstration")
    assert page.locator("ol.conversation .turn-user").last.inner_text().endswith("What is 6 * 7?")
    page.keyboard.type("**42**, since 6 * 7 = 42.")
    press_and_wait(page, "Control+Enter")
    demonstration = Message.objects.get(author__username="nina", role="assistant")
    assert demonstration.parent == prompt and demonstration.review_state == "pending"

    # Rank four replies with the keyboard alone: 2, 4, 1 (3 goes last by itself), move 1 up,
    # tie it with 2, submit.
    only_these(page, "Rank replies")
    ids = labels_to_ids(page)
    assert sorted(ids.values()) == sorted(first_set.message_ids)
    for key in ("2", "4", "1"):
        page.keyboard.press(key)
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("t")
    assert page.locator("#rank-status").inner_text() == "4 of 4 placed"
    shot(page, "06-task-ranking-keyboard")
    press_and_wait(page, "Enter")
    ranking = Ranking.objects.get(candidate_set=first_set)
    assert ranking.tiers == [[ids["2"], ids["1"]], [ids["4"]], [ids["3"]]]

    # The next ranking, with the mouse: drag replies into the ranking bar and within it.
    assert "Rank the 4 replies" in page.locator(".instructions").inner_text()
    ids = labels_to_ids(page)
    assert sorted(ids.values()) == sorted(second_set.message_ids)
    bar = page.locator("#rank-list")
    card = lambda label: page.locator(f".candidate[data-label='{label}'] .candidate-head")  # noqa: E731
    chip = lambda label: page.locator(f"#rank-list .chip[data-id='{ids[label]}']")  # noqa: E731
    drag(page, card("3"), *where(page, bar))
    x, y = where(page, chip("3"))
    box = chip("3").bounding_box()
    drag(page, card("1"), box["x"] + 3, y)  # just left of 3: before it
    box = bar.bounding_box()
    drag(page, card("4"), box["x"] + box["width"] - 10, box["y"] + box["height"] / 2)  # the end; 2 follows
    assert page.locator("#rank-list .chip").count() == 4
    click(page, page.locator("#rank-list .sep").nth(1))  # tie 3 and 4
    box = chip("1").bounding_box()
    drag(page, chip("2"), box["x"] + 3, box["y"] + box["height"] / 2)  # 2 to the top
    shot(page, "07-task-ranking-mouse")
    click_and_wait(page, "#submit")
    ranking = Ranking.objects.get(candidate_set=second_set)
    assert ranking.tiers == [[ids["2"]], [ids["1"]], [ids["3"], ids["4"]]]

    # Compare two replies: B is better; A is spam, flagged from its own menu on the way.
    only_these(page, "Compare two replies")
    ids = labels_to_ids(page)
    page.keyboard.press("b")
    click(page, ".candidate[data-label='A'] .flag-menu summary")
    click(page, ".candidate[data-label='A'] .flag-box label:has-text('Spam')")
    shot(page, "08-task-compare")
    click_and_wait(page, ".candidate[data-label='A'] .flag-box button")
    assert Label.objects.get(message_id=ids["A"]).flags == ["spam"]
    assert "The reply is flagged" in page.locator(".messages").inner_text()
    assert page.locator("input[name=choice][value=B]").is_checked()  # the draft came back
    press_and_wait(page, "Enter")
    assert Ranking.objects.get(candidate_set=pair).tiers == [[ids["B"]], [ids["A"]]]

    # Flag a reply as toxic (and score it 2).
    only_these(page, "Label a message")
    target = page.locator(".target .md").inner_text()
    page.keyboard.press("t")
    page.keyboard.press("2")
    shot(page, "09-task-label")
    press_and_wait(page, "Enter")
    label = Label.objects.get(annotator__username="nina", task__isnull=False)
    assert (label.flags, label.quality, label.message.text) == (["toxic"], 2, target.strip())
    assert Message.objects.get(pk=label.message_id).excluded

    # My history: what I did.
    click_and_wait(page, "nav.tabs >> text=My history")
    assert page.locator(".history-entry .md strong", has_text="42").is_visible()
    assert page.locator(".history-entry").count() >= 6
    shot(page, "10-history")
    # A task already done, opened again (a reload after a lost reply, say), says so.
    page.goto(f"/tasks/{first_task}/")
    assert "You already submitted this task" in page.locator("main").inner_text()
    shot(page, "10b-task-already-submitted")
    click_and_wait(page, "nav.tabs >> text=Overview")
    assert page.locator("#count-today").inner_text() == "6"


def test_a_reviewer_rejects_a_demonstration_and_its_author_reads_why(team, make_user, new_page, shot):
    project = team["project"]
    author = make_user("omar", password=PASSWORD)
    account_services.membership_set(project=project, user=author, role=Role.ANNOTATOR)
    import_message(project, "What is 9 - 11?")
    task = queue.task_next(project=project, annotator=author, role=Role.ANNOTATOR, kind="demonstration")
    written = submits.task_submit(task_id=task.id, annotator=author, submit_key="k1", payload={"text": "It is 2."})
    demonstration = Message.objects.get(pk=written["message_id"])

    page = new_page()
    page.goto("/login/")
    shot(page, "00-login")
    log_in(page, "rita", PASSWORD)
    click_and_wait(page, "text=Arithmetic helper")
    only_these(page, "Review a demonstration")
    assert page.locator(".target .md").inner_text().strip() == "It is 2."
    page.keyboard.press("r")  # reject: the comment box takes the focus
    page.keyboard.type("The sign is wrong: 9 - 11 = -2.")
    shot(page, "11-task-review")
    press_and_wait(page, "Control+Enter")
    review = Review.objects.get()
    assert (review.message_id, review.accepted, review.comment) == (demonstration.id, False, "The sign is wrong: 9 - 11 = -2.")
    click_and_wait(page, "nav.tabs >> text=Agreement")
    shot(page, "12-reviewer-agreement")

    # The author reads the verdict in their history.
    page = new_page()
    log_in(page, "omar", PASSWORD)
    click_and_wait(page, "text=Arithmetic helper")
    click_and_wait(page, "nav.tabs >> text=My history")
    entry = page.locator(".history-entry").first
    assert "Rejected" in entry.inner_text() and "The sign is wrong: 9 - 11 = -2." in entry.inner_text()
    shot(page, "13-history-rejected")


def test_an_admin_imports_a_file_and_downloads_an_export(team, make_user, new_page, shot, tmp_path):
    project = team["project"]
    # Two annotators ranked the same sets, so there is agreement to plot.
    people = [make_user(name, password=PASSWORD) for name in ("kim", "lee")]
    for person in people:
        account_services.membership_set(project=project, user=person, role=Role.ANNOTATOR)
    ranking_items(project, 3, k=3, overlap=2)
    for person, flip in zip(people, (False, True)):
        while task := queue.task_next(project=project, annotator=person, role=Role.ANNOTATOR, kind="ranking"):
            ids = sorted(task.item.candidate_set.message_ids if task.item_id else [])
            ids = ids[:1] + ids[1:][::-1] if flip else ids
            submits.task_submit(task_id=task.id, annotator=person, submit_key=f"k{task.id}",
                                   payload={"tiers": [[i] for i in ids]}, time_spent_ms=9000)

    page = new_page()
    log_in(page, "ada", PASSWORD)
    shot(page, "20-admin-home")
    click_and_wait(page, "text=Arithmetic helper")

    # A broken file is refused with its line number, and nothing is added.
    click_and_wait(page, "nav.tabs >> text=Import")
    before = Message.objects.count()
    click(page, "label[for=id_format]")
    page.keyboard.type("prompts-j")
    with page.expect_file_chooser() as chooser:
        click(page, "#id_file")
    chooser.value.set_files(str(FIXTURES / "prompts-bad-json.jsonl"))
    click_and_wait(page, "form button[type=submit]:has-text('Import')")
    assert "queued for import" in page.locator(".messages").inner_text()
    assert "waiting for a worker" in page.locator("#import-queue").inner_text()
    # A worker refuses it; the page, polling while the job waits, shows why without a reload.
    run_queued_jobs()
    page.wait_for_selector("#import-error", timeout=10_000)
    assert "line 3" in page.locator("#import-error").inner_text()
    assert Message.objects.count() == before
    shot(page, "21-admin-import-refused")
    # The good file goes in.
    click(page, "label[for=id_format]")
    page.keyboard.type("prompts-j")
    with page.expect_file_chooser() as chooser:
        click(page, "#id_file")
    chooser.value.set_files(str(FIXTURES / "prompts.jsonl"))
    click_and_wait(page, "form button[type=submit]:has-text('Import')")
    run_queued_jobs()
    page.locator("#import-queue", has_text="imported: 3 messages").wait_for(timeout=10_000)
    assert "prompts.jsonl" in page.locator("#imports table").inner_text()
    assert Message.objects.filter(text="What is 2 + 2?").exists()
    shot(page, "22-admin-imported")

    # Settings: overlap 3, with the keyboard in the form.
    click_and_wait(page, "nav.tabs >> text=Settings")
    click(page, "#id_overlap")
    page.keyboard.press("Control+A")
    page.keyboard.type("3")
    click_and_wait(page, "text=Save the queue settings")
    project.settings.refresh_from_db()
    assert project.settings.overlap == 3
    shot(page, "23-admin-settings")

    click_and_wait(page, "nav.tabs >> text=Members")
    click_and_wait(page, "text=Make an invite link")
    assert "/invite/" in page.locator(".messages").inner_text()
    shot(page, "24-admin-members")

    click_and_wait(page, "nav.tabs >> text=Progress")
    for plot in page.locator("img.plot").all():
        assert plot.evaluate("img => img.naturalWidth") > 0  # each plot loaded and drew
    assert page.locator("img.plot").count() == 3
    shot(page, "25-admin-progress")

    click_and_wait(page, "nav.tabs >> text=Flagged")
    shot(page, "26-admin-flagged")

    # Export the prompts for RL; a worker writes the snapshot; download its file.
    click_and_wait(page, "nav.tabs >> text=Export")
    click(page, "label[for=id_kind]")
    page.keyboard.type("Prompts")
    click_and_wait(page, "form button[type=submit]:has-text('Export')")
    assert "export queued" in page.locator(".messages").inner_text()
    shot(page, "27-admin-export-queued")
    run_queued_jobs()
    page.reload()
    link = page.locator("table.files a", has_text=re.compile(r"prompts-train.*\.jsonl$")).first
    with page.expect_download() as download:
        click(page, link)
    with open(download.value.path()) as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    assert rows and all(row["prompt"][0]["role"] == "user" for row in rows)
    shot(page, "28-admin-exports")

