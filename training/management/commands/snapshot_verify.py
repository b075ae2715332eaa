"""Check every snapshot file against the size and sha256 its export recorded."""

from django.core.management.base import BaseCommand, CommandError

from training.models import DatasetSnapshot
from training.services.snapshots import snapshot_verify


class Command(BaseCommand):
    help = ("Report each snapshot file that is missing or whose sha256 no longer matches its export; "
            "exit with status 1 when any does.")

    def add_arguments(self, parser):
        parser.add_argument("--project", type=int, help="only this project's snapshots")
        parser.add_argument("snapshot_ids", nargs="*", type=int, metavar="ID", help="only these snapshots")

    def handle(self, *args, project, snapshot_ids, **options):
        snapshots = DatasetSnapshot.objects.select_related("project").order_by("project_id", "kind", "version")
        if project is not None:
            snapshots = snapshots.filter(project_id=project)
        if snapshot_ids:
            snapshots = snapshots.filter(id__in=snapshot_ids)
            missing = set(snapshot_ids) - set(snapshots.values_list("id", flat=True))
            if missing:
                raise CommandError(f"no snapshot with id {', '.join(map(str, sorted(missing)))}")
        checked = broken = files = 0
        for snapshot in snapshots.iterator():
            checked += 1
            files += len(snapshot.files)
            problems = snapshot_verify(snapshot=snapshot)
            if problems:
                broken += 1
                for problem in problems:
                    self.stdout.write(f"snapshot {snapshot.id} ({snapshot}, {snapshot.folder}): {problem}")
            elif options["verbosity"] > 1:
                self.stdout.write(f"snapshot {snapshot.id} ({snapshot}): {len(snapshot.files)} files match")
        if broken:
            raise CommandError(f"{broken} of {checked} snapshots have files that are missing or changed")
        self.stdout.write(f"{checked} snapshots, {files} files: every sha256 matches")
