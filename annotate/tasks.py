"""Job entry points of the annotate app (Procrastinate): thin, they call a service. Their lifecycle is
platform_common.jobs; the reaper in every worker (training.jobs) fails the ones whose worker was lost."""

import logging

from procrastinate.contrib.django import app

logger = logging.getLogger(__name__)


@app.task(name="annotate.import_execute", queue="exports")
def import_execute(*, job_id: int) -> str:
    """Import an uploaded file in a worker (a big file takes minutes); return the import job's status. On the
    exports queue: file and database work on a CPU, like an export."""
    from annotate.services import imports

    status = imports.import_execute(job_id=job_id)
    logger.info("import job %s: %s", job_id, status)
    return status
