"""Write a project's conversation trees with every judgement, in Open-Assistant's nested form (JSON Lines)."""

from pathlib import Path

import orjson
from django.core.management.base import BaseCommand, CommandError

from annotate.models import Project
from training.exporters.trees import tree_records


class Command(BaseCommand):
    help = ("Write every conversation tree of a project, one a line, each message with its labels, flags, reviews "
            "and the rankings of its replies (training/exporters/trees.py). "
            "`manage.py import_data FILE --project ID --format oasst-trees` reads it back into another project.")

    def add_arguments(self, parser):
        parser.add_argument("project", type=int, help="the project's id")
        parser.add_argument("output", help="the .jsonl file to write")

    def handle(self, *args, project, output, **options):
        found = Project.objects.filter(id=project).first()
        if found is None:
            raise CommandError(f"no project with id {project}")
        trees = 0
        with Path(output).open("wb") as out:
            for record in tree_records(found):
                out.write(orjson.dumps(record) + b"\n")
                trees += 1
        self.stdout.write(f"project {found.id} ({found.name}): {trees} trees written to {output}")
