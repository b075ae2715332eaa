"""A model store that fills up mid-round: the round fails saying so, and nothing half-written is registered.

The store is a small tmpfs mounted for the test (CI runs as root: a refused mount fails the test, never skips it).
"""

import subprocess

import pytest

from training.models import ModelVersion, RunStatus, StageStatus
from training.services import runs, supervisor
from tests.training.factories import arithmetic_project

pytestmark = [pytest.mark.slow, pytest.mark.training, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def small_store(tmp_path, settings):
    store = tmp_path / "models"
    store.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(store)], capture_output=True,
                             text=True)
    assert mounted.returncode == 0, f"could not mount a tmpfs for the model store: {mounted.stderr}"
    settings.MODEL_STORE, settings.SNAPSHOT_STORE = store, tmp_path / "snapshots"
    try:
        yield store
    finally:
        subprocess.run(["umount", "-l", str(store)], check=False)


def test_a_full_model_store_fails_the_round_with_no_space_left_and_registers_nothing(project, member, owner,
                                                                                  small_store):
    arithmetic_project(project, member, prompts=40)
    run = runs.run_create(project=project, by=owner, preset="tiny", config={"base": {"max_steps": 2}})

    assert supervisor.run_execute(run_id=run.id) == RunStatus.FAILED

    run.refresh_from_db()
    assert "No space left on device" in run.error, run.error
    assert str(small_store) in run.error
    assert not ModelVersion.objects.exists()
    assert run.stages.get(name="base").status == StageStatus.FAILED
    assert set(run.stages.exclude(name="base").values_list("status", flat=True)) == {StageStatus.NOT_RUN}
