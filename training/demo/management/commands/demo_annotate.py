"""Scripted annotators work through the demo project over the HTTP API (see training/demo/annotators.py)."""

from django.core.management.base import BaseCommand, CommandError

from annotate.models import Project
from training.demo.project import DEMO_PASSWORD, DEMO_PROJECT, annotate


class Command(BaseCommand):
    help = ("Scripted annotators (alice, bob, carol, dave, erin, frank and the reviewer) take every task of the demo "
            "project through the HTTP API: demonstrations, reviews, rankings; --prompts N new prompts first.")

    def add_arguments(self, parser):
        parser.add_argument("--project", type=int, help="project id (default: the demo project)")
        parser.add_argument("--url", default="", help="a running server, e.g. http://127.0.0.1:8000 "
                                                       "(default: serve this process's app on a free local port)")
        parser.add_argument("--prompts", type=int, default=0, help="new prompts to write before the other tasks")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--password", default=DEMO_PASSWORD)

    def handle(self, *args, project, url, prompts, seed, password, **options):
        found = Project.objects.filter(pk=project).first() if project else Project.objects.filter(name=DEMO_PROJECT).first()
        if found is None:
            raise CommandError("no such project: run `manage.py demo --setup-only` first")
        counts = annotate(found, url=url, prompts=prompts, seed=seed, password=password)
        for name, done in counts.items():
            self.stdout.write(f"  {name:<9} " + ", ".join(f"{kind} {n}" for kind, n in sorted(done.items())))
