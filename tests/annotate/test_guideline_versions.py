"""What changed in the guidelines (issue 19, for the lead): every version from the audit history, and the diff
between two, on a page members can read and in the API."""

import pytest

from annotate.services import accounts as account_services
from tests.annotate.test_pages import client_for

pytestmark = pytest.mark.django_db


def test_members_see_every_version_and_what_changed_between_two(api_as, owner, member, outsider, project):
    account_services.project_update_guidelines(project=project, guidelines="Be correct.\nShow the steps.")
    account_services.project_update_guidelines(project=project, guidelines="Be correct.\nShow the steps briefly.\nBe kind.")
    url = f"/api/projects/{project.id}/guidelines/versions/"
    assert api_as(outsider).get(url).status_code == 404
    body = api_as(member).get(url, {"from": 1, "to": 3}).json()
    assert [(v["version"], v["text"]) for v in body["versions"]] == [
        (3, "Be correct.\nShow the steps briefly.\nBe kind."), (2, "Be correct.\nShow the steps."), (1, "Be correct.")]
    assert [(line["kind"], line["text"]) for line in body["diff"]["lines"]] == [
        ("hunk", "@@ -1 +1,3 @@"), ("same", " Be correct."), ("added", "+Show the steps briefly."), ("added", "+Be kind.")]
    assert body["diff"]["changed"] is True and body["versions"][0]["by"] is None  # saved by a service, not a request
    refused = api_as(member).get(url, {"from": 9, "to": 3})
    assert refused.status_code == 400 and refused.json()["from"] == [
        "version 9 of the guidelines is not recorded; there are 1, 2, 3"]
    assert api_as(member).get(url, {"from": "x", "to": 3}).status_code == 400

    page = client_for(member).get(f"/projects/{project.id}/guidelines/").content.decode()  # the last change, by default
    assert "From version 2 to version 3" in page
    assert '<span class="diff-removed"><span class="visually-hidden">removed: </span>-Show the steps.</span>' in page
    assert '<span class="diff-added"><span class="visually-hidden">added: </span>+Be kind.</span>' in page
    assert client_for(member).get(f"/projects/{project.id}/guidelines/?from=7&to=1").status_code == 400
    assert client_for(outsider).get(f"/projects/{project.id}/guidelines/").status_code == 404
    assert "what changed" in client_for(member).get(f"/projects/{project.id}/").content.decode()
