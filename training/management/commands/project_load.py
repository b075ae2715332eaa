"""Load an archive written by project_dump into a new project (training.services.dumps)."""

from django.core.management.base import BaseCommand, CommandError

from training.services.dumps import DumpRefused, project_load


class Command(BaseCommand):
    help = ("Load a project_dump archive into a new project. An archive of an unknown format version, or one "
            "with a missing or corrupt file, is refused with the reason and nothing is written.")

    def add_arguments(self, parser):
        parser.add_argument("archive", help="the .tar.gz written by project_dump")
        parser.add_argument("--name", help="the new project's name (default: the dumped project's)")

    def handle(self, *args, archive, name, **options):
        try:
            project = project_load(path=archive, name=name)
        except DumpRefused as error:
            raise CommandError(f"refused, nothing was written: {error.reason}") from None
        self.stdout.write(f"loaded {archive} as project {project.id} ({project.name})")
