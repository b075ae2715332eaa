"""One lifecycle for every row that a worker runs: claim, heartbeat, cancel, finish with a reason, reap.

A job row (a training round, a generation job, an export, a model conversion) is the truth about its job; the
Procrastinate job that carries it is only the delivery. Every job model has the fields of `Job` below (the older
ones, TrainingRun and BaseConversion, declare the same names themselves), so the functions here take the model and
an id and need to know nothing else. Procrastinate's own heartbeat says whether a *worker* is alive; this one says
whether the worker is still running *this* job: a training child can outlive a stuck worker loop, and a job's page
must show when it was last heard from.

Every write here tolerates a database that is away for a moment (`tolerant`): a heartbeat missed during a
restart is written at the next beat, and the job goes on.
"""

import contextlib
import logging
import os
import socket
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import OperationalError, InterfaceError, close_old_connections, connection, models
from django.db.models.functions import Coalesce
from django.utils import timezone

from platform_common.models import TimeStamped

logger = logging.getLogger(__name__)

# How often a running job writes its heartbeat; WORKER_LOST_AFTER_SECONDS (at least 5) is the reaper's patience.
HEARTBEAT_SECONDS = 5
# The errors of a database that is restarting or unreachable: the next attempt may succeed.
DATABASE_AWAY = (OperationalError, InterfaceError)


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


UNFINISHED = (JobStatus.QUEUED, JobStatus.RUNNING)


class Job(TimeStamped):
    """The fields every job row has (see the module's docstring)."""

    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    error = models.TextField(blank=True, help_text="why it failed or was cancelled, for the admin who reads it")
    cancel_requested = models.BooleanField(default=False)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="host and pid of the worker running it")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    def is_finished(self) -> bool:
        return self.status not in UNFINISHED


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def job_claim(model, job_id: int, **fields) -> bool:
    """Take a queued job for this worker; False if another worker got there first or an admin cancelled it.

    Atomic (one UPDATE ... WHERE status = queued): two workers handed the same job both try, one wins.
    `started_at` keeps the first start, so a resumed round still says when it began.
    """
    now = timezone.now()
    return model.objects.filter(id=job_id, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING, worker=worker_name(), heartbeat_at=now, started_at=Coalesce("started_at", now),
        finished_at=None, updated_at=now, **fields,
    ) == 1


def job_finish(model, job_id: int, status: str, error: str = "", **fields) -> bool:
    """End an unfinished job with `status` and, for a failure, its reason; False if it had ended already
    (the reaper, a cancel or another worker ended it first: the first ending stands)."""
    now = timezone.now()
    return model.objects.filter(id=job_id, status__in=UNFINISHED).update(
        status=status, error=error[:4000], finished_at=now, updated_at=now, **fields,
    ) == 1


def job_cancel_requested(model, job_id: int) -> bool:
    """Whether an admin asked to cancel the job, or it ended under the worker (the reaper gave it up)."""
    return not model.objects.filter(id=job_id, status=JobStatus.RUNNING, cancel_requested=False).exists()


def jobs_lost(model, *, older_than_s: float | None = None):
    """The running jobs of `model` whose heartbeat is older than WORKER_LOST_AFTER_SECONDS (or `older_than_s`)."""
    seconds = settings.WORKER_LOST_AFTER_SECONDS if older_than_s is None else older_than_s
    return model.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=timezone.now() - timedelta(seconds=seconds))


def lost_reason(job) -> str:
    return (f"worker lost: no heartbeat from {job.worker or 'its worker'} since "
            f"{timezone.localtime(job.heartbeat_at):%Y-%m-%d %H:%M:%S}")


def tolerant(write, *, what: str) -> bool:
    """Run a database write; if the database is away, drop the connection, log, and return False instead of
    raising: the caller tries again at its next tick, and whatever it runs goes on meanwhile."""
    try:
        write()
        return True
    except DATABASE_AWAY as error:
        logger.warning("database away while %s: %s", what, type(error).__name__)
        try:
            connection.close()
        except DATABASE_AWAY:
            pass
        return False


def database_wait(*, seconds: float) -> bool:
    """Wait until the database answers, up to `seconds`; return whether it does. For a worker about to write what
    must not be lost (a stage's model registered) after the database may have gone away meanwhile."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return True
        except DATABASE_AWAY:
            with contextlib.suppress(*DATABASE_AWAY):
                connection.close()
            if time.monotonic() >= deadline:
                return False
            time.sleep(1)


class Heartbeat:
    """Write a running job's heartbeat from a thread while the worker runs it, riding out database restarts."""

    def __init__(self, model, job_id: int, *, seconds: float = HEARTBEAT_SECONDS, progress=None):
        # `progress`: a callable giving fields written with each beat (how far the job is), for a job whose own
        # writes sit in a transaction nobody else sees until it commits (an import).
        self.model, self.job_id, self.seconds, self.progress = model, job_id, seconds, progress
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"heartbeat-{model.__name__}-{job_id}", daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

    def _beat(self):
        running = self.model.objects.filter(id=self.job_id, status=JobStatus.RUNNING)
        try:
            while not self.stop.wait(self.seconds):
                try:
                    close_old_connections()
                    fields = self.progress() if self.progress is not None else {}
                    tolerant(lambda: running.update(heartbeat_at=timezone.now(), **fields), what=f"beating {self.thread.name}")
                except Exception:  # noqa: BLE001 - a heartbeat that dies lets the reaper fail a job that runs on
                    logger.exception("the heartbeat of %s failed; beating on", self.thread.name)
                    with contextlib.suppress(Exception):
                        connection.close()
        finally:
            with contextlib.suppress(Exception):
                connection.close()


class Reaper:
    """Call `reap` every `seconds` from a thread of a worker process, whatever jobs the worker runs.

    Every worker runs one, so a lone `--queues training` worker reaps too. After the database was away, the
    jobs' heartbeats were missed for as long: the reaper then waits one WORKER_LOST_AFTER_SECONDS before it
    reaps again, so that the workers that ride out the restart have beaten again by then.
    """

    def __init__(self, reap, *, seconds: float):
        self.reap, self.seconds = reap, seconds
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="job-reaper", daemon=True)
        self.patient_until = 0.0

    def start(self):
        self.thread.start()
        return self

    def close(self):
        self.stop.set()
        self.thread.join(timeout=self.seconds + 5)

    def _loop(self):
        try:
            while not self.stop.wait(self.seconds):
                if time.monotonic() < self.patient_until:
                    continue
                close_old_connections()
                try:
                    self.reap()
                except DATABASE_AWAY as error:
                    logger.warning("database away while reaping lost jobs: %s", type(error).__name__)
                    self.patient_until = time.monotonic() + settings.WORKER_LOST_AFTER_SECONDS
                    try:
                        connection.close()
                    except DATABASE_AWAY:
                        pass
                except Exception:  # noqa: BLE001 - a reaper that dies reaps nothing ever again
                    logger.exception("reaping lost jobs failed")
        finally:
            connection.close()
