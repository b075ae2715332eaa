"""The content screen's findings on the Flagged and Progress pages, and its findings API: who may see and clear."""

import pytest
from django.test import Client

from annotate.models import Message, ScreenFinding
from annotate.screen.detectors import Span
from annotate.services import screening, tree

pytestmark = pytest.mark.django_db

XSS = "<script>alert(1)</script>"


def page_as(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def screened(project, member):
    """A held prompt whose word span holds an XSS payload, a prompt with an email that only redacts, a chat reply
    the screen stopped."""
    screening.screen_configure(project=project, enabled=True, words=[XSS])
    held = tree.message_create(project=project, parent=None, role="user", text=f"say {XSS} now", source="annotator")
    redacted = tree.message_create(project=project, parent=None, role="user", text="Mail ann@example.com please",
                                   source="annotator")
    stopped = screening.Verdict([Span("word", 0, 4, "wordlist")], ["block"])
    screening.findings_save(screening.findings_rows(project=project, verdict=stopped, where="chat", text="darn it",
                                                    user=member))
    return held, redacted


def test_flagged_page_shows_findings_with_spans_marked_and_escaped_and_clear_includes_the_message(project, owner, screened):
    held, redacted = screened
    held.refresh_from_db()
    assert held.excluded
    page = page_as(owner).get(f"/projects/{project.id}/admin/flagged/").content.decode()
    # The payload inside the span is escaped, then marked; it never reaches the page as markup.
    assert XSS not in page
    assert '<mark class="screen-span" title="word">&lt;script&gt;alert(1)&lt;/script&gt;</mark>' in page
    assert '<mark class="screen-span" title="email">ann@example.com</mark>' in page
    assert "Chat reply to" in page and '<mark class="screen-span" title="word">darn</mark> it' in page
    progress = page_as(owner).get(f"/projects/{project.id}/admin/progress/").content.decode()
    assert "Content screen findings" in progress and "wordlist" in progress
    # Clear the held message: its findings clear and it counts in exports again; clear the email finding alone.
    page_as(owner).post(f"/projects/{project.id}/admin/flagged/", {"message_id": held.id})
    held.refresh_from_db()
    assert not held.excluded and not ScreenFinding.objects.filter(message=held, cleared_at__isnull=True).exists()
    email = ScreenFinding.objects.get(message=redacted)
    page_as(owner).post(f"/projects/{project.id}/admin/flagged/", {"finding_id": email.id})
    email.refresh_from_db()
    assert email.cleared_at is not None and email.cleared_by == owner
    screening.screen_backfill(project=project)
    assert not Message.objects.get(pk=held.pk).excluded  # cleared stays cleared


def test_findings_api_lists_and_clears_for_admins_only(project, owner, member, outsider, api_as, screened):
    url = f"/api/projects/{project.id}/screen/findings/"
    listed = api_as(owner).get(url, {"live": "true"}).json()
    assert listed["count"] == 3 and {row["kind"] for row in listed["results"]} == {"word", "email"}
    emails = api_as(owner).get(url, {"kind": "email"}).json()["results"]
    assert [row["found"] for row in emails] == ["ann@example.com"]
    assert api_as(owner).get(url, {"kind": "shoe size"}).status_code == 400
    assert api_as(member).get(url).status_code == 403
    assert api_as(outsider).get(url).status_code in (403, 404)
    fid = emails[0]["id"]
    assert api_as(member).post(f"{url}{fid}/clear/").status_code == 403
    assert api_as(outsider).post(f"{url}{fid}/clear/").status_code in (403, 404)
    assert ScreenFinding.objects.get(pk=fid).cleared_at is None
    cleared = api_as(owner).post(f"{url}{fid}/clear/")
    assert cleared.status_code == 200 and cleared.json()["cleared_by_id"] == owner.id
    assert api_as(owner).get(url, {"live": "false"}).json()["count"] == 1
