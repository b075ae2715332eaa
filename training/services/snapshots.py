"""Writes for training: dataset snapshots, their integrity check and their retention."""

import shutil
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from training.exporters import rows
from training.exporters.card import card_write
from training.exporters.files import SplitFiles, describe, sha256_of
from training.exporters.parquet import jsonl_to_parquet
from training.models import DatasetSnapshot, ModelVersion, RunStage, RunStatus, SnapshotKind

SFT_FILTERS = ("accepted", "all")
# The splits every snapshot has a file for, as rows.py assigns them (is_heldout: test).
SPLITS = ("train", "test")


def snapshot_create(
    *, project, kind: str, by=None, by_id: int | None = None, demonstrations: str = "accepted",
    filters: dict | None = None, parquet: bool = True,
) -> DatasetSnapshot:
    """Export the project's data of one kind into a new immutable snapshot version.

    The files are written first, into the version's own folder, and the row is registered
    only when they are complete: a failed export leaves no snapshot behind.
    """
    if kind not in SnapshotKind.values:
        raise ValidationError({"kind": f"kind must be one of {', '.join(SnapshotKind.values)}"})
    if demonstrations not in SFT_FILTERS:
        raise ValidationError({"demonstrations": f"use one of {', '.join(SFT_FILTERS)}"})
    chosen = rows.Filters.parse(filters, kind=kind)
    demonstrated = kind in (SnapshotKind.SFT, SnapshotKind.SFT_COMPLETION)
    recorded = {**chosen.as_dict(), **({"demonstrations": demonstrations} if demonstrated else {})}
    for _attempt in range(3):
        version = (DatasetSnapshot.objects.filter(project=project, kind=kind).aggregate(v=Max("version"))["v"] or 0) + 1
        relative = f"project-{project.id}/{kind}-v{version}"
        folder = settings.SNAPSHOT_STORE / relative
        try:
            folder.mkdir(parents=True)
        except FileExistsError:
            continue  # another export took this version number; take the next
        try:
            redactions = rows.Redactions(project)
            described, counts = _write(project, kind, folder, demonstrations=demonstrations, filters=chosen,
                                       parquet=parquet, redactions=redactions)
            # `rows` names the splits that have rows, as it always has: a caller that loads each split it names
            # would fail on an empty one (`datasets` refuses a split of no rows). The empty split's file is
            # still written and listed in `files`, and the card gives every split's count.
            if not any(counts.values()):
                raise ValidationError({"kind": f"the project has no {SnapshotKind(kind).label.lower()} to export yet"})
            card = card_write(folder=folder, project=project, kind=kind, version=version, filters=recorded,
                              counts=counts, files=described, created_at=timezone.now(), redacted=redactions.counts)
            described.append(describe(card, split=None, rows=None, format="card"))
            with transaction.atomic():
                return DatasetSnapshot.objects.create(
                    project=project, kind=kind, version=version, filters=recorded,
                    rows={split: n for split, n in counts.items() if n}, files=described, folder=relative, created_by_id=by.id if by else by_id,
                )
        except IntegrityError:
            shutil.rmtree(folder, ignore_errors=True)
            continue
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    raise ValidationError({"kind": "could not find a free version number; try again"})


def _write(project, kind, folder, *, demonstrations, filters, parquet, redactions=None):
    main = SplitFiles(folder, kind, SPLITS)
    paired = kind in (SnapshotKind.PREFERENCE, SnapshotKind.IMPLICIT_PAIRS)
    side = {name: SplitFiles(folder, name, SPLITS) for name in ("rankings", "consensus")} if paired else {}
    produced = rows.kind_rows(kind, project, side, demonstrations=demonstrations, filters=filters,
                              redactions=redactions)
    for split, row in produced:
        main.write(split, row)
    paths = main.paths()
    described = main.close()
    counts = {item["split"]: item["rows"] for item in described}
    for path, item in zip(paths, list(described) if parquet else []):
        converted = jsonl_to_parquet(path, kind)
        described.append(describe(converted, split=item["split"], rows=item["rows"], format="parquet"))
    for extra in side.values():
        described += extra.close()
    return described, counts


def snapshot_verify(*, snapshot: DatasetSnapshot) -> list[str]:
    """Return what no longer matches in the snapshot's files: each one missing, or whose size or sha256
    differs from what the export recorded. Empty when every file is as it was written."""
    problems = []
    folder = settings.SNAPSHOT_STORE / snapshot.folder
    for described in snapshot.files:
        path = folder / described["name"]
        if not path.is_file():
            problems.append(f"{described['name']}: missing")
        elif path.stat().st_size != described["bytes"]:
            problems.append(f"{described['name']}: {path.stat().st_size} bytes, {described['bytes']} when exported")
        elif (found := sha256_of(path)) != described["sha256"]:
            problems.append(f"{described['name']}: sha256 {found[:12]}..., {described['sha256'][:12]}... when exported")
    return problems


@dataclass
class Pruning:
    """What a prune deleted (or, in a dry run, would delete) and what it kept of the old snapshots, and why."""

    pruned: list[DatasetSnapshot] = field(default_factory=list)
    kept: list[tuple[DatasetSnapshot, str]] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(described["bytes"] for snapshot in self.pruned for described in snapshot.files)


def snapshots_prune(*, keep_days: int, dry_run: bool = False, now=None) -> Pruning:
    """Delete the files and rows of snapshots older than `keep_days`, except those still needed: one a
    registered model version was trained on, one a round reads that is not finished or may be resumed
    (failed), and the newest snapshot of each project's kind. A dry run deletes nothing."""
    if keep_days < 1:
        raise ValidationError({"keep_days": "keep snapshots for one day at least"})
    cutoff = (now or timezone.now()) - timedelta(days=keep_days)
    pruning = Pruning()
    with transaction.atomic():
        # Locked first, then checked: a round that starts to read one of them now inserts a stage whose
        # foreign key waits on this lock, and fails once the row is gone rather than read deleted files.
        old = list(DatasetSnapshot.objects.select_for_update().filter(created_at__lt=cutoff).order_by("id"))
        reasons = _needed(old)
        for snapshot in old:
            if snapshot.id in reasons:
                pruning.kept.append((snapshot, reasons[snapshot.id]))
            else:
                pruning.pruned.append(snapshot)
        if dry_run or not pruning.pruned:
            return pruning
        DatasetSnapshot.objects.filter(id__in=[snapshot.id for snapshot in pruning.pruned]).delete()
        folders = [_folder_in_store(snapshot) for snapshot in pruning.pruned]
        # The files go once the rows are gone for good: a rolled-back prune keeps both.
        transaction.on_commit(lambda: [shutil.rmtree(folder, ignore_errors=True) for folder in folders if folder])
    return pruning


def _needed(snapshots: list[DatasetSnapshot]) -> dict[int, str]:
    """Why each of these snapshots must be kept, by id (those absent may go)."""
    ids = [snapshot.id for snapshot in snapshots]
    reasons = {}
    newest = {(row["project_id"], row["kind"]): row["newest"] for row in
              DatasetSnapshot.objects.values("project_id", "kind").annotate(newest=Max("version"))}
    for snapshot in snapshots:
        # The newest stays however old: it is the project's current export of that kind, and a new version is
        # numbered max + 1, so deleting the newest would hand its number to a different export.
        if newest.get((snapshot.project_id, snapshot.kind)) == snapshot.version:
            reasons[snapshot.id] = f"the newest {snapshot.kind} snapshot of its project"
    unfinished = [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.FAILED]
    for snapshot_id, number, run_status in (RunStage.objects.filter(snapshot_id__in=ids, run__status__in=unfinished)
                                            .values_list("snapshot_id", "run__number", "run__status")):
        reasons[snapshot_id] = f"round {number} reads it ({run_status}{': it may be resumed' if run_status == RunStatus.FAILED else ''})"
    trained = ModelVersion.objects.filter(snapshot_id__in=ids).values_list("snapshot_id", "kind", "version")
    staged = (RunStage.objects.filter(snapshot_id__in=ids, model_version__isnull=False)
              .values_list("snapshot_id", "model_version__kind", "model_version__version"))
    for snapshot_id, kind, version in [*trained, *staged]:
        reasons[snapshot_id] = f"model version {kind}-v{version} was trained on it"
    return reasons


def _folder_in_store(snapshot: DatasetSnapshot) -> Path | None:
    """The snapshot's folder, only if it lies inside the snapshot store (and is not the store itself)."""
    store = settings.SNAPSHOT_STORE.resolve()
    folder = (store / snapshot.folder).resolve()
    return folder if folder != store and folder.is_relative_to(store) else None
