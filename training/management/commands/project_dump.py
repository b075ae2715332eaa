"""Dump a whole project into one versioned archive (training.services.dumps)."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotate.models import Project
from training.services.dumps import MEMBER_MODES, project_dump


class Command(BaseCommand):
    help = ("Write a project (members, settings, guideline versions, trees, tasks, judgements, audit history, "
            "snapshot and model registry rows, not their files) into one .tar.gz archive that project_load reads.")

    def add_arguments(self, parser):
        parser.add_argument("project", type=int, help="the project's id")
        parser.add_argument("archive", help="where to write the .tar.gz")
        parser.add_argument("--members", choices=MEMBER_MODES, default="pseudonyms",
                            help="name people by pseudonym (the default) or carry their accounts (username, email)")

    def handle(self, *args, project, archive, members, **options):
        found = Project.objects.filter(id=project).first()
        if found is None:
            raise CommandError(f"no project with id {project}")
        try:
            manifest = project_dump(project=found, path=archive, members=members)
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        rows = sum(entry["rows"] for entry in manifest["files"] if entry["name"] != "people.jsonl")
        self.stdout.write(f"project {found.id} ({found.name}): {rows} rows in {len(manifest['files']) - 1} tables, "
                          f"members as {members}, written to {archive}")
