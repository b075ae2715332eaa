"""What a walk through every page as a new annotator, reviewer and admin found (issue 19), in
Chromium: a refused ranking that could never be sent, pages that scroll sideways on a phone,
axe-core's serious findings, and the small things a user stumbles on."""

import re
from datetime import timedelta
from importlib.resources import files

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from playwright.sync_api import expect

from annotate.models import (
    CandidateSetKind,
    Membership,
    MessageSource,
    Ranking,
    Role,
    Task,
    TaskState,
)
from annotate.services import accounts as account_services
from annotate.services import queue, submits, tree
from tests.annotate.factories import ranking_items
from tests.browser.person import click, log_in, press_and_wait
from tests.training.factories import arithmetic_project
from training.models import ModelKind, ModelVersion
from training.services import runs, screening

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-enough-password"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
# axe-core as its PyPI wheel ships it: nothing is fetched, nothing is copied into the repository.
AXE_SCRIPT = files("axe_playwright_python") / "axe.min.js"


def axe_problems(page) -> list[str]:
    """Run axe-core on the page; return its serious and critical findings, one line each.

    axe comes in as an init script of the window (Walk adds it): a script tag added to the page
    would be inline, and the Content-Security-Policy refuses inline script, as it should.
    """
    # Key hints are one letter ("S", "?"), which axe leaves undecided by default: judge them too.
    page.evaluate("""() => {
        const options = axe._audit.checks["color-contrast"].options;  // configure replaces them whole
        axe.configure({checks: [{id: "color-contrast", options: {...options, ignoreLength: true}}]});
    }""")
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


def too_wide(page) -> list[str]:
    """Name the innermost elements that reach past the window's right edge."""
    return page.evaluate("""() => {
        const out = [];
        for (const element of document.querySelectorAll("body *")) {
            if (element.getBoundingClientRect().right <= window.innerWidth + 0.5) continue;
            if ([...element.children].some(child => child.getBoundingClientRect().right > window.innerWidth + 0.5)) continue;
            out.push(element.tagName.toLowerCase() + (element.id ? "#" + element.id : "") + (element.className ? "." + String(element.className).split(" ").join(".") : ""));
        }
        return out.slice(0, 5);
    }""")


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


def message(project, text, parent=None):
    role = "user" if parent is None or parent.role == "assistant" else "assistant"
    return tree.message_create(project=project, parent=parent, role=role, text=text, source=MessageSource.IMPORT)


# Every page of annotate/urls.py, training/urls.py and the site's own (platform_config/urls.py), by
# URL name: who looks at it in the walk below (nina annotates, rita reviews, ada is the project's
# admin and site staff; None is nobody logged in). The rest are posts, files or images; a new URL
# must join one of the two.
WALKED = {
    "home": ("nina", "ada"),
    "login": (None,),
    "password_change": ("nina",),
    "password_change_done": ("nina",),
    "annotate:invite": (None,),
    "annotate:project": ("nina", "ada"),
    "annotate:history": ("nina",),
    "annotate:guidelines": ("nina",),
    "annotate:message": ("rita",),
    "annotate:task": ("nina", "rita"),
    "annotate:admin-progress": ("rita", "ada"),
    "annotate:admin-settings": ("ada",),
    "annotate:admin-members": ("ada",),
    "annotate:admin-imports": ("ada",),
    "annotate:admin-excluded": ("ada",),
    "training:exports": ("ada",),
    "training:runs": ("ada",),
    "training:run": ("ada",),
    "training:models": ("ada",),
    "training:model-version": ("ada",),
    "training:chat": ("nina", "ada"),
    "training:base-models": ("ada",),
    "training:screen": ("ada",),
}
NOT_PAGES = {
    "logout", "annotate:project-create", "annotate:work", "annotate:message-flag", "annotate:task-submit",
    "annotate:task-skip", "annotate:settings-update", "annotate:guidelines-update", "annotate:member-invite",
    "annotate:member-role-set", "annotate:member-remove", "annotate:invite-revoke",
    "annotate:admin-plot",  # an SVG shown through <img> on the progress page
    "annotate:admin-throughput-csv",  # a CSV download linked from the progress page
    "annotate:judgement-withdraw", "annotate:judgement-review",
    "training:export-file", "training:run-points", "training:run-cancel", "training:run-resume",
    "training:run-retry", "training:deployment-create", "training:deployment-end", "training:deployment-rollback",
    "training:generation-create", "training:arena-create", "training:generation-retry", "training:model-adapter",
    "training:base-conversion-cancel", "training:screen-backfill", "training:screen-job-cancel",
    "training:screen-classifier",
}
# Found on training's pages, which are being changed elsewhere: reported there, left out here.
# Pages whose width another change owns, with what it is to fix; none now.
ELSEWHERE: dict[str, str] = {}


def url_names(patterns, namespace="") -> set[str]:
    names = set()
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            if pattern.namespace in ("annotate", "training", None) and "api" not in str(pattern.pattern):
                inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
                names |= url_names(pattern.url_patterns, inner)
        elif isinstance(pattern, URLPattern) and pattern.name and not str(pattern.pattern).startswith(("api/", "health")):
            names.add(f"{namespace}{pattern.name}")
    return names


class Walk:
    """One window that visits pages as one person and notes what is wrong with each."""

    def __init__(self, page):
        self.page = page
        page.context.add_init_script(path=str(AXE_SCRIPT))
        self.problems: list[str] = []
        self.visited: set[tuple[str, str | None]] = set()
        self.who: str | None = None
        self.failed: list[str] = []
        self.icons: list[str] = []
        page.on("response", lambda response: response.status >= 400 and self.failed.append(f"{response.status} {response.url}"))
        page.on("request", lambda request: "favicon" in request.url and self.icons.append(request.url))

    def log_in(self, username: str | None):
        self.page.context.clear_cookies()
        if username is not None:
            log_in(self.page, username, PASSWORD)
        self.who = username

    def check(self, name: str, url: str | None = None):
        """Look at the page (going to `url` first): axe-core at desktop width, then at 390 px."""
        page = self.page
        if url is not None:
            response = page.goto(url)
            assert response.ok, f"{url}: {response.status}"
        self.visited.add((name, self.who))
        where = f"{name} as {self.who} {page.url}"
        self.problems += [f"{where}: {problem}" for problem in axe_problems(page)]
        self.problems += [f"{where}: {failed}" for failed in self.failed]
        self.failed.clear()
        if name in ELSEWHERE:
            return  # its width is reported where the page is being changed (ELSEWHERE says what)
        page.set_viewport_size(PHONE)
        if (wide := sideways_px(page)) > 0:
            self.problems.append(f"{where}: scrolls {wide} px sideways at {PHONE['width']} px, past the edge: {too_wide(page)}")
        page.set_viewport_size(DESKTOP)


def test_every_page_passes_axe_and_fits_a_phone(team, new_page, tmp_path):
    """Every page by URL name and role: no serious or critical axe-core finding, no failed
    request (the favicon included), and nothing wider than a 390 px phone."""
    assert url_names(get_resolver().url_patterns) == set(WALKED) | NOT_PAGES, "a page is missing from the walk"
    project, admin = team["project"], team["admin"]
    prompt = message(project, "What is 6 * 7? A long word: " + "Supercalifragilistic" * 8)
    message(project, "It is 42.", parent=prompt)  # a chat waiting for its next turn
    ranking_items(project, 1, k=4)
    ranking_items(project, 1, k=2, kind=CandidateSetKind.COMPARE)
    # A demonstration for the reviewer, and something on every admin page.
    demonstration = lease(team, "demonstration")
    submits.task_submit(task_id=demonstration.id, annotator=team["nina"], submit_key="d1", payload={"text": "It is 42."})
    submits.label_submit(message=message(project, "Buy cheap pills now"), annotator=team["rita"], flags=["spam"])
    account_services.invite_create(project=project, role=Role.ANNOTATOR, created_by=admin, note="Omar")
    invite = account_services.invite_create(project=project, role=Role.ANNOTATOR, created_by=admin)
    batch = tmp_path / "prompts.jsonl"
    batch.write_text('{"prompt": "What is 2 + 2?"}\n{"prompt": "What is 3 + 3?"}\n')
    from annotate.importers import import_run

    with batch.open("rb") as stream:
        import_run(project=project, format="prompts-jsonl", stream=stream, filename=batch.name, by=admin)

    page = new_page()
    walk = Walk(page)
    walk.check("login", "/login/")
    walk.check("annotate:invite", f"/invite/{invite.token}/")

    walk.log_in("nina")
    walk.check("home", "/")
    walk.check("annotate:project", f"/projects/{project.id}/")
    for kind in ("prompt", "demonstration", "ranking", "compare", "label"):
        task = lease(team, kind)
        assert task is not None, f"no {kind} task for nina"
        walk.check("annotate:task", f"/tasks/{task.id}/")
        if kind == "ranking":  # a ranking bar with every reply placed
            for key in "123":
                page.keyboard.press(key)
            walk.check("annotate:task")
        queue.task_skip(task=task, annotator=team["nina"])
    walk.check("annotate:task", f"/tasks/{demonstration.id}/")  # already submitted
    walk.check("annotate:history", f"/projects/{project.id}/history/")
    account_services.project_update_guidelines(project=project, guidelines=project.guidelines + "\n\n- Say so when unsure.")
    walk.check("annotate:guidelines", f"/projects/{project.id}/guidelines/")  # with the diff of the two versions
    walk.check("password_change", "/password/")
    walk.check("password_change_done", "/password/done/")

    walk.log_in("rita")
    review = lease(team, "review", who="rita")
    walk.check("annotate:task", f"/tasks/{review.id}/")
    walk.check("annotate:admin-progress", f"/projects/{project.id}/admin/progress/")
    walk.check("annotate:message", f"/projects/{project.id}/messages/{review.item.message_id}/")

    walk.log_in("ada")
    # The content screen on, with a word to hold and an address to redact: the Flagged page shows their spans
    # marked, and the Screen page its backfill job.
    screening.screen_update(project=project, by=admin, enabled=True, words=["pills"])
    message(project, "Where can I buy pills? Write to jo@example.com")
    walk.check("home", "/")
    walk.check("annotate:project", f"/projects/{project.id}/")
    for name, path in (("admin-settings", "admin/"), ("admin-members", "admin/members/"),
                       ("admin-progress", "admin/progress/"), ("admin-imports", "admin/imports/"),
                       ("admin-excluded", "admin/flagged/")):
        walk.check(f"annotate:{name}", f"/projects/{project.id}/{path}")
    # Training's pages, with a round and two versions from it.
    # A corpus to build the round's base from, and enough sums that the held-out split (by each prompt's text,
    # seeded by the project id) leaves a batch to train on whatever the id: with 6, 3 held out happened.
    arithmetic_project(project, team["nina"], prompts=16)
    run = runs.run_create(project=project, by=admin)
    base = ModelVersion.objects.create(project=project, kind=ModelKind.BASE, version=1, folder="b", run=run,
                                       metrics={"eval_loss": 2.5, "parameters": 147008.0})
    sft = ModelVersion.objects.create(project=project, kind=ModelKind.SFT, version=1, folder="s", parent=base, run=run,
                                      metrics={"eval_loss": 1.25, "bleu": 12.5})
    for name, path in (("exports", f"/projects/{project.id}/exports/"), ("runs", f"/projects/{project.id}/training/"),
                       ("run", f"/runs/{run.id}/"), ("models", f"/projects/{project.id}/models/"),
                       ("model-version", f"/projects/{project.id}/models/{sft.id}/"),
                       ("chat", f"/projects/{project.id}/chat/"), ("base-models", "/base-models/"),
                       ("screen", f"/projects/{project.id}/screen/")):
        walk.check(f"training:{name}", path)

    walk.log_in("nina")
    walk.check("training:chat", f"/projects/{project.id}/chat/")

    assert walk.visited == {(name, who) for name, people in WALKED.items() for who in people}
    assert not walk.problems, "\n".join(walk.problems)
    # Every page names its icon, so no browser asks for /favicon.ico (a 404 on every page before).
    assert walk.icons and all(re.search(r"/static/annotate/favicon[.\w]*\.svg$", icon) for icon in walk.icons), walk.icons
    assert not walk.failed, walk.failed


def test_on_a_phone_the_ranking_bar_stays_a_strip_at_the_bottom(team, new_page):
    """Nine replies all placed, on a 390 x 844 phone: the sticky bar keeps to at most a fifth of
    the screen (it took 40%), sits at the bottom, and the page does not scroll sideways."""
    ranking_items(team["project"], 1, k=9)
    task = lease(team, "ranking")
    page = new_page()
    log_in(page, "nina", PASSWORD)
    page.set_viewport_size(PHONE)
    page.goto(f"/tasks/{task.id}/")
    for key in "12345678":
        page.keyboard.press(key)
    assert page.locator("#rank-status").inner_text() == "9 of 9 placed"
    bar = page.locator("#rank-bar").bounding_box()
    assert bar["height"] <= 0.2 * PHONE["height"], bar
    assert abs(bar["y"] + bar["height"] - PHONE["height"]) < 2, bar  # stuck to the bottom
    assert sideways_px(page) <= 0, too_wide(page)


def test_the_small_things_the_walk_found(team, new_page, tmp_path):
    project, admin, nina = team["project"], team["admin"], team["nina"]
    account_services.invite_create(project=project, role=Role.ANNOTATOR, created_by=admin, note="Omar")
    one_line = tmp_path / "one.jsonl"
    one_line.write_text('{"prompt": "What is 2 + 2?"}\n')
    from annotate.importers import import_run

    with one_line.open("rb") as stream:
        import_run(project=project, format="prompts-jsonl", stream=stream, filename=one_line.name, by=admin)
    # Thirty tasks done; the first leased is the last finished, so it is the newest.
    done = []
    for n in range(30):
        task = lease(team, "prompt")
        queue.task_skip(task=task, annotator=nina)
        done.append(task.id)
    Task.objects.filter(pk=done[0]).update(finished_at=timezone.now() + timedelta(minutes=5))
    prompt = message(project, "What is 6 * 7?")
    # A model's reply cut inside a multi-byte character: byte-level decoding leaves U+FFFD.
    message(project, "It is 42 \ufffd\ufffd, since 6 * 7 = 42.", parent=prompt)

    page = new_page()
    log_in(page, "nina", PASSWORD)
    # History: newest first by the time it shows, 25 a page, older ones a click away.
    page.goto(f"/projects/{project.id}/history/")
    shown = [int(entry.get_attribute("id").removeprefix("task-")) for entry in page.locator(".history-entry").all()]
    assert shown == [done[0], *done[:0:-1]][:25]
    assert "Page 1 of 2" in page.locator(".pager").inner_text()
    click(page, "text=Older")
    page.wait_for_url("**/history/?page=2")
    assert page.locator(".history-entry").count() == 5

    # The prompt task: what the model wrote without the replacement characters, and the lease
    # in local time and minutes, warned about a couple of minutes before it ends.
    page.clock.install()
    task = lease(team, "prompt")
    page.goto(f"/tasks/{task.id}/")
    assert "\ufffd" not in page.locator("main").inner_text()
    assert "It is 42 , since 6 * 7 = 42." in page.locator("ol.conversation").inner_text()
    lease_text = page.locator("#lease").inner_text()
    assert re.search(r"yours until \d\d:\d\d( [AP]M)? \(15 minutes left\)", lease_text), lease_text
    warning = page.locator("#lease-warning")
    assert not warning.is_visible()
    page.clock.fast_forward("13:30")
    assert "ends in 2 minutes" in warning.inner_text()
    page.clock.fast_forward("01:40")
    assert "Your time for this task is over" in warning.inner_text()
    assert "(no time left)" in page.locator("#lease").inner_text()

    # The project page names the open task's kind in words that read.
    page.goto(f"/projects/{project.id}/")
    assert "Your open task: write a prompt." in page.locator(".start-card").inner_text()
    page.context.clear_cookies()

    log_in(page, "ada", PASSWORD)
    page.goto(f"/projects/{project.id}/admin/imports/")
    assert "1 message," in page.locator("table").inner_text() and "1 messages" not in page.locator("main").inner_text()

    page.goto(f"/projects/{project.id}/admin/members/")
    assert page.locator("table th").last.text_content().strip() == "Remove"  # not an empty header
    # Remove asks first: dismissed, nina stays; accepted, she goes.
    questions = []

    def answer(dialog, accept):
        questions.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    remove_nina = "tr:has-text('nina') button:has-text('Remove')"
    page.once("dialog", lambda dialog: answer(dialog, False))
    click(page, remove_nina)
    page.wait_for_timeout(300)
    assert questions == ["Remove nina from Arithmetic helper? Their work stays; you can add them back."]
    assert Membership.objects.get(project=project, user=nina).is_active
    page.once("dialog", lambda dialog: answer(dialog, True))
    with page.expect_navigation():
        click(page, remove_nina)
    assert not Membership.objects.get(project=project, user=nina).is_active

    # An invite link is copied with one click.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    click(page, ".invite-row button:has-text('Copy link')")
    expect(page.locator(".invite-row .copy-state")).to_have_text("Copied.")  # the clipboard answers later
    link = page.locator(".invite-row input[readonly]").input_value()
    assert "/invite/" in link and page.evaluate("navigator.clipboard.readText()") == link
