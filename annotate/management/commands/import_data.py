"""Import a file into a project from the command line (same service as the API and pages)."""

import os
import sys
import tempfile
import threading
import zipfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotate.importers import FORMATS, ImportRefused, cornell, import_run
from annotate.models import Project
from annotate.services.imports import bytes_read


def cornell_zip(folder: Path) -> Path:
    """Pack the corpus folder's two files into a zip, the form the importer reads."""
    target = Path(tempfile.mkdtemp()) / "cornell.zip"
    with zipfile.ZipFile(target, "w") as archive:
        for name in (cornell.LINES, cornell.CONVERSATIONS):
            if not (folder / name).is_file():
                raise CommandError(f"{folder} has no {name}")
            archive.write(folder / name, name)
    return target


class ReadProgress:
    """A progress bar (tqdm, on stderr) of how far the import has read the file, moved from a thread every half
    second by the file's offset: the importers read lines, so a wrapper around the stream would cost every line.
    The first pass is the file's sha256, the second the import; then the bar waits at the end while the rows are
    written and committed."""

    def __init__(self, stream, name: str, *, enabled: bool):
        self.stream, self.name, self.enabled = stream, name, enabled
        self.stop = threading.Event()

    def __enter__(self):
        if self.enabled:
            total = os.fstat(self.stream.fileno()).st_size
            self.bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"importing {self.name}", file=sys.stderr,
                            disable=None)
            self.thread = threading.Thread(target=self._follow, daemon=True)
            self.thread.start()
        return self

    def _follow(self):
        while not self.stop.wait(0.5):
            self.bar.n = bytes_read(self.stream, self.bar.total)
            self.bar.refresh()

    def __exit__(self, *exc):
        if self.enabled:
            self.stop.set()
            self.thread.join()
            self.bar.close()


class Command(BaseCommand):
    help = "Import a file (all or nothing) into a project. Formats: " + ", ".join(FORMATS)

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path)
        parser.add_argument("--project", type=int, required=True, help="project id")
        parser.add_argument("--format", required=True, choices=sorted(FORMATS))
        parser.add_argument(
            "--license", default="",
            help="the licence of the file's content, a Hugging Face licence id (cc-by-4.0, apache-2.0, ...), named "
                 "for this source in every dataset card; default: not said (unknown)",
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bar (it goes to stderr)")
        parser.add_argument(
            "--trusted", action="store_true",
            help="the file's replies are demonstrations to imitate (a dialogue corpus): imported accepted, "
                 "so the default SFT export takes them; the losing side of a pair is not",
        )

    def handle(self, *args, path, project, format, trusted, license, no_progress, **options):
        found = Project.objects.filter(pk=project).first()
        if found is None:
            raise CommandError(f"no project with id {project}")
        if format == "cornell" and path.is_dir():
            path = cornell_zip(path)
        if not path.is_file():
            raise CommandError(f"no such file: {path}")
        with path.open("rb") as stream, ReadProgress(stream, path.name, enabled=not no_progress):
            try:
                batch = import_run(project=found, format=format, stream=stream, filename=path.name, trusted=trusted,
                                   license=license)
            except ImportRefused as refused:
                raise CommandError(f"{path.name}: {refused.messages[0]} (nothing was imported)") from None
        counts = ", ".join(f"{value} {key.replace('_', ' ')}" for key, value in batch.counts.items())
        self.stdout.write(f"Imported {path.name} as import {batch.id}: {counts}")
