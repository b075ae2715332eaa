"""Login throttling (django-axes) on every login path: 10 wrong passwords per account and client
address, counted in the database, X-Forwarded-For believed only from a trusted proxy."""

import ipaddress
import os

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.helpers import REPO_ROOT, child_env, run_python

pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery"
ATTACKER, ALICE_HOME, PROXY = "203.0.113.7", "198.51.100.20", "10.0.0.2"


@pytest.fixture
def alice(make_user):
    return make_user("alice", staff=True)


def page_login(client: Client, password: str, path: str = "/login/", **extra):
    return client.post(path, {"username": "alice", "password": password}, **extra)


def api_login(client: APIClient, password: str, **extra):
    return client.post("/api/auth/token/", {"username": "alice", "password": password}, format="json", **extra)


def logged_in(client: Client) -> bool:
    return client.get("/").status_code == 200


@pytest.mark.parametrize("path", ["/login/", "/admin/login/"])
def test_ten_wrong_passwords_lock_the_account_from_that_address_only(alice, path):
    stranger = Client(REMOTE_ADDR=ATTACKER)
    for _ in range(9):
        assert page_login(stranger, "guess", path).status_code == 200
    tenth = page_login(stranger, "guess", path)
    assert tenth.status_code == 429 and "Too many attempts" in tenth.content.decode()
    # Now even the right password is refused from there...
    assert page_login(stranger, PASSWORD, path).status_code == 429
    assert not logged_in(stranger)
    # ...while alice, at home, logs in.
    home = Client(REMOTE_ADDR=ALICE_HOME)
    assert page_login(home, PASSWORD, path).status_code == 302
    assert logged_in(home)


def test_the_api_token_login_is_throttled_with_a_json_429(alice):
    stranger = APIClient(REMOTE_ADDR=ATTACKER)
    for _ in range(9):
        assert api_login(stranger, "guess").status_code == 400
    locked = api_login(stranger, "guess")
    assert locked.status_code == 429 and "too many wrong passwords" in locked.json()["detail"]
    assert int(locked["Retry-After"]) == 15 * 60
    assert api_login(stranger, PASSWORD).status_code == 429
    assert api_login(APIClient(REMOTE_ADDR=ALICE_HOME), PASSWORD).status_code == 201


def test_a_fresh_x_forwarded_for_per_attempt_does_not_reset_the_count(alice):
    stranger = Client(REMOTE_ADDR=ATTACKER)
    responses = [
        page_login(stranger, "guess", HTTP_X_FORWARDED_FOR=str(ipaddress.ip_address("192.0.2.1") + n))
        for n in range(10)
    ]
    assert responses[-1].status_code == 429
    assert page_login(stranger, PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.200").status_code == 429


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_client(alice, settings):
    settings.TRUSTED_PROXIES = [ipaddress.ip_network("10.0.0.0/24")]
    proxy = Client(REMOTE_ADDR=PROXY)
    for _ in range(10):
        # The client wrote the left entry itself; our proxy appended the address it saw.
        page_login(proxy, "guess", HTTP_X_FORWARDED_FOR=f"{ALICE_HOME}, {ATTACKER}")
    assert page_login(proxy, PASSWORD, HTTP_X_FORWARDED_FOR=f"{ALICE_HOME}, {ATTACKER}").status_code == 429
    # The proxy's own address is not the one locked: alice comes through the same proxy.
    assert page_login(proxy, PASSWORD, HTTP_X_FORWARDED_FOR=ALICE_HOME).status_code == 302


@pytest.mark.django_db(transaction=True)
def test_failures_are_counted_across_processes(alice):
    # Five wrong passwords in another process (another web worker: the login's own code, without loading
    # every page's imports), five here: locked.
    code = f"""
import django
django.setup()
from django.contrib.auth import authenticate
from django.test import RequestFactory
for _ in range(5):
    request = RequestFactory().post("/login/", {{"username": "alice"}}, REMOTE_ADDR={ATTACKER!r})
    print(authenticate(request, username="alice", password="guess"), getattr(request, "axes_locked_out", None))
"""
    child = run_python(code, env=child_env(PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "platform"), str(REPO_ROOT)]),
                                           DJANGO_SETTINGS_MODULE="platform_config.settings"))
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.split() == ["None", "False"] * 5
    stranger = Client(REMOTE_ADDR=ATTACKER)
    codes = [page_login(stranger, "guess").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 200, 429]
