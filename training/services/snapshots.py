"""Writes for training: dataset snapshots (and, later, runs and model versions)."""

import shutil

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max

from training.exporters import rows
from training.exporters.files import SplitFiles, describe
from training.exporters.parquet import jsonl_to_parquet
from training.models import DatasetSnapshot, SnapshotKind

SFT_FILTERS = ("accepted", "all")


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
    recorded = {**chosen.as_dict(), **({"demonstrations": demonstrations} if kind == SnapshotKind.SFT else {})}
    for _attempt in range(3):
        version = (DatasetSnapshot.objects.filter(project=project, kind=kind).aggregate(v=Max("version"))["v"] or 0) + 1
        relative = f"project-{project.id}/{kind}-v{version}"
        folder = settings.SNAPSHOT_STORE / relative
        try:
            folder.mkdir(parents=True)
        except FileExistsError:
            continue  # another export took this version number; take the next
        try:
            described, counts = _write(project, kind, folder, demonstrations=demonstrations, filters=chosen, parquet=parquet)
            if not counts:
                raise ValidationError({"kind": f"the project has no {SnapshotKind(kind).label.lower()} to export yet"})
            with transaction.atomic():
                return DatasetSnapshot.objects.create(
                    project=project, kind=kind, version=version, filters=recorded,
                    rows=counts, files=described, folder=relative, created_by_id=by.id if by else by_id,
                )
        except IntegrityError:
            shutil.rmtree(folder, ignore_errors=True)
            continue
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    raise ValidationError({"kind": "could not find a free version number; try again"})


def snapshot_export_enqueue(
    *, project, kind: str, by, demonstrations: str = "accepted", filters: dict | None = None, parquet: bool = True
) -> None:
    """Queue an export for a worker, once the caller's transaction has committed."""
    if kind not in SnapshotKind.values:
        raise ValidationError({"kind": f"kind must be one of {', '.join(SnapshotKind.values)}"})
    if demonstrations not in SFT_FILTERS:
        raise ValidationError({"demonstrations": f"use one of {', '.join(SFT_FILTERS)}"})
    rows.Filters.parse(filters, kind=kind)  # refuse bad filters now, not in the worker
    from training.tasks import snapshot_export

    transaction.on_commit(
        lambda: snapshot_export.defer(
            project_id=project.id, kind=kind, demonstrations=demonstrations, filters=filters or {},
            parquet=parquet, requested_by=by.id,
        )
    )


def _write(project, kind, folder, *, demonstrations, filters, parquet):
    main = SplitFiles(folder, kind)
    side = {}
    if kind == SnapshotKind.SFT:
        produced = rows.sft_rows(project, demonstrations=demonstrations, filters=filters)
    elif kind == SnapshotKind.PROMPTS:
        produced = rows.prompt_rows(project, filters=filters)
    elif kind == SnapshotKind.PRETRAINING:
        produced = rows.pretraining_rows(project)
    elif kind == SnapshotKind.UNPAIRED:
        produced = rows.unpaired_rows(project, filters=filters)
    else:
        side = {name: SplitFiles(folder, name) for name in ("rankings", "consensus")}
        produced = rows.preference_rows(project, side, filters=filters)
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
