"""Imports as jobs (issue 18): a file uploaded through the API is imported by a real worker, with the bytes it has
read showing while it runs; a job whose worker was lost is failed with its reason and its upload deleted."""

import io
import json
import threading
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from annotate.models import ImportJob, Message
from annotate.services import imports
from platform_common.jobs import JobStatus
from tests.helpers import run_queued_jobs
from training.jobs import jobs_reap_lost


@pytest.mark.django_db(transaction=True)
def test_a_worker_imports_the_upload_and_its_progress_shows_while_it_reads(api_as, owner, project, monkeypatch):
    monkeypatch.setattr(imports, "PROGRESS_SECONDS", 0.1)
    lines = "".join(json.dumps({"prompt": f"Prompt {n}: what is {n} + {n * 7}? Say how you know."}) + "\n"
                    for n in range(40_000)).encode()
    api = api_as(owner)
    answer = api.post(f"/api/projects/{project.id}/imports/",
                      {"format": "prompts-jsonl", "file": io.BytesIO(lines), "license": "cc0-1.0"}, format="multipart")
    assert answer.status_code == 202
    url = f"/api/projects/{project.id}/imports/jobs/{answer.json()['id']}/"
    worker = threading.Thread(target=run_queued_jobs)
    worker.start()
    seen = []
    deadline = time.monotonic() + 120
    while worker.is_alive() and time.monotonic() < deadline:
        job = api.get(url).json()
        if job["status"] == "running":
            seen.append(job["bytes_done"])
        time.sleep(0.05)
    worker.join(timeout=5)
    job = api.get(url).json()
    assert job["status"] == "succeeded", job["error"]
    assert job["batch"]["counts"]["messages"] == 40_000 and job["bytes_done"] == job["bytes_total"] == len(lines)
    # The reads between the start and the end were seen from outside the import's transaction, growing.
    between = [done for done in seen if 0 < done < len(lines)]
    assert between and between == sorted(between), seen
    assert Message.objects.filter(project=project).count() == 40_000
    assert not list(settings.IMPORT_STORE.rglob("*.upload"))


@pytest.mark.django_db
def test_an_import_whose_worker_was_lost_fails_saying_so_and_its_upload_goes(owner, project):
    job = imports.import_enqueue(project=project, format="prompts-jsonl", upload=io.BytesIO(b'{"prompt": "Hi"}\n'),
                                 filename="hi.jsonl", by=owner)
    stored = job.path
    assert (settings.IMPORT_STORE / f"project-{project.id}").exists() and open(stored, "rb").read()
    ImportJob.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, worker="gone:1",
                                               heartbeat_at=timezone.now() - timedelta(minutes=5))
    assert jobs_reap_lost(older_than_s=60)["import"] == [job.id]
    job.refresh_from_db()
    assert job.status == "failed" and job.error.startswith("worker lost: no heartbeat from gone:1")
    assert job.error.endswith("nothing was imported, upload the file again")
    assert not Message.objects.exists() and not list(settings.IMPORT_STORE.rglob("*.upload"))
