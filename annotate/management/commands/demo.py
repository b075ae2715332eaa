"""Set up the demo project with its accounts, then run web and worker (see README)."""

import os
import random

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction

from annotate.services import accounts as account_services
from annotate.management.commands.serve import serve
from annotate.models import Message, MessageRole, MessageSource, Project, Role
from annotate.services import tree

DEMO_PASSWORD = "demo-pass-2026"
DEMO_PEOPLE = [("admin", Role.ADMIN), ("reviewer", Role.REVIEWER), ("alice", Role.ANNOTATOR), ("bob", Role.ANNOTATOR)]
DEMO_GUIDELINES = """Write prompts a user could really ask. Write replies that are correct, short and polite.
When ranking, put correct replies first; among correct ones, prefer the clearer one."""


@transaction.atomic
def demo_project_create() -> Project:
    """Create the demo accounts and project, or return them as they are if they exist."""
    User = get_user_model()
    users = {}
    for username, role in DEMO_PEOPLE:
        user, created = User.objects.get_or_create(username=username)
        if created:
            user.set_password(DEMO_PASSWORD)
            user.is_staff = user.is_superuser = role == Role.ADMIN
            user.save()
        users[username] = (user, role)
    project = Project.objects.filter(name="Demo: arithmetic assistant").first()
    if project is None:
        project = account_services.project_create(
            name="Demo: arithmetic assistant",
            description="Teach a small model to answer arithmetic questions, from human feedback.",
            guidelines=DEMO_GUIDELINES,
            created_by=users["admin"][0],
        )
    for user, role in users.values():
        account_services.membership_set(project=project, user=user, role=role)
    if not Message.objects.filter(project=project).exists():
        for prompt in demo_prompts():
            tree.message_create(
                project=project, parent=None, role=MessageRole.USER, text=prompt, source=MessageSource.IMPORT,
                origin={"source": "demo"},
            )
    return project


def demo_prompts(count: int = 24, seed: int = 7) -> list[str]:
    """Return arithmetic questions whose answers a program can check."""
    rng = random.Random(seed)
    forms = [
        "What is {a} + {b}?",
        "What is {a} minus {b}?",
        "Compute {a} * {b}.",
        "A box holds {a} apples and you add {b} more. How many apples are in the box?",
    ]
    return [rng.choice(forms).format(a=rng.randint(2, 99), b=rng.randint(2, 99)) for _ in range(count)]


class Command(BaseCommand):
    help = "Migrate, load the demo project and accounts, and run web and worker until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default=os.environ.get("BIND", "127.0.0.1:8000"))
        parser.add_argument("--setup-only", action="store_true", help="load the demo data and exit")

    def handle(self, *args, bind, setup_only, **options):
        call_command("migrate", interactive=False, verbosity=0)
        project = demo_project_create()
        logins = "".join(f"  {name:<9} {DEMO_PASSWORD}   ({role})\n" for name, role in DEMO_PEOPLE)
        banner = (
            f"Demo project '{project.name}' is ready. Log in at http://{bind}/login/ as:\n{logins}"
            f"The API docs are at http://{bind}/api/docs/\n"
        )
        if setup_only:
            self.stdout.write(banner)
            return
        serve(bind=bind, workers=None, with_worker=True, out=self.stdout, banner=banner)
