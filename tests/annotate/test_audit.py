"""The audit log of admin actions (issue 17, abuse by members): each kind of admin action appears with who
did it and what it changed, newest first and paged; a project's admins read their project's log, site staff
every project's, and nobody else any."""

import pytest
from django.test import Client

from annotate.models import Project, Role
from annotate.services import accounts
from training.models import ModelKind, ModelVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(make_user, project):
    """A project admin who is not site staff."""
    user = make_user("projectadmin")
    accounts.membership_set(project=project, user=user, role=Role.ADMIN)
    return user


def log_of(client, project, **params):
    response = client.get(f"/api/projects/{project.id}/audit/", params)
    assert response.status_code == 200, response.content
    return response.json()


def entries(page, kind, action=None):
    return [entry for entry in page["results"] if entry["kind"] == kind and action in (None, entry["action"])]


def change_of(entry, field):
    found = [change for change in entry["changes"] if change["field"] == field]
    assert found, f"{field} is not among {entry['changes']}"
    return found[0]["before"], found[0]["after"]


def test_each_kind_of_admin_action_is_logged_with_who_did_it(owner, admin, member, project, api_as, settings):
    api = api_as(admin)
    base = f"/api/projects/{project.id}"
    assert api.patch(f"{base}/settings/", {"overlap": 3}, format="json").status_code == 200
    assert api.put(f"{base}/guidelines/", {"guidelines": "Be correct and kind."}, format="json").status_code == 200
    assert api.patch(f"{base}/members/{member.id}/", {"role": "reviewer"}, format="json").status_code == 200
    invite = api.post(f"{base}/invites/", {"role": "annotator", "note": "for carol"}, format="json").json()
    assert api.post(f"{base}/invites/{invite['id']}/revoke/").status_code == 200
    settings.OPENAI_BACKEND_URLS = ["http://models.example.org"]
    version = ModelVersion.objects.create(project=project, kind=ModelKind.POLICY, version=1, folder="elsewhere")
    deployed = api.post(f"{base}/deployments/create/", {
        "model_version_id": version.id, "backend": "openai", "url": "http://models.example.org/v1", "served_model": "tiny",
    }, format="json")
    assert deployed.status_code == 201, deployed.content
    assert api.post(f"{base}/deployments/{deployed.json()['id']}/end/").status_code == 200
    assert api.delete(f"{base}/members/{member.id}/").status_code == 204

    page = log_of(api, project)
    by_admin = [entry for entry in page["results"] if entry["username"] == "projectadmin"]
    assert all(entry["user_id"] == admin.id and entry["project_id"] == project.id for entry in by_admin)

    (settings_changed,) = entries(page, "project settings", "changed")
    assert settings_changed["username"] == "projectadmin"
    assert change_of(settings_changed, "overlap") == (2, 3)

    (guidelines,) = entries(page, "project", "changed")
    assert guidelines["username"] == "projectadmin"
    assert change_of(guidelines, "guidelines") == ("Be correct.", "Be correct and kind.")
    assert change_of(guidelines, "guideline_version") == (1, 2)

    promoted, removed = sorted(
        (entry for entry in entries(page, "membership", "changed") if entry["object_id"] != admin.memberships.get().id),
        key=lambda entry: entry["at"],
    )
    assert promoted["username"] == removed["username"] == "projectadmin"
    assert change_of(promoted, "role") == ("annotator", "reviewer")
    assert change_of(removed, "is_active") == (True, False)

    (invite_made,) = entries(page, "invite", "created")
    assert invite_made["username"] == "projectadmin" and invite_made["object_id"] == invite["id"]
    assert change_of(invite_made, "note") == (None, "for carol")
    assert change_of(invite_made, "created_by") == (None, "projectadmin")  # users by name
    assert all(change["field"] != "token" for change in invite_made["changes"])  # the link is not in the log
    assert invite["token"] not in str(page)
    (invite_revoked,) = entries(page, "invite", "changed")
    assert invite_revoked["username"] == "projectadmin" and change_of(invite_revoked, "revoked_at")[0] is None

    (deployment_made,) = entries(page, "deployment", "created")
    assert deployment_made["username"] == "projectadmin"
    assert change_of(deployment_made, "url") == (None, "http://models.example.org/v1")
    (deployment_ended,) = entries(page, "deployment", "changed")
    assert change_of(deployment_ended, "is_active") == (True, False)

    # Made by a service outside any request (the fixtures, as a command would): its caller is still named.
    (created,) = entries(page, "project", "created")
    assert created["username"] == "owner" and change_of(created, "name") == (None, "Arithmetic")
    joined = {change_of(entry, "user")[1]: entry["username"] for entry in entries(page, "membership", "created")}
    # The fixtures add the other members by membership_set, which is told of nobody: no one is named.
    assert joined == {"owner": "owner", "projectadmin": None, "member": None}

    # Newest first: the last thing done leads.
    assert page["results"][0]["kind"] == "membership" and change_of(page["results"][0], "is_active") == (True, False)
    times = [entry["at"] for entry in page["results"]]
    assert times == sorted(times, reverse=True)


def test_the_log_is_paged(owner, admin, project, api_as):
    api = api_as(admin)
    for overlap in (3, 4, 5):
        api.patch(f"/api/projects/{project.id}/settings/", {"overlap": overlap}, format="json")
    whole = log_of(api, project)
    first = log_of(api, project, limit=2)
    assert first["count"] == whole["count"] == len(whole["results"])
    assert first["results"] == whole["results"][:2] and first["next"]
    second = log_of(api, project, limit=2, offset=2)
    assert second["results"] == whole["results"][2:4]
    assert change_of(whole["results"][0], "overlap") == (4, 5)
    assert api.get(f"/api/projects/{project.id}/audit/", {"limit": "9223372036854775808"}).status_code == 400


def test_a_project_deleted_in_django_admin_is_in_the_staff_log_with_who_deleted_it(owner, admin, member, project,
                                                                                   api_as):
    owner.is_superuser = True
    owner.save()
    browser = Client()
    browser.force_login(owner)
    response = browser.post(f"/admin/annotate/project/{project.id}/delete/", {"post": "yes"})
    assert response.status_code == 302 and not Project.objects.filter(pk=project.id).exists()

    assert api_as(admin).get(f"/api/projects/{project.id}/audit/").status_code == 404
    page = api_as(owner).get("/api/audit/", {"project": project.id}).json()
    deleted = [entry for entry in page["results"] if entry["action"] == "deleted"]
    assert {entry["kind"] for entry in deleted} == {"project", "membership", "project settings", "screen settings"}
    assert {entry["username"] for entry in deleted} == {"owner"}
    (gone,) = [entry for entry in deleted if entry["kind"] == "project"]
    assert change_of(gone, "name") == ("Arithmetic", None)
    assert {entry["username"] for entry in entries(page, "membership", "deleted")} == {"owner"}
    assert len(entries(page, "membership", "deleted")) == 3  # owner, admin and member


def test_who_may_read_the_log(owner, admin, member, reviewer, outsider, project, make_user, api_as):
    other = accounts.project_create(name="Other", created_by=owner)
    url = f"/api/projects/{project.id}/audit/"
    assert api_as(admin).get(url).status_code == 200
    assert api_as(member).get(url).status_code == 403
    assert api_as(reviewer).get(url).status_code == 403
    assert api_as(outsider).get(url).status_code == 404
    assert api_as(None).get(url).status_code == 401
    # Every project's log is site staff's alone; a project admin's page holds only their project.
    assert {entry["project_id"] for entry in log_of(api_as(admin), project)["results"]} == {project.id}
    for who in (admin, member, outsider):
        assert api_as(who).get("/api/audit/").status_code == 403
    staff_not_member = make_user("staffer", staff=True)
    everything = api_as(staff_not_member).get("/api/audit/").json()
    assert {entry["project_id"] for entry in everything["results"]} == {project.id, other.id}
    only_other = api_as(staff_not_member).get("/api/audit/", {"project": other.id}).json()
    assert only_other["count"] > 0 and {entry["project_id"] for entry in only_other["results"]} == {other.id}
    assert api_as(staff_not_member).get("/api/audit/", {"project": "x"}).status_code == 400
