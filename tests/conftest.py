import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotate.services import accounts as account_services
from annotate.models import Role


@pytest.fixture(autouse=True, scope="session")
def fast_password_hashing():
    """Hash the tests' passwords with MD5: the fixtures make several accounts per test, and the
    production hasher (PBKDF2 at Django's million iterations) takes a second of CPU for each. A test
    about password hashing itself sets PASSWORD_HASHERS back with the `settings` fixture."""
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture(autouse=True, scope="session")
def import_store(tmp_path_factory):
    """Uploads waiting for an import job go to a folder of the test run's, not the checkout's data folder."""
    with override_settings(IMPORT_STORE=tmp_path_factory.mktemp("imports")):
        yield


@pytest.fixture
def make_user(db):
    def make(username, *, staff=False, password="correct-horse-battery"):
        user = get_user_model().objects.create_user(username=username, password=password)
        if staff:
            user.is_staff = True
            user.save()
        return user

    return make


@pytest.fixture
def owner(make_user):
    """A site staff member who created the project and is its admin."""
    return make_user("owner", staff=True)


@pytest.fixture
def project(owner):
    return account_services.project_create(name="Arithmetic", guidelines="Be correct.", created_by=owner)


@pytest.fixture
def member(make_user, project):
    """An annotator in the project."""
    user = make_user("member")
    account_services.membership_set(project=project, user=user, role=Role.ANNOTATOR)
    return user


@pytest.fixture
def reviewer(make_user, project):
    user = make_user("reviewer")
    account_services.membership_set(project=project, user=user, role=Role.REVIEWER)
    return user


@pytest.fixture
def outsider(make_user):
    """Logged in, but in no project of ours."""
    return make_user("outsider")


@pytest.fixture
def api_as():
    """Return an API client authenticated with the user's token, as a script would be."""

    def client_for(user):
        client = APIClient()
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return client_for
