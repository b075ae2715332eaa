"""Exports through the API: queued for a worker, listed when done, files downloadable (admins)."""

import json

import pytest

from annotate.models import Ranking
from tests.annotate.factories import ranking_items
from tests.helpers import run_queued_jobs
from training.models import DatasetSnapshot


@pytest.fixture(autouse=True)
def snapshot_store(tmp_path, settings):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_admin_exports_through_a_worker_and_downloads_the_file(api_as, owner, member, outsider, project):
    for candidate_set in ranking_items(project, 5, k=3):
        Ranking.objects.create(candidate_set=candidate_set, annotator=member, tiers=[[m] for m in candidate_set.message_ids])
    url = f"/api/projects/{project.id}/snapshots/export/"
    assert api_as(member).post(url, {"kind": "preference"}, format="json").status_code == 403
    assert api_as(outsider).post(url, {"kind": "preference"}, format="json").status_code == 404
    assert api_as(owner).post(url, {"kind": "gossip"}, format="json").status_code == 400
    queued = api_as(owner).post(url, {"kind": "preference"}, format="json")
    assert queued.status_code == 202
    assert not DatasetSnapshot.objects.exists()  # nothing until the worker has run
    run_queued_jobs()
    listed = api_as(owner).get(f"/api/projects/{project.id}/snapshots/").json()["results"]
    assert [(s["kind"], s["version"], sum(s["rows"].values())) for s in listed] == [("preference", 1, 15)]
    assert DatasetSnapshot.objects.get().created_by == owner
    name = next(f["name"] for f in listed[0]["files"] if f["name"].startswith("preference-train") and f["format"] == "jsonl")
    file_url = f"/api/projects/{project.id}/snapshots/{listed[0]['id']}/files/{name}"
    download = api_as(owner).get(file_url)
    body = b"".join(download.streaming_content)
    assert download.status_code == 200 and json.loads(body.splitlines()[0])["chosen"][0]["role"] == "assistant"
    assert api_as(member).get(file_url).status_code == 403
    assert api_as(owner).get(f"/api/projects/{project.id}/snapshots/{listed[0]['id']}/files/..%2Fsecret_key").status_code == 404
    assert api_as(member).get(f"/api/projects/{project.id}/snapshots/").status_code == 403
