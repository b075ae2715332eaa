"""manage.py serve: migrate, then run gunicorn and the job workers until stopped (Ctrl-C)."""

import os

from django.core.management import call_command
from django.core.management.base import BaseCommand

from platform_config.processes import serve


class Command(BaseCommand):
    help = "Migrate, then run gunicorn and one job worker until stopped (Ctrl-C). DEBUG is off unless DEBUG=true."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default=os.environ.get("BIND", "127.0.0.1:8000"))
        parser.add_argument("--workers", type=int, default=None, help="gunicorn worker processes")
        parser.add_argument("--no-worker", action="store_true", help="web only, no job worker")

    def handle(self, *args, bind, workers, no_worker, **options):
        call_command("migrate", interactive=False, verbosity=0)
        serve(bind=bind, workers=workers, with_worker=not no_worker, out=self.stdout)
