"""Exports that a worker runs: asked for from a page or the API, recorded as an ExportJob, run by
`training.tasks.export_execute`, ending with the snapshot it made or the reason it failed."""

import logging

from django.core.exceptions import ValidationError
from django.db import transaction

from platform_common.jobs import Heartbeat, JobStatus, job_claim, job_finish
from training.exporters import rows
from training.models import ExportJob, SnapshotKind
from training.services.runs import project_store_check
from training.services.snapshots import SFT_FILTERS, snapshot_create

logger = logging.getLogger(__name__)


def export_enqueue(
    *, project, kind: str, by, demonstrations: str = "accepted", filters: dict | None = None, parquet: bool = True
) -> ExportJob:
    """Record an export and queue it for a worker once the caller's transaction has committed.

    Its settings are checked here (a bad filter is a 400 now, not a failure in the worker minutes later).
    """
    if kind not in SnapshotKind.values:
        raise ValidationError({"kind": f"kind must be one of {', '.join(SnapshotKind.values)}"})
    if demonstrations not in SFT_FILTERS:
        raise ValidationError({"demonstrations": f"use one of {', '.join(SFT_FILTERS)}"})
    rows.Filters.parse(filters, kind=kind)
    project_store_check(project=project)
    from training.tasks import export_execute

    job = ExportJob.objects.create(
        project=project, kind=kind, requested_by=by,
        options={"demonstrations": demonstrations, "filters": filters or {}, "parquet": parquet},
    )
    transaction.on_commit(lambda: export_execute.configure(queueing_lock=f"export-{job.id}").defer(job_id=job.id))
    return job


def export_execute(*, job_id: int) -> str:
    """Run a queued export in this worker; return its final status."""
    if not job_claim(ExportJob, job_id):
        return ExportJob.objects.get(id=job_id).status
    job = ExportJob.objects.select_related("project").get(id=job_id)
    with Heartbeat(ExportJob, job.id):
        try:
            snapshot = snapshot_create(project=job.project, kind=job.kind, by_id=job.requested_by_id, **job.options)
        except ValidationError as error:
            job_finish(ExportJob, job.id, JobStatus.FAILED, " ".join(error.messages))
        except Exception as error:  # noqa: BLE001 - the export must end failed and say why, never stay running
            logger.exception("export job %s failed", job.id)
            job_finish(ExportJob, job.id, JobStatus.FAILED, f"{type(error).__name__}: {error}")
        else:
            job_finish(ExportJob, job.id, JobStatus.SUCCEEDED, snapshot=snapshot)
    return ExportJob.objects.get(id=job_id).status
