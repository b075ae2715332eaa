"""Every project endpoint against its admin, a member of a lower role, and an outsider."""

import pytest

from annotate.models import Membership, Project, Role
from annotate.services import accounts as account_services

pytestmark = pytest.mark.django_db


def test_anonymous_requests_are_refused(project):
    from rest_framework.test import APIClient

    for url in ("/api/projects/", f"/api/projects/{project.id}/", "/api/me/"):
        assert APIClient().get(url).status_code == 401


def test_project_list_shows_only_my_projects(api_as, owner, member, outsider, project):
    assert [p["name"] for p in api_as(member).get("/api/projects/").json()["results"]] == ["Arithmetic"]
    assert api_as(outsider).get("/api/projects/").json()["results"] == []


def test_project_detail(api_as, owner, member, outsider, project):
    url = f"/api/projects/{project.id}/"
    assert api_as(owner).get(url).status_code == 200
    assert api_as(member).get(url).json()["guidelines"] == "Be correct."
    assert api_as(outsider).get(url).status_code == 404  # an outsider may not learn it exists


def test_only_staff_create_projects(api_as, owner, member):
    response = api_as(owner).post("/api/projects/create/", {"name": "Second"}, format="json")
    assert response.status_code == 201
    assert Membership.objects.get(project_id=response.json()["id"], user=owner).role == Role.ADMIN
    assert api_as(member).post("/api/projects/create/", {"name": "Mine"}, format="json").status_code == 403
    assert api_as(owner).post("/api/projects/create/", {"name": " "}, format="json").status_code == 400


def test_guidelines_update_bumps_the_version(api_as, owner, member, outsider, project):
    url = f"/api/projects/{project.id}/guidelines/"
    assert api_as(member).put(url, {"guidelines": "x"}, format="json").status_code == 403
    assert api_as(outsider).put(url, {"guidelines": "x"}, format="json").status_code == 404
    response = api_as(owner).put(url, {"guidelines": "Be correct and brief."}, format="json")
    assert response.json()["guideline_version"] == 2
    project.refresh_from_db()
    assert project.guidelines == "Be correct and brief."


def test_member_list_is_for_admins(api_as, owner, member, outsider, project):
    url = f"/api/projects/{project.id}/members/"
    rows = api_as(owner).get(url).json()["results"]
    assert {(r["username"], r["role"]) for r in rows} == {("owner", "admin"), ("member", "annotator")}
    assert api_as(member).get(url).status_code == 403
    assert api_as(outsider).get(url).status_code == 404


def test_role_change_and_removal(api_as, owner, member, outsider, project):
    url = f"/api/projects/{project.id}/members/{member.id}/"
    assert api_as(member).patch(url, {"role": "admin"}, format="json").status_code == 403
    assert api_as(outsider).patch(url, {"role": "admin"}, format="json").status_code == 404
    assert api_as(owner).patch(url, {"role": "reviewer"}, format="json").json()["role"] == "reviewer"
    bad = api_as(owner).patch(url, {"role": "boss"}, format="json")
    assert bad.status_code == 400 and "role" in bad.json()
    assert api_as(owner).delete(url).status_code == 204
    assert api_as(member).get(f"/api/projects/{project.id}/").status_code == 404
    assert api_as(owner).get(f"/api/projects/{project.id}/members/{outsider.id}/").status_code == 405


def test_the_last_admin_cannot_leave(api_as, owner, project):
    url = f"/api/projects/{project.id}/members/{owner.id}/"
    response = api_as(owner).delete(url)
    assert response.status_code == 400
    assert "at least one admin" in str(response.json())
    assert api_as(owner).patch(url, {"role": "annotator"}, format="json").status_code == 400
    assert Membership.objects.get(project=project, user=owner).role == Role.ADMIN


def test_invites_are_made_by_admins_and_accepted_by_anyone_with_the_link(api_as, owner, member, outsider, project):
    url = f"/api/projects/{project.id}/invites/"
    assert api_as(member).post(url, {"role": "annotator"}, format="json").status_code == 403
    assert api_as(outsider).post(url, {"role": "annotator"}, format="json").status_code == 404
    invite = api_as(owner).post(url, {"role": "reviewer", "note": "for Dana"}, format="json").json()
    assert invite["url"].endswith(f"/invite/{invite['token']}/")
    accepted = api_as(outsider).post(f"/api/invites/{invite['token']}/accept/")
    assert accepted.json()["role"] == "reviewer"
    again = api_as(member).post(f"/api/invites/{invite['token']}/accept/")
    assert again.status_code == 400 and "already been used" in str(again.json())


def test_lists_are_paginated(api_as, owner, project):
    for i in range(3):
        account_services.project_create(name=f"P{i}", created_by=owner)
    page = api_as(owner).get("/api/projects/?limit=2").json()
    assert page["count"] == 4 and len(page["results"]) == 2 and page["next"]


def test_two_admins_editing_guidelines_at_once_get_two_versions(owner, project):
    stale_a, stale_b = Project.objects.get(pk=project.pk), Project.objects.get(pk=project.pk)
    account_services.project_update_guidelines(project=stale_a, guidelines="A")
    account_services.project_update_guidelines(project=stale_b, guidelines="B")
    project.refresh_from_db()
    assert (project.guidelines, project.guideline_version) == ("B", 3)
