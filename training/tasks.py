"""Job entry points (Procrastinate): thin, they load what they need and call a service."""

import logging

from procrastinate.contrib.django import app

from annotate.models import Project
from training import services

logger = logging.getLogger(__name__)


@app.task(name="training.snapshot_export", queue="exports")
def snapshot_export(*, project_id: int, kind: str, demonstrations: str = "accepted", filters: dict | None = None,
                    parquet: bool = True, requested_by: int | None = None) -> int:
    """Export a snapshot in a worker (big projects take minutes); return its id."""
    project = Project.objects.get(pk=project_id)
    snapshot = services.snapshot_create(
        project=project, kind=kind, demonstrations=demonstrations, filters=filters, parquet=parquet,
        by_id=requested_by,
    )
    logger.info("exported %s", snapshot)
    return snapshot.id


@app.task(name="training.run_execute", queue="training")
def run_execute(*, run_id: int) -> str:
    """Run a training round's stages (minutes to hours); return its final status."""
    from training.services import supervisor

    status = supervisor.run_execute(run_id=run_id)
    logger.info("training round %s: %s", run_id, status)
    return status


# Every 30 seconds: a worker that died mid-round leaves it visibly failed, never running forever.
@app.periodic(cron="* * * * * */30", periodic_id="reap-lost-runs")
@app.task(name="training.runs_reap_lost", queue="training-maintenance", queueing_lock="reap-lost-runs")
def runs_reap_lost(timestamp: int) -> None:
    from training.services import runs

    lost = runs.runs_reap_lost()
    if lost:
        logger.warning("marked training rounds %s failed: worker lost", lost)


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


# As for rounds: a worker that died mid-conversion leaves it visibly failed, never running forever.
@app.periodic(cron="* * * * * */30", periodic_id="reap-lost-conversions")
@app.task(name="training.base_conversions_reap_lost", queue="training-maintenance",
          queueing_lock="reap-lost-conversions")
def base_conversions_reap_lost(timestamp: int) -> None:
    from training.services import bases

    lost = bases.base_conversions_reap_lost()
    if lost:
        logger.warning("marked base model conversions %s failed: worker lost", lost)
