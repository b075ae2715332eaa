"""The content screen's settings as admins change them, and its backfill as a job a worker runs.

annotate.services.screening owns what the screen finds and does (screen_configure, screen_backfill); this module
is the job around the backfill (a ScreenJob row: claimed, beating, counting texts as it goes, cancellable between
batches, failed with its reason, reaped through training.jobs.JOB_KINDS) and the one place where a change that
switches a project's screen on queues it, so the page and the API do the same.
"""

import logging

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from annotate.services.screening import screen_backfill, screen_configure, screen_settings
from platform_common.errors import Conflict
from platform_common.jobs import Heartbeat, JobStatus, job_cancel_requested, job_claim, job_finish, tolerant
from training.models import ScreenJob

logger = logging.getLogger(__name__)


class ScreenStopped(Exception):
    """An admin cancelled the backfill, or the reaper gave it up, between two batches."""


def screen_update(*, project, by, enabled: bool | None = None, actions: dict | None = None,
                  words: list[str] | None = None, classifier_min_flags: int | None = None):
    """Change a project's screen; return its settings and the backfill job queued if this switched it on.

    `actions` changes only the kinds it names ({"human": {"email": "block"}}); the others keep their setting.
    All or nothing: a refused change (an unknown kind, source or action) leaves the settings and the queue as
    they were.
    """
    with transaction.atomic():
        if actions is not None:
            actions = _actions_merged(screen_settings(project=project).actions or {}, actions)
        settings, switched_on = screen_configure(project=project, enabled=enabled, actions=actions, words=words,
                                                 classifier_min_flags=classifier_min_flags)
        job = screen_job_enqueue(project=project, by=by) if switched_on else None
    return settings, job


def _actions_merged(stored: dict, given) -> dict:
    """The stored actions with the given ones over them; anything malformed passes through untouched, for
    screen_configure to refuse by name."""
    if not isinstance(given, dict) or not all(isinstance(kinds, dict) for kinds in given.values()):
        return given
    merged = {source: dict(kinds) for source, kinds in stored.items()}
    for source, kinds in given.items():
        merged.setdefault(source, {}).update(kinds)
    return merged


def screen_job_enqueue(*, project, by) -> ScreenJob:
    """Record a backfill of everything the project has stored and queue it once the caller's transaction commits.

    One still waiting for a worker is returned instead of a second: it reads the project's settings when it
    starts, so it screens with whatever changed since. Refused while the screen is off (a backfill holds messages
    as the screen would, which a project whose screen is off has not asked for).
    """
    if not screen_settings(project=project).enabled:
        raise ValidationError({"enabled": "the project's screen is off; switch it on first (that queues a backfill)"})
    waiting = ScreenJob.objects.filter(project=project, status=JobStatus.QUEUED).order_by("-id").first()
    if waiting is not None:
        return waiting
    from training.tasks import screen_execute

    job = ScreenJob.objects.create(project=project, requested_by=by)
    transaction.on_commit(lambda: screen_execute.configure(queueing_lock=f"screen-{job.id}").defer(job_id=job.id))
    return job


def screen_job_execute(*, job_id: int) -> str:
    """Run a queued backfill in this worker; return its final status."""
    if not job_claim(ScreenJob, job_id):
        return ScreenJob.objects.get(id=job_id).status
    job = ScreenJob.objects.select_related("project").get(id=job_id)
    with Heartbeat(ScreenJob, job.id):
        try:
            if not screen_settings(project=job.project).enabled:
                job_finish(ScreenJob, job.id, JobStatus.CANCELLED, "the screen was switched off before the backfill ran")
                return ScreenJob.objects.get(id=job_id).status
            counts = screen_backfill(project=job.project, progress=lambda done, total, counts: _progress(job.id, done, total, counts))
        except ScreenStopped:
            job_finish(ScreenJob, job.id, JobStatus.CANCELLED, "cancelled; the findings recorded so far are kept")
        except Exception as error:  # noqa: BLE001 - the job must end failed and say why, never stay running
            logger.exception("screen job %s failed", job.id)
            job_finish(ScreenJob, job.id, JobStatus.FAILED, f"{type(error).__name__}: {error}")
        else:
            job_finish(ScreenJob, job.id, JobStatus.SUCCEEDED, counts=counts)
    return ScreenJob.objects.get(id=job_id).status


def _progress(job_id: int, done: int, total: int, counts: dict) -> None:
    """Record how far the backfill is (after each batch, committed), then stop if it was cancelled."""
    tolerant(lambda: ScreenJob.objects.filter(id=job_id).update(
        texts_done=done, texts_total=total, counts=dict(counts), updated_at=timezone.now()),
        what=f"recording the progress of screen job {job_id}")
    if job_cancel_requested(ScreenJob, job_id):
        raise ScreenStopped


def screen_job_cancel(*, job: ScreenJob) -> ScreenJob:
    """Stop a backfill: a queued one at once, a running one after the batch it is screening (what it recorded is
    kept; a later backfill finds the rest)."""
    with transaction.atomic():
        locked = ScreenJob.objects.select_for_update().get(pk=job.pk)
        if locked.status == JobStatus.QUEUED:
            job_finish(ScreenJob, locked.id, JobStatus.CANCELLED, "cancelled before a worker started it")
        elif locked.status == JobStatus.RUNNING:
            ScreenJob.objects.filter(pk=locked.pk).update(cancel_requested=True, updated_at=timezone.now())
        else:
            raise Conflict({"status": f"screen job {locked.id} has ended ({locked.status}); nothing to cancel"})
    return ScreenJob.objects.get(pk=job.pk)


# Messages with a live flag that makes them harmful to the classifier (as the flags export counts them: a label
# older than an admin's clearing of the message was overruled).
FLAGGED = """
SELECT count(DISTINCT l.message_id) FROM annotate_label l JOIN annotate_message m ON m.id = l.message_id
WHERE m.project_id = %s AND l.flags && %s::varchar[] AND l.updated_at > coalesce(m.cleared_at, '-infinity')
"""


def classifier_flags(*, project) -> int:
    """How many of the project's messages annotators flagged toxic, spam or off task (the classifier's positives)."""
    from django.db import connection

    from training.exporters.rows import HARMFUL_FLAGS

    with connection.cursor() as cursor:
        cursor.execute(FLAGGED, [project.id, list(HARMFUL_FLAGS)])
        return cursor.fetchone()[0]


def classifier_status(*, project) -> dict:
    """The screen classifier as the settings answer it: the version chosen (or None), the flags the project
    has, and how many more it needs before a screen round may train one."""
    from annotate.models import ScreenSettings
    from training.models import ScreenClassifier

    screen_settings(project=project)  # made on first use
    # Read here, not from the copy screen_settings keeps on the project object: a change made since counts.
    settings = ScreenSettings.objects.get(project=project)
    flags = classifier_flags(project=project)
    chosen = ScreenClassifier.objects.filter(project=project).select_related("model_version").first()
    return {"chosen": chosen and {"model_version": chosen.model_version_id, "version": chosen.model_version.version,
                                  "threshold": chosen.threshold, "metrics": chosen.model_version.metrics},
            "flags": flags, "min_flags": settings.classifier_min_flags,
            "flags_needed": max(0, settings.classifier_min_flags - flags)}


def classifier_problems(*, project) -> list[str]:
    """Why a screen round may not train now: too few flags (the screen's classifier_min_flags)."""
    status = classifier_status(project=project)
    if not status["flags_needed"]:
        return []
    return [f"screen: the screen classifier trains once annotators have flagged at least {status['min_flags']} "
            f"messages toxic, spam or off task (the screen's classifier_min_flags); the project has "
            f"{status['flags']}, {status['flags_needed']} to go"]


def classifier_choose(*, project, by, model_version_id: int | None, threshold: float = 0.5):
    """Make a screen classifier version the project's screen, at `threshold` (the probability of harmful above
    which it finds a text), or with None stop using one. Refuses a version of another kind or project."""
    from training.models import ModelKind, ModelVersion, ScreenClassifier

    if model_version_id is None:
        ScreenClassifier.objects.filter(project=project).delete()
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        raise ValidationError({"threshold": f"threshold must be a number between 0 and 1 (both excluded), not {threshold!r}"})
    version = ModelVersion.objects.filter(project=project, id=model_version_id).first()
    if version is None:
        raise ValidationError({"model_version": f"the project has no model version {model_version_id}"})
    if version.kind != ModelKind.SCREEN:
        raise ValidationError({"model_version": f"version {model_version_id} is a {version.kind} model, not a screen "
                                                "classifier: train one with a round of the screen recipe"})
    chosen, _ = ScreenClassifier.objects.update_or_create(
        project=project, defaults={"model_version": version, "threshold": float(threshold), "chosen_by": by})
    return chosen
