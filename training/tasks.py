"""Job entry points (Procrastinate): thin, they load their row and call a service.

Every job's lifecycle (claim, heartbeat, cancel, finish with a reason) is platform_common.jobs; the reaper that
fails the jobs of lost workers runs in every worker process (manage.py worker, training.jobs), not as a task here:
a periodic task runs only on a worker of its queue, and a training worker is busy for hours.
"""

import logging

from procrastinate.contrib.django import app


logger = logging.getLogger(__name__)


@app.task(name="training.export_execute", queue="exports")
def export_execute(*, job_id: int) -> str:
    """Export a snapshot in a worker (big projects take minutes); return the export job's status."""
    from training.services import exports

    status = exports.export_execute(job_id=job_id)
    logger.info("export job %s: %s", job_id, status)
    return status


@app.task(name="training.run_execute", queue="training")
def run_execute(*, run_id: int) -> str:
    """Run a training round's stages (minutes to hours); return its final status."""
    from training.services import supervisor

    status = supervisor.run_execute(run_id=run_id)
    logger.info("training round %s: %s", run_id, status)
    return status


@app.task(name="training.generation_execute", queue="generation")
def generation_execute(*, job_id: int) -> str:
    """Write generated replies (candidates or arena pairs) in a worker; return the job's status."""
    from training.services import serving

    status = serving.generation_execute(job_id=job_id)
    logger.info("generation job %s: %s", job_id, status)
    return status


@app.task(name="training.base_convert", queue="exports")
def base_convert(*, conversion_id: int) -> str:
    """Convert a GGUF file into a registered base model in a worker (a minute or more); return the job's status."""
    from training.services import bases

    status = bases.base_conversion_execute(conversion_id=conversion_id)
    logger.info("base model conversion %s: %s", conversion_id, status)
    return status


@app.task(name="training.screen_execute", queue="exports")
def screen_execute(*, job_id: int) -> str:
    """Screen everything a project has stored (its screen was switched on, or an admin asked); return the job's
    status. On the exports queue: text work on a CPU, minutes for a big project."""
    from training.services import screening

    status = screening.screen_job_execute(job_id=job_id)
    logger.info("screen job %s: %s", job_id, status)
    return status


# Scoring every open set with the reward model takes up to this long; the queue's order waits meanwhile.
PRIORITIES_SECONDS = 600


@app.task(name="training.priorities_refresh", queue="generation")
def priorities_refresh(*, project_id: int) -> dict:
    """Score the project's open sets with its reward model and recompute the queue's priorities (issue: active
    learning); after a round registers a reward model and after generation writes new candidate sets."""
    from annotate.models import Project
    from training.services import priorities

    figures = priorities.priorities_refresh(project=Project.objects.get(pk=project_id), seconds=PRIORITIES_SECONDS)
    logger.info("priorities of project %s: %s", project_id, figures)
    return figures


def priorities_refresh_soon(*, project_id: int) -> None:
    """Queue a refresh of the project's priorities once the caller's transaction commits; one waits at a time
    (its queueing lock): a refresh asked for while one waits would score the same sets."""
    from django.db import transaction
    from procrastinate import exceptions

    def defer():
        try:
            priorities_refresh.configure(queueing_lock=f"priorities-{project_id}").defer(project_id=project_id)
        except exceptions.AlreadyEnqueued:
            pass

    transaction.on_commit(defer)
