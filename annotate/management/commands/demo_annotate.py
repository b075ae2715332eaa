"""Scripted annotators work through the demo project over the HTTP API (see annotate/demo_annotators.py)."""

from django.core.management.base import BaseCommand, CommandError

from annotate import demo_annotators, demo_data
from annotate.management.commands.demo import DEMO_PASSWORD, DEMO_PROJECT
from annotate.models import Message, MessageRole, Project


def prompts_to_write(project, count: int) -> list[str]:
    """The next `count` problems of the pool that are not in the project yet."""
    if count <= 0:
        return []
    have = set(Message.objects.filter(project=project, role=MessageRole.USER).values_list("text", flat=True))
    pool = demo_data.prompt_pool(len(have) + count + 50)
    return [p.prompt for p in pool if p.prompt not in have][:count]


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


def annotate(project, *, url: str = "", prompts: int = 0, seed: int = 0, password: str = DEMO_PASSWORD) -> dict:
    texts = prompts_to_write(project, prompts)
    if url:
        members = demo_annotators.team(url, project.id, password=password, seed=seed)
        return demo_annotators.work_through(members, prompts=texts)
    with demo_annotators.local_server() as local:
        members = demo_annotators.team(local, project.id, password=password, seed=seed)
        return demo_annotators.work_through(members, prompts=texts)
