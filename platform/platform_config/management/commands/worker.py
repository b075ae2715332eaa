"""manage.py worker: a Procrastinate job worker that outlives database restarts, and reaps lost jobs.

`manage.py procrastinate worker` stops (exit code 0) as soon as one of its side tasks (its heartbeat, the abort
poll, the periodic deferrer) meets a database that is away, even for a second, and a worker that is down stays
down. This one runs the same worker in a loop: when it stops without being asked to, it waits (1 s, doubling up
to 30 s) until the database answers and starts again; a job it was running goes on in its thread meanwhile (its
own writes ride out the outage, platform_common.jobs.tolerant) and Procrastinate's shutdown waits for it.
Procrastinate has no such loop of its own (a worker is expected to be restarted by a supervisor); `serve` is
one too, for a worker that is killed.

Beside it, in a thread, the reaper (training.jobs.jobs_reap_lost) runs every REAP_SECONDS on every worker,
whatever its queues.
"""

import asyncio
import contextlib
import logging
import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connection

from platform_common.jobs import DATABASE_AWAY, Reaper

logger = logging.getLogger("platform.worker")

FIRST_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS = 1.0, 30.0
# A worker that ran this long before it stopped had a working database: the backoff starts again from 1 s.
STEADY_SECONDS = 60.0


class Command(BaseCommand):
    help = "Run a job worker (all queues, or --queues) that outlives database restarts and reaps lost jobs."

    def add_arguments(self, parser):
        parser.add_argument("--queues", default="", help="comma-separated queues; all queues when empty")
        parser.add_argument("--no-reaper", action="store_true", help="do not fail the jobs of lost workers here")

    def handle(self, *args, queues, no_reaper, **options):
        from training.jobs import REAP_SECONDS, jobs_reap_lost

        queue_list = [q.strip() for q in queues.split(",") if q.strip()] or None
        reaper = None if no_reaper else Reaper(jobs_reap_lost, seconds=REAP_SECONDS).start()
        try:
            asyncio.run(_serve(queue_list))
        finally:
            if reaper:
                reaper.close()


async def _serve(queues):
    from procrastinate.contrib.django import app

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Procrastinate's heartbeat of the worker, four to a WORKER_LOST_AFTER_SECONDS (/health/ counts a worker alive
    # within it, and the reaper closes the jobs of workers silent for longer).
    lost_after = settings.WORKER_LOST_AFTER_SECONDS
    options = {**getattr(settings, "PROCRASTINATE_WORKER_DEFAULTS", {}), "queues": queues,
               "install_signal_handlers": False, "wait": True, "update_heartbeat_interval": min(10.0, lost_after / 4),
               "stalled_worker_timeout": lost_after}
    backoff = FIRST_BACKOFF_SECONDS
    with app.replace_connector(app.connector.get_worker_connector()):
        while not stop.is_set():
            started = time.monotonic()
            try:
                await app.open_async()
                run = asyncio.create_task(app.run_worker_async(**options), name="procrastinate worker")
                stopper = asyncio.create_task(stop.wait())
                done, _ = await asyncio.wait({run, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if run not in done:
                    # Asked to stop: cancelling the worker stops it gracefully, after the job it runs.
                    run.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await run
                    break
                stopper.cancel()
                run.result()
                logger.warning("the job worker stopped by itself (the database went away?); starting it again")
            except Exception as error:  # noqa: BLE001 - whatever stopped it, a worker that is down stays down
                logger.warning("the job worker stopped: %s: %s; starting it again", type(error).__name__, error)
            finally:
                with contextlib.suppress(Exception):
                    await app.close_async()
            if time.monotonic() - started > STEADY_SECONDS:
                backoff = FIRST_BACKOFF_SECONDS
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                if stop.is_set() or await asyncio.to_thread(_database_answers):
                    break


def _database_answers() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except DATABASE_AWAY:
        return False
    finally:
        with contextlib.suppress(*DATABASE_AWAY):
            connection.close()
