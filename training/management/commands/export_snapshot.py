"""Export a project's data as a new dataset snapshot (the same service as the API)."""

import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotate.models import Project
from training import services
from training.models import SnapshotKind


class Command(BaseCommand):
    help = "Export a dataset snapshot (JSONL and Parquet per split) and print where its files are."

    def add_arguments(self, parser):
        parser.add_argument("--project", type=int, required=True)
        parser.add_argument("--kind", required=True, choices=SnapshotKind.values)
        parser.add_argument("--demonstrations", choices=services.SFT_FILTERS, default="accepted")
        parser.add_argument("--no-parquet", action="store_true", help="JSONL only")
        parser.add_argument(
            "--filter", action="append", default=[], metavar="NAME=VALUE",
            help="since, until (ISO 8601), annotator_id, model_version, min_quality (SFT); repeatable",
        )

    def handle(self, *args, project, kind, demonstrations, no_parquet, filter, **options):
        found = Project.objects.filter(pk=project).first()
        if found is None:
            raise CommandError(f"no project with id {project}")
        pairs = [item.partition("=") for item in filter]
        if any(not sep for _, sep, _ in pairs):
            raise CommandError("write each --filter as NAME=VALUE")
        try:
            snapshot = services.snapshot_create(
                project=found, kind=kind, demonstrations=demonstrations, parquet=not no_parquet,
                filters={name: value for name, _, value in pairs},
            )
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        rows = ", ".join(f"{count} {split}" for split, count in sorted(snapshot.rows.items()))
        self.stdout.write(f"Snapshot {kind} v{snapshot.version}: {rows} rows in {snapshot.folder}")
        if options["verbosity"] > 1:
            self.stdout.write(f"torch imported: {'torch' in sys.modules}")
