"""Token authentication in one hand-written query (see platform_common/raw_sql.py for why)."""

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
