import subprocess
import sys
import time

import pytest
from django.test import Client

from tests.helpers import REPO_ROOT, child_env, stop


@pytest.mark.django_db
def test_health_reports_database_up_and_no_worker():
    response = Client().get("/health/")
    assert response.status_code == 200
    body = response.json()
    assert body["database"]["ok"] is True
    assert body["workers"]["alive"] == 0
    assert body["status"] == "degraded"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_health_sees_a_running_worker_and_loses_it_when_it_stops():
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "procrastinate", "worker"],
        cwd=REPO_ROOT,
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        body = {}
        while time.monotonic() < deadline:
            assert worker.poll() is None, worker.stderr.read()
            body = Client().get("/health/").json()
            if body["workers"]["alive"]:
                break
            time.sleep(0.5)
        assert body["workers"]["alive"] == 1
        assert body["status"] == "ok"
    finally:
        stop(worker)
    # A cleanly stopped worker removes its own row: health shows none alive at once.
    assert worker.returncode == 0
    assert Client().get("/health/").json()["workers"]["alive"] == 0
