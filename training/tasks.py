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
