"""The pages without a browser: who may open what, what a form post writes, what it refuses.

The browser tests (tests/browser/) drive the same pages through Chromium as a person would.
"""

import json

import pytest
from django.test import Client

from annotate.markdown import render_markdown
from annotate.models import ImportBatch, ImportJob, Label, Message, Ranking, Review, Role, Task, TaskState
from annotate.services import accounts as account_services
from annotate.services import imports, tree
from tests.annotate.factories import ranking_items

pytestmark = pytest.mark.django_db


FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures"


def client_for(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def only(project, **mix):
    weights = {kind: 0 for kind in ("prompt", "demonstration", "ranking", "compare", "label", "review")}
    weights.update(mix)
    account_services.project_settings_update(project=project, task_mix=weights)


def start(client, project, kind=None) -> Task:
    response = client.post(f"/projects/{project.id}/work/", {"kind": kind} if kind else {})
    assert response.status_code == 302, response.content
    assert response.url.startswith("/tasks/"), response.url
    return Task.objects.get(pk=int(response.url.strip("/").split("/")[1]))


def submit(client, task, **fields):
    return client.post(f"/tasks/{task.id}/submit/", {"submit_key": f"key-{task.id}", **fields})


# ---------------------------------------------------------------------------------------------
# Who may open what


def test_anonymous_visitors_are_sent_to_the_login(project):
    for url in ("/", f"/projects/{project.id}/", f"/projects/{project.id}/admin/", f"/projects/{project.id}/exports/"):
        response = Client().get(url)
        assert response.status_code == 302 and response.url.startswith("/login/"), url


@pytest.mark.parametrize(
    "path, role",
    [
        ("", Role.ANNOTATOR),
        ("history/", Role.ANNOTATOR),
        ("admin/progress/", Role.REVIEWER),
        ("admin/progress/agreement.svg", Role.REVIEWER),
        ("admin/progress/items.svg", Role.ADMIN),
        ("admin/progress/throughput.svg", Role.ADMIN),
        ("admin/", Role.ADMIN),
        ("admin/members/", Role.ADMIN),
        ("admin/imports/", Role.ADMIN),
        ("admin/flagged/", Role.ADMIN),
        ("exports/", Role.ADMIN),
    ],
)
def test_each_page_against_admin_member_reviewer_and_outsider(owner, member, reviewer, outsider, project, path, role):
    url = f"/projects/{project.id}/{path}"
    assert client_for(owner).get(url).status_code == 200
    assert client_for(outsider).get(url).status_code == 404  # may not learn the project exists
    assert client_for(member).get(url).status_code == (200 if role == Role.ANNOTATOR else 403)
    assert client_for(reviewer).get(url).status_code == (403 if role == Role.ADMIN else 200)


def test_plots_are_svg_drawn_from_the_figures(owner, member, project):
    only(project, ranking=1)
    ranking_items(project, 2)
    start(client_for(member), project)
    response = client_for(owner).get(f"/projects/{project.id}/admin/progress/items.svg")
    assert response["Content-Type"] == "image/svg+xml"
    assert response.content.startswith(b"<?xml") and b"<svg" in response.content
    assert "default-src 'none'" in response["Content-Security-Policy"]
    assert client_for(owner).get(f"/projects/{project.id}/admin/progress/secrets.svg").status_code == 404


def test_a_task_page_is_only_for_its_annotator(member, outsider, make_user, project):
    other = make_user("other")
    account_services.membership_set(project=project, user=other, role=Role.ANNOTATOR)
    task = start(client_for(member), project, "prompt")
    assert client_for(member).get(f"/tasks/{task.id}/").status_code == 200
    assert client_for(other).get(f"/tasks/{task.id}/").status_code == 404
    assert client_for(outsider).get(f"/tasks/{task.id}/").status_code == 404
    assert submit(client_for(other), task, text="mine now").status_code == 404
    assert client_for(other).post(f"/tasks/{task.id}/skip/").status_code == 404
    assert not Message.objects.exists()


# ---------------------------------------------------------------------------------------------
# Working through the pages


def test_submit_writes_the_work_and_shows_the_next_task(member, project):
    only(project, prompt=1)
    client = client_for(member)
    task = start(client, project)
    page = client.get(f"/tasks/{task.id}/").content.decode()
    assert 'name="submit_key"' in page and "Start a new conversation" in page
    response = submit(client, task, text="What is 7 * 6?")
    assert response.status_code == 302 and response.url.startswith("/tasks/")
    assert response.url != f"/tasks/{task.id}/"  # the next task, at once
    assert Message.objects.get().text == "What is 7 * 6?"
    # The same form sent twice (a double click) writes once.
    assert submit(client, task, text="What is 7 * 6?").status_code == 302
    assert Message.objects.count() == 1
    assert client.session.get("drafts_done") == [task.id, task.id]


def test_a_refused_submit_shows_the_page_again_with_the_reason_and_the_text(member, project):
    only(project, prompt=1)
    client = client_for(member)
    task = start(client, project)
    response = submit(client, task, text="   ")
    assert response.status_code == 400
    assert b"The message is empty" in response.content
    assert Task.objects.get(pk=task.id).state == TaskState.LEASED


def test_a_submit_after_the_lease_ran_out_keeps_the_text_to_copy(member, project):
    from datetime import timedelta

    from django.utils import timezone

    only(project, prompt=1)
    client = client_for(member)
    task = start(client, project)
    Task.objects.filter(pk=task.id).update(lease_expires_at=timezone.now() - timedelta(hours=1))
    response = submit(client, task, text="A prompt I typed for a long time")
    assert response.status_code == 409
    page = response.content.decode()
    assert "Your time for this task ran out" in page and "A prompt I typed for a long time" in page
    assert not Message.objects.exists()
    # Opened again later, the page says what became of it; a submitted task drops its draft.
    assert b"ran out" in client.get(f"/tasks/{task.id}/").content
    Task.objects.filter(pk=task.id).update(state=TaskState.SUBMITTED)
    assert f'data-drafts-done="{task.id}"' in client.get(f"/tasks/{task.id}/").content.decode()


def test_ranking_through_the_form(member, project):
    only(project, ranking=1)
    (candidate_set,) = ranking_items(project, 1)
    client = client_for(member)
    task = start(client, project)
    ids = candidate_set.message_ids
    assert submit(client, task, tiers="not json").status_code == 400
    assert submit(client, task, tiers=json.dumps([[ids[0]], [ids[1]]])).status_code == 400  # not all placed
    tiers = [[ids[2]], [ids[0], ids[3]], [ids[1]]]
    response = submit(client, task, tiers=json.dumps(tiers))
    assert response.status_code == 302
    assert Ranking.objects.get().tiers == tiers


def test_compare_label_and_review_through_the_form(member, reviewer, make_user, project):
    from annotate.models import CandidateSetKind

    account_services.project_settings_update(project=project, overlap=1)
    only(project, compare=1)
    (pair,) = ranking_items(project, 1, k=2, kind=CandidateSetKind.COMPARE)
    client = client_for(member)
    task = start(client, project)
    assert submit(client, task).status_code == 400
    assert submit(client, task, choice="both_bad").status_code == 302
    assert Ranking.objects.get(candidate_set=pair).all_bad

    only(project, label=1, demonstration=1, review=1)
    writer = make_user("writer")
    account_services.membership_set(project=project, user=writer, role=Role.ANNOTATOR)
    prompt = tree.message_create(project=project, parent=None, role="user", text="What is 0 * 9?", source="import")
    writing = client_for(writer)
    demo_task = start(writing, project, "demonstration")
    assert submit(writing, demo_task, text="Both are wrong; it is 0.").status_code == 302
    demonstration = Message.objects.get(author=writer)
    assert demonstration.parent == prompt

    assert client.post(f"/projects/{project.id}/work/", {"kind": "review"}).status_code == 403
    reviewing = client_for(reviewer)
    review_task = start(reviewing, project, "review")
    assert submit(reviewing, review_task, decision="reject").status_code == 400  # needs a reason
    assert submit(reviewing, review_task, decision="accept", comment="Right.").status_code == 302
    review = Review.objects.get()
    assert (review.accepted, review.comment) == (True, "Right.")

    label_task = start(client, project, "label")
    assert submit(client, label_task, quality="", flags=[]).status_code == 400
    assert submit(client, label_task, quality="4", flags=["spam"]).status_code == 302
    label = Label.objects.get(annotator=member)
    assert (label.quality, label.flags) == (4, ["spam"])
    assert Message.objects.get(pk=demonstration.pk).excluded


def test_a_reply_is_flagged_from_the_task_page(member, outsider, project):
    (candidate_set,) = ranking_items(project, 1, k=2)
    reply_id = candidate_set.message_ids[0]
    url = f"/projects/{project.id}/messages/{reply_id}/flag/"
    assert client_for(outsider).post(url, {"flags": ["toxic"]}).status_code == 404
    response = client_for(member).post(url, {"flags": ["toxic"], "next": "https://elsewhere.example/"})
    assert response.status_code == 302 and response.url == f"/projects/{project.id}/"  # never off the site
    assert Message.objects.get(pk=reply_id).excluded
    assert client_for(member).post(url, {"next": "/tasks/1/"}).url == "/tasks/1/"  # nothing ticked: told so


def test_history_shows_what_reviewers_said(member, reviewer, project):
    only(project, prompt=1)
    client = client_for(member)
    task = start(client, project)
    submit(client, task, text="Tell me about **owls**")
    page = client.get(f"/projects/{project.id}/history/").content.decode()
    assert "<strong>owls</strong>" in page and "Write a prompt" in page


def test_when_nothing_waits_the_annotator_is_told_so(member, project):
    only(project, ranking=1)
    response = client_for(member).post(f"/projects/{project.id}/work/", follow=True)
    assert b"No more tasks are waiting for you right now" in response.content


# ---------------------------------------------------------------------------------------------
# Admin pages


def test_staff_create_projects_from_the_home_page(owner, member):
    assert b"New project" in client_for(owner).get("/").content
    assert b"New project" not in client_for(member).get("/").content
    response = client_for(owner).post("/projects/new/", {"name": "Poems", "description": "Short ones"})
    assert response.status_code == 302 and response.url.endswith("/admin/")
    assert client_for(member).post("/projects/new/", {"name": "Mine"}).status_code == 403
    assert client_for(owner).post("/projects/new/", {"name": ""}).status_code == 400


def test_settings_page_changes_the_queue_and_the_guidelines(owner, project):
    client = client_for(owner)
    url = f"/projects/{project.id}/admin/"
    form = {
        "form": "settings", "replies_per_ranking": 3, "overlap": 2, "demonstrations_per_prompt": 1, "max_depth": 2,
        "lease_minutes": 10, "flag_threshold": 1, "correction_minutes": 60, "rubrics": "",
        **{f"mix_{kind}": 1 for kind in ("prompt", "demonstration", "ranking", "compare", "label", "review")},
        "mix_edit": 0,
    }
    assert client.post(url, {**form, "replies_per_ranking": 12}).status_code == 400
    assert client.post(url, {**form, **{f"mix_{k}": 0 for k in ("prompt", "demonstration", "ranking", "compare", "label", "review")}}).status_code == 400
    assert b"a `key` of lowercase letters" in client.post(url, {**form, "rubrics": "Helpful! | x"}).content
    assert client.post(url, {**form, "mix_review": 0, "correction_minutes": 5,
                             "rubrics": "helpful | Helpful | does it answer\n\nhonest | Honest"}).status_code == 302
    project.settings.refresh_from_db()
    assert project.settings.correction_minutes == 5 and project.settings.rubrics == [
        {"key": "helpful", "label": "Helpful", "help": "does it answer"}, {"key": "honest", "label": "Honest", "help": ""}]
    assert b"helpful | Helpful | does it answer\nhonest | Honest" in client.get(url).content
    assert (project.settings.replies_per_ranking, project.settings.lease_seconds, project.settings.weights()["review"]) == (3, 600, 0)
    assert client.post(url, {"form": "guidelines", "guidelines": "Be kind."}).status_code == 302
    project.refresh_from_db()
    assert (project.guidelines, project.guideline_version) == ("Be kind.", 2)


def test_members_page_changes_roles_invites_and_removes(owner, member, project):
    client = client_for(owner)
    url = f"/projects/{project.id}/admin/members/"
    assert client.post(url, {"action": "role", "user_id": member.id, "role": "reviewer"}).status_code == 302
    assert project.memberships.get(user=member).role == "reviewer"
    assert client.post(url, {"action": "role", "user_id": owner.id, "role": "annotator"}).status_code == 400  # last admin
    assert client.post(url, {"action": "role", "user_id": "x", "role": "annotator"}).status_code == 404
    response = client.post(url, {"action": "invite", "role": "annotator", "note": "Ann", "days": 3}, follow=True)
    assert b"/invite/" in response.content
    invite = project.invites.get()
    assert client.post(url, {"action": "revoke", "invite_id": invite.id}).status_code == 302
    assert client.post(url, {"action": "remove", "user_id": member.id}).status_code == 302
    assert not project.memberships.get(user=member).is_active


def test_import_page_queues_a_job_and_shows_its_end_or_the_bad_line(owner, project):
    client = client_for(owner)
    url = f"/projects/{project.id}/admin/imports/"

    def upload(name, **fields):
        with open(FIXTURES / name, "rb") as handle:
            response = client.post(url, {"format": "prompts-jsonl", "file": handle, **fields}, follow=True)
        assert b"is queued for import" in response.content and b"waiting for a worker" in response.content
        assert b'data-waiting="1"' in response.content  # the page polls while it waits
        imports.import_execute(job_id=ImportJob.objects.first().id)
        return client.get(url)

    page = upload("prompts-bad-json.jsonl").content.decode()
    assert "prompts-bad-json.jsonl was not imported: line 3." in page and 'id="import-error"' in page
    assert not Message.objects.exists() and 'data-waiting=""' in page
    page = upload("prompts.jsonl", trusted="on", license="cc-by-4.0").content.decode()
    assert "imported: 3 messages" in page
    batch = ImportBatch.objects.get()
    assert (batch.imported_by, batch.trusted, batch.license) == (owner, True, "cc-by-4.0") and Message.objects.exists()
    assert "<td>yes</td><td>cc-by-4.0</td>" in page
    # A licence that is no licence id is refused by the form, before anything is stored.
    with open(FIXTURES / "prompts.csv", "rb") as handle:
        response = client.post(url, {"format": "prompts-csv", "file": handle, "license": "CC BY 4.0"})
    assert response.status_code == 400 and b"is not a licence id" in response.content
    assert ImportJob.objects.count() == 2


def test_flagged_page_lists_and_clears(owner, member, project):
    only(project, label=1)
    account_services.project_settings_update(project=project, overlap=1)
    (candidate_set,) = ranking_items(project, 1, k=2)
    reply = Message.objects.get(pk=candidate_set.message_ids[0])
    from annotate.services import submits

    submits.label_submit(message=reply, annotator=member, flags=["toxic"])
    page = client_for(owner).get(f"/projects/{project.id}/admin/flagged/").content.decode()
    assert reply.text in page
    client_for(owner).post(f"/projects/{project.id}/admin/flagged/", {"message_id": reply.id})
    reply.refresh_from_db()
    assert not reply.excluded


# ---------------------------------------------------------------------------------------------
# Markdown


@pytest.mark.parametrize(
    "text",
    [
        "<script>window.__x=1</script>",
        '<img src=x onerror="window.__x=2">',
        "<svg onload=window.__x=4>",
        "[a](javascript:window.__x=3)",
        "[b](&#106;avascript:window.__x=5)",
        "[c](JaVaScRiPt:alert(1))",
        "[d](data:text/html,<script>alert(1)</script>)",
        "[e](vbscript:msgbox(1))",
        '<a href="javascript:alert(1)">f</a>',
        "![g](javascript:alert(1))",
        "[h](/logout/)",
        "<iframe src=https://example.org></iframe>",
    ],
)
def test_markdown_never_lets_markup_or_script_links_through(text):
    tags = elements(render_markdown(text))
    assert {tag for tag, _ in tags} <= {"p", "a"}
    for _tag, attributes in tags:
        assert not any(name.startswith("on") for name in attributes)
        href = attributes.get("href")
        assert href is None or href.split(":", 1)[0] in ("http", "https", "mailto")


def elements(html: str) -> list[tuple[str, dict]]:
    """Return every element the HTML really makes (escaped text makes none), with its attributes."""
    from html.parser import HTMLParser

    found = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, dict(attrs)))

    Collector().feed(html)
    return found


def test_markdown_keeps_what_annotators_use():
    html = render_markdown("**bold**, `code`, [docs](https://example.org/a?b=1)\n\n- one\n- two\n\n```\nx = 1\n```")
    assert "<strong>bold</strong>" in html and "<code>code</code>" in html and "<li>one</li>" in html
    assert '<a href="https://example.org/a?b=1" target="_blank" rel="noopener noreferrer nofollow">docs</a>' in html
    assert "<pre><code>x = 1\n</code></pre>" in html


def test_the_sanitiser_alone_drops_what_markdown_might_let_through():
    from annotate.markdown import _cleaner

    cleaned = _cleaner().clean('<a href="javascript:alert(1)" onclick="x()">a</a><img src=x onerror=y><script>z</script>')
    assert "javascript" not in cleaned and "onclick" not in cleaned and "<img" not in cleaned and "z" not in cleaned


def test_continue_your_task_keeps_the_kind_the_annotator_chose(project, member):
    only(project, prompt=1, label=1)
    client = client_for(member)
    task = start(client, project, kind="prompt")
    page = client.get(f"/projects/{project.id}/").content.decode()
    assert "Continue your task" in page and '<input type="hidden" name="kind" value="prompt">' in page
    # Continue: the same task, and the choice stays (the main button sends it again).
    assert start(client, project, kind="prompt") == task
    assert client.session["work_kind"][str(project.id)] == "prompt"
