"""Invites die with their creator's role, are listed and revoked by admins, and expire; a password
change ends what the old password opened."""

from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotate.models import Invite, Membership, Role
from annotate.services import accounts as account_services

pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery"


@pytest.fixture
def second_admin(make_user, project):
    user = make_user("second")
    account_services.membership_set(project=project, user=user, role=Role.ADMIN)
    return user


def test_an_admin_removed_from_the_project_cannot_rejoin_with_a_link_they_made(
    owner, project, second_admin, outsider, api_as
):
    made = api_as(second_admin).post(f"/api/projects/{project.id}/invites/", {"role": "admin"}, format="json").json()
    for_someone = api_as(second_admin).post(f"/api/projects/{project.id}/invites/", {}, format="json").json()
    assert api_as(owner).delete(f"/api/projects/{project.id}/members/{second_admin.id}/").status_code == 204
    refused = api_as(second_admin).post(f"/api/invites/{made['token']}/accept/")
    assert refused.status_code == 400 and "no longer an admin" in refused.json()["token"][0]
    assert not Membership.objects.get(project=project, user=second_admin).is_active
    # Nor does anyone else get in through their links; the page says why.
    page = Client()
    page.force_login(outsider)
    assert "no longer an admin" in page.get(f"/invite/{for_someone['token']}/").content.decode()
    assert page.post(f"/invite/{for_someone['token']}/").status_code == 200
    assert not Membership.objects.filter(user=outsider).exists()
    # Demoted rather than removed: the same.
    mine = account_services.invite_create(project=project, role=Role.ANNOTATOR, created_by=owner)
    account_services.membership_set(project=project, user=second_admin, role=Role.ADMIN)
    account_services.membership_set(project=project, user=owner, role=Role.REVIEWER)
    assert "no longer an admin" in account_services.invite_problem(mine)


def test_admins_list_and_revoke_invites_through_the_api_and_others_cannot(
    owner, project, member, outsider, api_as
):
    first = api_as(owner).post(f"/api/projects/{project.id}/invites/", {"note": "for bo"}, format="json").json()
    second = api_as(owner).post(f"/api/projects/{project.id}/invites/", {"role": "reviewer"}, format="json").json()
    listing = f"/api/projects/{project.id}/invites/open/"
    page = api_as(owner).get(listing).json()
    assert page["count"] == 2
    assert [(i["id"], i["created_by"]) for i in page["results"]] == [(second["id"], "owner"), (first["id"], "owner")]
    revoke = f"/api/projects/{project.id}/invites/{first['id']}/revoke/"
    assert api_as(member).get(listing).status_code == 403
    assert api_as(member).post(revoke).status_code == 403
    assert api_as(outsider).get(listing).status_code == 404
    assert api_as(outsider).post(revoke).status_code == 404
    assert api_as(owner).post(revoke).status_code == 200
    assert [i["id"] for i in api_as(owner).get(listing).json()["results"]] == [second["id"]]
    accepted = api_as(outsider).post(f"/api/invites/{first['token']}/accept/")
    assert accepted.status_code == 400 and "revoked" in accepted.json()["token"][0]


def test_the_members_page_lists_open_invites_with_their_maker_and_revokes_them(owner, project):
    invite = account_services.invite_create(project=project, role=Role.REVIEWER, created_by=owner, note="for cy")
    client = Client()
    client.force_login(owner)
    page = client.get(f"/projects/{project.id}/admin/members/").content.decode()
    assert f"/invite/{invite.token}/" in page and "by owner" in page
    client.post(f"/projects/{project.id}/admin/members/revoke/", {"invite_id": invite.id})
    assert f"/invite/{invite.token}/" not in client.get(f"/projects/{project.id}/admin/members/").content.decode()


def test_invites_expire_after_invite_days(owner, project, api_as, settings):
    made = api_as(owner).post(f"/api/projects/{project.id}/invites/", {}, format="json").json()
    invite = Invite.objects.get(pk=made["id"])
    assert abs(invite.expires_at - (timezone.now() + timedelta(days=7))) < timedelta(minutes=1)
    settings.INVITE_DAYS = 2
    shorter = account_services.invite_create(project=project, role=Role.ANNOTATOR, created_by=owner)
    assert abs(shorter.expires_at - (timezone.now() + timedelta(days=2))) < timedelta(minutes=1)
    Invite.objects.filter(pk=invite.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert [i["id"] for i in api_as(owner).get(f"/api/projects/{project.id}/invites/open/").json()["results"]] == [
        shorter.id
    ]


def test_a_password_change_ends_other_sessions_and_revokes_api_tokens(member):
    elsewhere = Client()
    elsewhere.force_login(member)
    script = APIClient()
    token = script.post("/api/auth/token/", {"username": "member", "password": PASSWORD}, format="json").json()["token"]
    script.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    here = Client()
    here.force_login(member)
    new = "a-new-long-passphrase"
    response = here.post("/password/", {"old_password": PASSWORD, "new_password1": new, "new_password2": new})
    assert response.status_code == 302
    assert here.get("/").status_code == 200  # the session that changed it goes on
    assert elsewhere.get("/").status_code == 302
    assert script.get("/api/me/").status_code == 401
    assert not Token.objects.filter(user=member).exists()
    assert Session.objects.count() == 1
