"""Issue 17's holes of credentials and member abuse: every way a password changes ends what the old one
opened (API tokens, other sessions), and the models page's generation is rate limited like the API's."""

import getpass

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.core.management import call_command
from django.test import Client
from rest_framework.authtoken.models import Token

from annotate.models import Role
from annotate.services import accounts
from training.models import Deployment, GenerationJob, ModelKind, ModelVersion

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "a-brand-new-passphrase"


def change_on_the_password_page(user, staff):
    client = Client()
    client.force_login(user)
    response = client.post("/password/", {"old_password": "correct-horse-battery", "new_password1": NEW_PASSWORD,
                                          "new_password2": NEW_PASSWORD})
    assert response.status_code == 302


def change_in_django_admin(user, staff):
    staff.is_superuser = True  # Django admin's password form wants the change permission on users
    staff.save()
    client = Client()
    client.force_login(staff)
    response = client.post(f"/admin/auth/user/{user.pk}/password/",
                           {"usable_password": "true", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert response.status_code == 302, response.content.decode()[:2000]


def change_with_changepassword(user, staff, monkeypatch):
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": NEW_PASSWORD)
    call_command("changepassword", user.username)


def change_with_createadmin(user, staff):
    call_command("createadmin", "--username", user.username, "--password", NEW_PASSWORD)


PATHS = {
    "password page": change_on_the_password_page,
    "django admin": change_in_django_admin,
    "manage.py changepassword": change_with_changepassword,
    "manage.py createadmin": change_with_createadmin,
}


@pytest.mark.parametrize("path", PATHS)
def test_every_password_change_revokes_api_tokens_and_ends_other_sessions(path, member, owner, api_as, monkeypatch):
    api = api_as(member)
    assert api.get("/api/me/").status_code == 200
    browser = Client()
    browser.force_login(member)
    assert browser.get("/").status_code == 200
    outsider_api = api_as(owner)  # someone else's token is none of this change's business

    change = PATHS[path]
    if path == "manage.py changepassword":
        change(member, owner, monkeypatch)
    else:
        change(member, owner)

    member = get_user_model().objects.get(pk=member.pk)
    assert member.check_password(NEW_PASSWORD)
    assert not Token.objects.filter(user=member).exists()
    assert api.get("/api/me/").status_code == 401
    assert browser.get("/").status_code == 302  # sent to the login page
    assert outsider_api.get("/api/me/").status_code == 200
    # The new password gets a new token that works.
    fresh = Client().post("/api/auth/token/", {"username": "member", "password": NEW_PASSWORD},
                          content_type="application/json")
    assert fresh.status_code == 201 and fresh.json()["token"] != ""


# ---------------------------------------------------------------------------------------------
# Generation from the models page: the API's per-user rate, one count for both


@pytest.fixture
def deployed(owner, project):
    version = ModelVersion.objects.create(project=project, kind=ModelKind.POLICY, version=1, folder="served-elsewhere")
    Deployment.objects.create(project=project, model_version=version, backend="openai", url="http://models.invalid",
                              served_model="tiny", deployed_by=owner)
    caches["throttles"].clear()
    return version


def test_generation_from_the_models_page_is_rate_limited_per_user_with_the_api(owner, make_user, project, deployed,
                                                                               api_as, settings):
    settings.GENERATION_THROTTLE_RATE = "2/hour"
    page = Client()
    page.force_login(owner)
    url = f"/projects/{project.id}/models/generate/"
    assert page.post(url, {"max_prompts": "5"}).status_code == 302
    assert api_as(owner).post(f"/api/projects/{project.id}/generation/create/", {"max_prompts": 5},
                              format="json").status_code == 202
    refused = page.post(url, {"max_prompts": "5"})
    assert refused.status_code == 429
    assert 60 < int(refused["Retry-After"]) <= 3600
    assert "Too many generation jobs (2/hour per user)" in refused.content.decode()
    retry = page.post(f"/projects/{project.id}/models/retry/",
                      {"job_id": str(GenerationJob.objects.first().pk)})
    assert retry.status_code == 429
    assert GenerationJob.objects.count() == 2

    # Another admin has a count of their own.
    other = make_user("otheradmin")
    accounts.membership_set(project=project, user=other, role=Role.ADMIN)
    page.force_login(other)
    assert page.post(url, {"max_prompts": "5"}).status_code == 302
    assert GenerationJob.objects.count() == 3


def test_an_outsider_posting_generation_is_not_found_not_throttled(outsider, project, deployed, settings):
    settings.GENERATION_THROTTLE_RATE = "1/hour"
    page = Client()
    page.force_login(outsider)
    assert [page.post(f"/projects/{project.id}/models/generate/").status_code for _ in range(2)] == [404, 404]
    assert GenerationJob.objects.count() == 0
