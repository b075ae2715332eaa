"""The kinds of job a worker runs, in one table, and the reaper that fails the ones whose worker was lost.

Each kind names its row model (fields of platform_common.jobs.Job), what its page calls it, and what else a lost
job leaves to tidy (a round's running stage). The reaper runs in a thread of every worker process (`manage.py
worker`), every REAP_SECONDS, so a job of a killed worker is failed within WORKER_LOST_AFTER_SECONDS plus one
period whichever queues the surviving workers serve.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.db import connection, transaction

from annotate.models import ImportJob
from annotate.services.imports import upload_discard
from platform_common.jobs import JobStatus, job_finish, jobs_lost, lost_reason
from training.models import BaseConversion, ExportJob, GenerationJob, RunStage, ScreenJob, StageStatus, TrainingRun

logger = logging.getLogger(__name__)

REAP_SECONDS = 10


def _round_lost(run) -> str:
    stage = run.stages.filter(status=StageStatus.RUNNING).first()
    run.stages.filter(status=StageStatus.RUNNING).update(status=StageStatus.FAILED, error="worker lost")
    run.stages.filter(status=StageStatus.PENDING).update(status=StageStatus.NOT_RUN)
    where = f" during {stage.name} at step {stage.step}" if stage else ""
    return f"{where}; resume it to continue from the last checkpoint"


@dataclass(frozen=True)
class JobKind:
    name: str
    label: str
    model: type
    # Tidies what a lost job leaves (in the transaction that fails it) and returns the end of its reason.
    on_lost: Callable[[object], str]


JOB_KINDS = {kind.name: kind for kind in (
    JobKind("round", "training round", TrainingRun, _round_lost),
    JobKind("generation", "generation job", GenerationJob, lambda job: f" after {job.prompts_done} prompts; run it again"),
    JobKind("export", "export", ExportJob, lambda job: "; export it again"),
    JobKind("conversion", "base model conversion", BaseConversion, lambda job: "; convert it again"),
    JobKind("import", "import", ImportJob, upload_discard),
    JobKind("screen", "screen backfill", ScreenJob,
            lambda job: f" after {job.texts_done} of {job.texts_total} texts; run the backfill again"),
)}


def jobs_reap_lost(*, older_than_s: float | None = None) -> dict[str, list[int]]:
    """Fail every running job whose heartbeat stopped (worker lost), and the Procrastinate jobs of workers that
    stopped heartbeating; return the ids failed, by kind."""
    lost = {}
    for kind in JOB_KINDS.values():
        with transaction.atomic():
            # SKIP LOCKED: a job being claimed, cancelled or finished right now is not lost.
            for job in jobs_lost(kind.model, older_than_s=older_than_s).select_for_update(skip_locked=True):
                reason = lost_reason(job)
                if job_finish(kind.model, job.id, JobStatus.FAILED, reason):
                    ending = kind.on_lost(job)
                    kind.model.objects.filter(id=job.id).update(error=(reason + ending)[:4000])
                    lost.setdefault(kind.name, []).append(job.id)
    for name, ids in lost.items():
        logger.warning("marked %s %s failed: worker lost", JOB_KINDS[name].label, ids)
    stalled = procrastinate_stalled_fail(older_than_s=older_than_s)
    if stalled:
        lost["procrastinate"] = stalled
    return lost


def procrastinate_stalled_fail(*, older_than_s: float | None = None) -> list[int]:
    """Mark failed the Procrastinate jobs left `doing` by workers that stopped heartbeating (or were pruned).

    Procrastinate finds them (its `get_stalled_jobs` query) but leaves them for the application to retry or
    fail; our rows say what happened to the work, so its job is only closed: failed, never retried here (a
    round is resumed, a generation job run again, by an admin who sees why it failed).
    """
    from django.conf import settings
    from procrastinate import sql

    seconds = settings.WORKER_LOST_AFTER_SECONDS if older_than_s is None else older_than_s
    with connection.cursor() as cursor:
        cursor.execute(sql.queries["select_stalled_jobs_by_heartbeat"],
                       {"queue": None, "task_name": None, "seconds_since_heartbeat": seconds})
        ids = [row[0] for row in cursor.fetchall()]
        for job_id in ids:
            cursor.execute(sql.queries["finish_job"], {"job_id": job_id, "status": "failed", "delete_job": False})
    if ids:
        logger.warning("closed Procrastinate jobs %s of lost workers as failed", ids)
    return ids


def stage_points_forget(*, stage: RunStage, after_step: int) -> int:
    """Delete a stage's metric points after `after_step`: a resumed stage redoes those steps and reports them
    again, and a curve must show each step once."""
    return stage.points.filter(step__gt=after_step).delete()[0]
