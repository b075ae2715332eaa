"""Log in and out, invites, password change, deactivation and API tokens, as people use them."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotate.services import accounts as account_services
from annotate.models import Invite, Membership, Role

pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery"


def logged_in(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def test_login_page_logs_in_and_lists_my_projects(member, project):
    client = Client()
    assert client.get("/").status_code == 302  # anonymous: sent to the login page
    response = client.post("/login/", {"username": "member", "password": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == "/"
    assert project.name in response.content.decode()


def test_wrong_password_is_refused_with_a_message(member):
    response = Client().post("/login/", {"username": "member", "password": "nope"})
    assert response.status_code == 200
    assert "Wrong username or password" in response.content.decode()


def test_logout_ends_the_session(member):
    client = logged_in(member)
    client.post("/logout/")
    assert client.get("/").status_code == 302


def test_password_change(member):
    client = logged_in(member)
    response = client.post(
        "/password/",
        {"old_password": PASSWORD, "new_password1": "a-new-long-passphrase", "new_password2": "a-new-long-passphrase"},
    )
    assert response.status_code == 302
    assert Client().login(username="member", password="a-new-long-passphrase")
    assert not Client().login(username="member", password=PASSWORD)


def test_invite_link_creates_an_account_in_the_project_with_the_role(owner, project):
    invite = account_services.invite_create(project=project, role=Role.REVIEWER, created_by=owner)
    client = Client()
    page = client.get(f"/invite/{invite.token}/")
    assert "invited as <strong>reviewer</strong>" in page.content.decode()
    response = client.post(
        f"/invite/{invite.token}/", {"username": "newcomer", "password": "a-long-enough-pass"}, follow=True
    )
    assert response.status_code == 200
    newcomer = get_user_model().objects.get(username="newcomer")
    assert Membership.objects.get(project=project, user=newcomer).role == Role.REVIEWER
    assert response.context["user"] == newcomer  # logged in straight away
    # Single use: the same link cannot bring in a second person.
    second = Client().post(f"/invite/{invite.token}/", {"username": "other", "password": "a-long-enough-pass"})
    assert "already been used" in second.content.decode()
    assert not get_user_model().objects.filter(username="other").exists()


def test_invite_with_a_weak_password_creates_nothing(owner, project):
    invite = account_services.invite_create(project=project, role=Role.ANNOTATOR, created_by=owner)
    response = Client().post(f"/invite/{invite.token}/", {"username": "weak", "password": "123"})
    assert response.status_code == 400
    assert "too short" in response.content.decode()
    assert not get_user_model().objects.filter(username="weak").exists()
    invite.refresh_from_db()
    assert invite.accepted_at is None


def test_expired_and_revoked_invites_are_refused(owner, project, outsider):
    expired = account_services.invite_create(project=project, role=Role.ANNOTATOR, created_by=owner)
    Invite.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    revoked = account_services.invite_revoke(invite=account_services.invite_create(project=project, role=Role.ADMIN, created_by=owner))
    client = logged_in(outsider)
    assert "expired" in client.post(f"/invite/{expired.token}/").content.decode()
    assert "revoked" in client.post(f"/invite/{revoked.token}/").content.decode()
    assert not Membership.objects.filter(user=outsider).exists()


def test_an_invite_never_lowers_an_existing_role(owner, project, reviewer):
    invite = account_services.invite_create(project=project, role=Role.ANNOTATOR, created_by=owner)
    account_services.invite_accept(token=invite.token, user=reviewer)
    assert Membership.objects.get(project=project, user=reviewer).role == Role.REVIEWER


def test_token_is_issued_for_a_password_and_revoked(member, project):
    client = APIClient()
    response = client.post("/api/auth/token/", {"username": "member", "password": PASSWORD}, format="json")
    assert response.status_code == 201
    token = response.json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/me/").json()["username"] == "member"
    assert client.delete("/api/auth/token/revoke/").status_code == 204
    assert client.get("/api/me/").status_code == 401
    assert not Token.objects.filter(user=member).exists()


def test_token_for_a_wrong_password_is_refused(member):
    response = APIClient().post("/api/auth/token/", {"username": "member", "password": "x"}, format="json")
    assert response.status_code == 400
    assert "wrong username or password" in response.json()["detail"]


def test_deactivated_account_cannot_log_in_or_use_its_token_or_session(owner, member, api_as):
    member_api = api_as(member)
    member_browser = logged_in(member)
    assert member_api.get("/api/me/").status_code == 200
    assert api_as(member).post(f"/api/users/{owner.pk}/deactivate/").status_code == 403  # not staff
    assert api_as(owner).post(f"/api/users/{member.pk}/deactivate/").status_code == 204
    assert member_api.get("/api/me/").status_code == 401
    assert member_browser.get("/").status_code == 302
    assert not Client().login(username="member", password=PASSWORD)


def test_staff_cannot_deactivate_themselves(owner, api_as):
    response = api_as(owner).post(f"/api/users/{owner.pk}/deactivate/")
    assert response.status_code == 400
    assert "your own account" in str(response.json())


def test_openapi_schema_and_docs_page_are_for_logged_in_users(member):
    assert APIClient().get("/api/schema/").status_code in (401, 403)
    client = logged_in(member)
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/projects/" in schema.content
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content


def test_admin_site_is_for_staff(owner, member):
    assert logged_in(owner).get("/admin/").status_code == 200
    assert logged_in(member).get("/admin/").status_code == 302


def test_openapi_schema_validates_without_warnings_and_documents_token_auth(capsys):
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json", "--file", "/dev/null")
    schema = APIClient()
    schema.force_authenticate(get_user_model().objects.create_user("reader"))
    body = schema.get("/api/schema/?format=json").json()
    assert body["components"]["securitySchemes"]["tokenAuth"]["name"] == "Authorization"
    assert "/api/tasks/{task_id}/submit/" in body["paths"]


def test_an_invite_token_with_a_nul_byte_is_refused_not_a_server_error(api_as, member):
    assert api_as(member).post("/api/invites/a%00b/accept/").status_code == 400
    assert Client().get("/invite/a%00b/").status_code == 404
