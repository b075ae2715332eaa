"""Import a file into a project from the command line (same service as the API and pages)."""

import tempfile
import zipfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotate.importers import FORMATS, ImportRefused, cornell, import_run
from annotate.models import Project


def cornell_zip(folder: Path) -> Path:
    """Pack the corpus folder's two files into a zip, the form the importer reads."""
    target = Path(tempfile.mkdtemp()) / "cornell.zip"
    with zipfile.ZipFile(target, "w") as archive:
        for name in (cornell.LINES, cornell.CONVERSATIONS):
            if not (folder / name).is_file():
                raise CommandError(f"{folder} has no {name}")
            archive.write(folder / name, name)
    return target


class Command(BaseCommand):
    help = "Import a file (all or nothing) into a project. Formats: " + ", ".join(FORMATS)

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path)
        parser.add_argument("--project", type=int, required=True, help="project id")
        parser.add_argument("--format", required=True, choices=sorted(FORMATS))
        parser.add_argument(
            "--trusted", action="store_true",
            help="the file's replies are demonstrations to imitate (a dialogue corpus): imported accepted, "
                 "so the default SFT export takes them; the losing side of a pair is not",
        )

    def handle(self, *args, path, project, format, trusted, **options):
        found = Project.objects.filter(pk=project).first()
        if found is None:
            raise CommandError(f"no project with id {project}")
        if format == "cornell" and path.is_dir():
            path = cornell_zip(path)
        if not path.is_file():
            raise CommandError(f"no such file: {path}")
        with path.open("rb") as stream:
            try:
                batch = import_run(project=found, format=format, stream=stream, filename=path.name, trusted=trusted)
            except ImportRefused as refused:
                raise CommandError(f"{path.name}: {refused.messages[0]} (nothing was imported)") from None
        counts = ", ".join(f"{value} {key.replace('_', ' ')}" for key, value in batch.counts.items())
        self.stdout.write(f"Imported {path.name} as import {batch.id}: {counts}")
