"""Set up the demo project with its accounts, then run web and worker (see README)."""

import os
import threading

from django.core.management import call_command
from django.core.management.base import BaseCommand
from platform_config.processes import serve

from training.demo.project import DEMO_PASSWORD, DEMO_PEOPLE, demo_project_create


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
    """Run the demo rounds until the project has `rounds` of them, printing their figures."""
    from django.db import connection

    from training.demo.rounds import rounds_run

    try:
        rounds_run(rounds=rounds, up_to=True, out=out.write)
    except Exception as error:  # noqa: BLE001 - the web server goes on; say why the rounds stopped
        out.write(f"demo rounds stopped: {type(error).__name__}: {error}\n")
    finally:
        connection.close()
