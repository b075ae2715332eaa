"""Token authentication in one hand-written query (see platform_common/raw_sql.py for why), and the
login throttle's view of who is logging in from where."""

import ipaddress

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.contrib.auth import get_user_model
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from platform_common.raw_sql import columns, fetch_one

User = get_user_model()

TOKEN_WITH_USER = f"""
SELECT {columns(Token, "t")}, {columns(User, "u")}
FROM authtoken_token t JOIN {User._meta.db_table} u ON u.id = t.user_id
WHERE t.key = %s
"""


class FastTokenAuthentication(TokenAuthentication):
    """DRF's TokenAuthentication, same rules and messages, without the ORM's query compiling."""

    def authenticate_credentials(self, key):
        found = fetch_one(TOKEN_WITH_USER, [key], [Token, User])
        if found is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        token, user = found
        if not user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        token.user = user
        return (user, token)


class LoginThrottleBackend(AxesStandaloneBackend):
    """django-axes' lockout check, for logins that come with a request.

    Every login path passes its request; what authenticates without one (the test client's login,
    the shell, management commands) guesses no passwords over the network, and axes would refuse it.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def client_ip(request) -> str:
    """Return the address the login throttle counts a request under.

    REMOTE_ADDR, unless the connection comes from a proxy in TRUSTED_PROXIES: then the right-most
    X-Forwarded-For address that is not itself a trusted proxy (what the outermost one of ours saw;
    the addresses left of it were written by the client).
    """
    remote = request.META.get("REMOTE_ADDR", "")
    if not _trusted(remote):
        return remote
    forwarded = [entry.strip() for entry in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    for address in reversed(forwarded):
        if not _trusted(address):
            return address if _valid(address) else remote
    return remote


def _valid(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _trusted(address: str) -> bool:
    if not _valid(address):
        return False
    return any(ipaddress.ip_address(address) in network for network in settings.TRUSTED_PROXIES)
