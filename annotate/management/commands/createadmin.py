"""Create (or reset) a site admin account and print how to log in."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction


class Command(BaseCommand):
    help = "Create a site admin (staff, superuser) and print the login URL, username and password."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--email", default="")
        parser.add_argument("--password", help="default: a new random password, printed once")

    @transaction.atomic
    def handle(self, *args, username, email, password, **options):
        password = password or secrets.token_urlsafe(12)
        user, created = get_user_model().objects.get_or_create(username=username, defaults={"email": email})
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(password)
        user.save()
        verb = "Created" if created else "Reset the password of"
        self.stdout.write(
            f"{verb} admin '{username}'.\n"
            f"  Log in at {settings.BASE_URL}/login/\n"
            f"  username: {username}\n"
            f"  password: {password}\n"
        )
