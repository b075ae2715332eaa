"""GET /health/: is the database reachable, and are workers alive (heartbeats)?

Open to anyone, as load balancers and uptime checks need, so it reports only counts and
times: no names, no data.
"""

import time
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


@never_cache
@require_GET
def health(request):
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cutoff = timezone.now() - timedelta(seconds=settings.WORKER_LOST_AFTER_SECONDS)
            cursor.execute(
                "SELECT count(*) FILTER (WHERE last_heartbeat >= %s), max(last_heartbeat) "
                "FROM procrastinate_workers",
                [cutoff],
            )
            alive, last_heartbeat = cursor.fetchone()
    except Exception as error:  # any failure to reach the database is the answer itself
        return JsonResponse(
            {"status": "down", "database": {"ok": False, "error": type(error).__name__}},
            status=503,
        )
    database_ms = round((time.perf_counter() - started) * 1000, 1)
    return JsonResponse(
        {
            "status": "ok" if alive else "degraded",
            "database": {"ok": True, "ms": database_ms},
            "workers": {
                "alive": alive,
                "last_heartbeat": last_heartbeat.isoformat() if last_heartbeat else None,
                "lost_after_seconds": settings.WORKER_LOST_AFTER_SECONDS,
            },
        }
    )
