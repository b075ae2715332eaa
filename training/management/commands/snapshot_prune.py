"""Delete old snapshots' files and rows (retention), keeping every one still needed."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from training.services.snapshots import snapshots_prune


class Command(BaseCommand):
    help = ("Delete the files and rows of snapshots older than SNAPSHOT_KEEP_DAYS (or --days), except one a "
            "registered model version was trained on, one a round that is not finished (or may be resumed) reads, "
            "and the newest of each project's kind. --dry-run lists what would go.")

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, help="keep this many days instead of SNAPSHOT_KEEP_DAYS")
        parser.add_argument("--dry-run", action="store_true", help="list what would be deleted; delete nothing")

    def handle(self, *args, days, dry_run, **options):
        keep_days = days if days is not None else settings.SNAPSHOT_KEEP_DAYS
        if not keep_days:
            self.stdout.write("Retention is off (SNAPSHOT_KEEP_DAYS is 0 and no --days): nothing pruned.")
            return
        if keep_days < 1:
            raise CommandError("--days must be at least 1")
        pruning = snapshots_prune(keep_days=keep_days, dry_run=dry_run)
        verb = "would delete" if dry_run else "deleted"
        for snapshot in pruning.pruned:
            self.stdout.write(f"{verb} snapshot {snapshot.id} ({snapshot}, {snapshot.created_at:%Y-%m-%d}, {snapshot.folder})")
        if options["verbosity"] > 1:
            for snapshot, reason in pruning.kept:
                self.stdout.write(f"kept snapshot {snapshot.id} ({snapshot}): {reason}")
        self.stdout.write(
            f"{'Dry run: ' if dry_run else ''}{len(pruning.pruned)} snapshots older than {keep_days} days {verb} "
            f"({pruning.bytes / 1e6:.1f} MB), {len(pruning.kept)} kept because still needed."
        )
