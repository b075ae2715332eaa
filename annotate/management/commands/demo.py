"""Set up the demo project with its accounts, then run web and worker (see README)."""

import io
import os
import random
import threading

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction

from annotate import demo_data
from annotate.importers import import_run
from annotate.services import accounts as account_services
from annotate.management.commands.serve import serve
from annotate.models import Message, MessageRole, MessageSource, Project, Role
from annotate.services import tree

DEMO_PASSWORD = "demo-pass-2026"
# alice and bob are for people; the scripted annotators (manage.py demo_annotate) log in as carol..frank
# too: two annotators write the demonstrations of a seed prompt and may not rank its set, so two others must.
DEMO_PEOPLE = [
    ("admin", Role.ADMIN), ("reviewer", Role.REVIEWER), ("alice", Role.ANNOTATOR), ("bob", Role.ANNOTATOR),
    ("carol", Role.ANNOTATOR), ("dave", Role.ANNOTATOR), ("erin", Role.ANNOTATOR), ("frank", Role.ANNOTATOR),
]
DEMO_PROJECT = "Demo: arithmetic assistant"
DEMO_GUIDELINES = """Write short arithmetic questions (sums and differences of small numbers, plain or as little stories),
and say, if you like, how the reply should look: "Answer briefly." (then `It is N.`), "End your answer with
an exclamation mark." or "Begin your answer with Sure."
Reply with the right number in the form the question asks for; if it asks for none, `The answer is N.`
When ranking, put right answers in the asked form first, then right ones in `The answer is N.`, then
the right number in other words, then a wrong number in one of these forms, then anything else."""
# Seed prompts: each comes with two replies of an earlier assistant (imported) and gets two
# demonstrations from different annotators; the rankings of these four are the first round's
# comparisons (no model of the project exists yet to write candidates).
DEMO_SEED_PROMPTS = 300
SEED_REPLIES = 2
DEMO_SETTINGS = {
    "replies_per_ranking": 4, "overlap": 2, "max_depth": 1, "demonstrations_per_prompt": 2,
    "task_mix": {"label": 0, "compare": 0},
}


@transaction.atomic
def demo_project_create(*, seed_prompts: int = DEMO_SEED_PROMPTS, corpus_documents: int = 16000) -> Project:
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
    project = Project.objects.filter(name=DEMO_PROJECT).first()
    if project is None:
        project = account_services.project_create(
            name=DEMO_PROJECT,
            description="Teach a small model to answer arithmetic questions, from human feedback.",
            guidelines=DEMO_GUIDELINES,
            created_by=users["admin"][0],
        )
    for user, role in users.values():
        account_services.membership_set(project=project, user=user, role=role)
    if not Message.objects.filter(project=project).exists():
        account_services.project_settings_update(project=project, **DEMO_SETTINGS)
        rng = random.Random("earlier-assistant")
        for problem in demo_data.prompt_pool(seed_prompts):
            prompt = tree.message_create(
                project=project, parent=None, role=MessageRole.USER, text=problem.prompt, source=MessageSource.IMPORT,
                origin={"source": "demo"},
            )
            for _ in range(SEED_REPLIES):
                tree.message_create(
                    project=project, parent=prompt, role=MessageRole.ASSISTANT, source=MessageSource.IMPORT,
                    text=demo_data.earlier_reply(problem.prompt, rng), origin={"source": "demo", "model": "earlier assistant"},
                )
        text = "\n\n".join(demo_data.corpus(corpus_documents)).encode()
        import_run(project=project, format="text", stream=io.BytesIO(text), filename="demo-corpus.txt")
    return project


class Command(BaseCommand):
    help = "Migrate, load the demo project and accounts, and run web and worker until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default=os.environ.get("BIND", "127.0.0.1:8000"))
        parser.add_argument("--setup-only", action="store_true", help="load the demo data and exit")
        parser.add_argument("--rounds", type=int, default=1,
                            help="while serving, run demo rounds until the project has this many (manage.py "
                                 "demo_rounds: scripted annotators, training, figures); 0 runs none")

    def handle(self, *args, bind, setup_only, rounds, **options):
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
        if rounds > 0:
            banner += (f"Demo rounds run in the background until there are {rounds} (scripted annotators, then base, "
                       f"SFT, reward model, PPO); follow them at http://{bind}/ as admin. Their figures print here.\n")
            threading.Thread(target=_rounds_in_background, args=(rounds, self.stdout), daemon=True,
                             name="demo-rounds").start()
        serve(bind=bind, workers=None, with_worker=True, out=self.stdout, banner=banner)


def _rounds_in_background(rounds: int, out) -> None:
    """Run the demo rounds (training's command, called by name: annotate never imports training)."""
    from django.db import connection

    try:
        call_command("demo_rounds", rounds=rounds, up_to=True, stdout=out)
    except Exception as error:  # noqa: BLE001 - the web server goes on; say why the rounds stopped
        out.write(f"demo rounds stopped: {type(error).__name__}: {error}\n")
    finally:
        connection.close()
