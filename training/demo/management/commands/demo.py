"""Set up the demo project with its accounts, then run web and worker (see README)."""

import os
import threading

from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from platform_config.processes import serve

from training.demo.project import DEMO_PASSWORD, DEMO_PEOPLE, demo_project_create
from training.services import runs


class Command(BaseCommand):
    help = "Migrate, load the demo project and accounts, and run web and worker until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default=os.environ.get("BIND", "127.0.0.1:8000"))
        parser.add_argument("--setup-only", action="store_true", help="load the demo data and exit")
        parser.add_argument("--base", default="", help="the demo from this pretrained model (a registered base "
                            "model's name, e.g. smollm2, or a directory under BASE_MODEL_ROOTS), in a project of its "
                            "own: its rounds adopt it instead of building a base from scratch")
        parser.add_argument("--rounds", type=int, default=1,
                            help="while serving, run demo rounds until the project has this many (manage.py "
                                 "demo_rounds: scripted annotators, training, figures); 0 runs none")

    def handle(self, *args, bind, setup_only, base, rounds, **options):
        call_command("migrate", interactive=False, verbosity=0)
        if base:
            try:
                runs.base_source_resolve(base_source=base)
            except ValidationError as error:
                raise CommandError(" ".join(error.messages)) from None
        project = demo_project_create(base=base)
        logins = "".join(f"  {name:<9} {DEMO_PASSWORD}   ({role})\n" for name, role in DEMO_PEOPLE)
        banner = (
            f"Demo project '{project.name}' is ready. Log in at http://{bind}/login/ as:\n{logins}"
            f"The API docs are at http://{bind}/api/docs/\n"
        )
        if setup_only:
            self.stdout.write(banner)
            return
        if rounds > 0:
            first = f"{base} adopted" if base else "base"
            banner += (f"Demo rounds run in the background until there are {rounds} (scripted annotators, then {first}, "
                       f"SFT, reward model, PPO); follow them at http://{bind}/ as admin. Their figures print here.\n")
            threading.Thread(target=_rounds_in_background, args=(rounds, base, self.stdout), daemon=True,
                             name="demo-rounds").start()
        serve(bind=bind, workers=None, with_worker=True, out=self.stdout, banner=banner)


def _rounds_in_background(rounds: int, base: str, out) -> None:
    """Run the demo rounds until the project has `rounds` of them, printing their figures."""
    from django.db import connection

    from training.demo.rounds import rounds_run

    try:
        rounds_run(rounds=rounds, up_to=True, base=base, out=out.write)
    except Exception as error:  # noqa: BLE001 - the web server goes on; say why the rounds stopped
        out.write(f"demo rounds stopped: {type(error).__name__}: {error}\n")
    finally:
        connection.close()
