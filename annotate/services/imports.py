"""Imports that a worker runs: a file uploaded from the Import page or the API is stored, recorded as an ImportJob
and imported by `annotate.tasks.import_execute` (the same all-or-nothing `import_run` as `manage.py import_data`),
ending with the batch it wrote or the line and reason that refused the file.

While the worker reads, the job's heartbeat (from a thread, on its own connection: the import's writes sit in
one transaction that nobody sees until it commits) records how many bytes it has read, which the page and
`GET .../imports/jobs/<id>/` show. What cannot succeed (an unknown format or licence, a file already imported
or being imported) is refused when it is asked for, before it waits for a worker.
"""

import hashlib
import logging
import os
import uuid
from pathlib import Path

from django.conf import settings
from django.db import transaction

from annotate.importers import ImportRefused, import_check, import_run
from annotate.models import ImportJob, Project
from platform_common.jobs import UNFINISHED, Heartbeat, JobStatus, job_claim, job_finish

logger = logging.getLogger(__name__)

# How often the page's figure moves: the heartbeat of an import job, with its bytes read.
PROGRESS_SECONDS = 1.0


def import_enqueue(*, project: Project, format: str, upload, filename: str = "", by=None, trusted: bool = False,
                   license: str = "") -> ImportJob:
    """Store the upload (a Django UploadedFile or a binary stream), record the import and queue it for a worker
    once the caller's transaction has committed. Refuses (ImportRefused, line 0) what cannot be imported."""
    folder = settings.IMPORT_STORE / f"project-{project.id}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}.upload"
    digest, size = hashlib.sha256(), 0
    chunks = upload.chunks() if hasattr(upload, "chunks") else iter(lambda: upload.read(1 << 20), b"")
    with path.open("wb") as out:
        for chunk in chunks:
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
    sha256 = digest.hexdigest()
    try:
        import_check(project=project, format=format, sha256=sha256, license=license)
        waiting = ImportJob.objects.filter(project=project, sha256=sha256, status__in=UNFINISHED).first()
        if waiting is not None:
            raise ImportRefused(0, f"this file is being imported already (import job {waiting.id}); nothing was added")
        if size == 0:
            raise ImportRefused(0, "the file is empty")
        job = ImportJob.objects.create(
            project=project, format=format, filename=filename[:300], trusted=trusted, license=license, sha256=sha256,
            path=str(path), bytes_total=size, requested_by=by,
        )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    from annotate.tasks import import_execute

    transaction.on_commit(lambda: import_execute.configure(queueing_lock=f"import-{job.id}").defer(job_id=job.id))
    return job


def import_execute(*, job_id: int) -> str:
    """Import a queued upload in this worker; return the job's final status. The upload is deleted at the end,
    whatever the end (a refused file is refused again the same way: upload it again once it is mended)."""
    if not job_claim(ImportJob, job_id):
        return ImportJob.objects.get(id=job_id).status
    job = ImportJob.objects.select_related("project", "requested_by").get(id=job_id)
    path = Path(job.path)
    try:
        with path.open("rb") as stream, Heartbeat(ImportJob, job.id, seconds=PROGRESS_SECONDS,
                                                  progress=lambda: {"bytes_done": bytes_read(stream, job.bytes_total)}):
            batch = import_run(project=job.project, format=job.format, stream=stream, filename=job.filename,
                               by=job.requested_by, trusted=job.trusted, license=job.license, sha256=job.sha256)
    except ImportRefused as refused:
        job_finish(ImportJob, job.id, JobStatus.FAILED, refused.messages[0], line=refused.line)
    except FileNotFoundError:
        job_finish(ImportJob, job.id, JobStatus.FAILED,
                   f"the upload is gone from {settings.IMPORT_STORE} (a worker on another machine, or it was deleted); "
                   "upload the file again")
    except Exception as error:  # noqa: BLE001 - the job must end failed and say why, never stay running
        logger.exception("import job %s failed", job.id)
        job_finish(ImportJob, job.id, JobStatus.FAILED, f"{type(error).__name__}: {error}")
    else:
        job_finish(ImportJob, job.id, JobStatus.SUCCEEDED, batch=batch, bytes_done=job.bytes_total)
    finally:
        path.unlink(missing_ok=True)
    return ImportJob.objects.get(id=job_id).status


def bytes_read(stream, total: int) -> int:
    """How far the stream's file is read, from another thread: its descriptor's offset (the reader's buffer
    ahead of the line it parses, so at most a megabyte early), capped at the file's size."""
    try:
        return min(os.lseek(stream.fileno(), 0, os.SEEK_CUR), total)
    except (OSError, ValueError):  # closed meanwhile
        return total


def upload_discard(job: ImportJob) -> str:
    """Delete the upload of a job that will not run any more (its worker was lost); the reaper's ending."""
    Path(job.path).unlink(missing_ok=True)
    return "; nothing was imported, upload the file again"
