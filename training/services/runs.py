"""Training rounds as admins handle them: create, cancel, resume, retry, and reap the lost.

The worker's side, running a round's stages as child processes, is `training.services.supervisor`.
"""

import logging
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from annotate.models import CorpusText
from platform_common.errors import Conflict
from training.models import (
    ModelKind,
    ModelVersion,
    RunStage,
    RunStatus,
    StageStatus,
    TrainingRun,
)
from training.trainers import config as trainer_config
from training.trainers import stages

logger = logging.getLogger(__name__)

# A running round whose worker has not written a heartbeat for this long is taken as lost.
LOST_AFTER_SECONDS = 60



def run_create(
    *, project, by, preset: str = "tiny", recipe: str | None = None, config: dict | None = None,
    base_source: str = "", processes: int = 1, seed: int = 0,
) -> TrainingRun:
    """Create a training round and queue it for a worker.

    The base model is built once per project: a round includes the base stage only while the
    project has none (or when `base_source` names a local model directory to adopt). Every round
    then trains SFT from that base on all accepted demonstrations so far and the policy from that
    SFT model: with PPO or RLOO after a reward model trained from the SFT model on all comparisons,
    with DPO on the comparisons directly: `recipe` names which (training.trainers.stages.RECIPES;
    the default is ppo where the installed TRL has it). It is stored as the round's `algorithm`. The configuration is checked here,
    before anything starts; row counts are checked again in the worker, once the data is exported.
    """
    config = dict(config or {})
    recipe = recipe or stages.default_recipe()
    if stages.unavailable_reason(recipe):
        raise ValidationError({"recipe": stages.unavailable_reason(recipe)})
    if recipe not in stages.RECIPES:
        raise ValidationError({"recipe": f"recipe must be one of {', '.join(stages.RECIPES)}, not {recipe!r}"})
    if preset not in trainer_config.PRESETS:
        raise ValidationError({"preset": f"preset must be one of {', '.join(trainer_config.PRESETS)}"})
    if not 1 <= processes <= 64:
        raise ValidationError({"processes": "processes must be between 1 and 64"})
    if base_source:
        source = Path(base_source)
        if not source.is_absolute() or not (source / "config.json").is_file():
            raise ValidationError({"base_source": f"{base_source} is not a local model directory (absolute path with a config.json)"})
    has_base = ModelVersion.objects.filter(project=project, kind=ModelKind.BASE).exists()
    names = stages.recipe_stages(recipe, with_base=bool(base_source or not has_base))
    unknown = set(config) - set(names)
    if unknown:
        raise ValidationError({"config": f"no stage named {', '.join(sorted(unknown))} in this round ({', '.join(names)})"})
    if "base" in names and not base_source and not CorpusText.objects.filter(project=project).exists():
        raise ValidationError({
            "base_source": "the project has no base model and no pretraining text to build one from: import a "
            "text corpus (format text) or give a local model directory"
        })
    problems = []
    for name in names:
        if not isinstance(config.get(name, {}), dict):
            problems.append(f"{name}: the configuration must be an object of settings")
            continue
        problems += stage_problems(name, preset, config.get(name, {}), processes=processes)
    if problems:
        raise ValidationError({"config": problems})
    with transaction.atomic():
        for _attempt in range(3):
            number = (TrainingRun.objects.filter(project=project).aggregate(n=Max("number"))["n"] or 0) + 1
            try:
                with transaction.atomic():
                    run = TrainingRun.objects.create(
                        project=project, number=number, preset=preset, algorithm=recipe, config=config,
                        base_source=base_source, processes=processes, seed=seed, created_by=by,
                    )
                break
            except IntegrityError:
                continue  # another admin started a round at the same moment; take the next number
        else:
            raise Conflict({"number": "could not number the round; try again"})
        RunStage.objects.bulk_create(RunStage(run=run, order=i, name=name) for i, name in enumerate(names))
        _enqueue(run)
    return run


def run_cancel(*, run: TrainingRun) -> TrainingRun:
    """Stop a round: a queued one at once, a running one within seconds (its worker kills the stage)."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(pk=run.pk)
        if run.is_finished():
            raise Conflict({"status": f"round {run.number} has already {run.status}"})
        if run.status == RunStatus.QUEUED:
            run_finish(run, RunStatus.CANCELLED, "cancelled before it started")
            run.stages.filter(status=StageStatus.PENDING).update(status=StageStatus.CANCELLED)
        else:
            run.cancel_requested = True
            run.save(update_fields=["cancel_requested", "updated_at"])
    return run


def run_resume(*, run: TrainingRun) -> TrainingRun:
    """Continue a failed round from its last checkpoint; finished stages are kept."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(pk=run.pk)
        if run.status != RunStatus.FAILED:
            raise Conflict({"status": f"only a failed round can be resumed; round {run.number} is {run.status}"})
        run.stages.filter(status__in=[StageStatus.FAILED, StageStatus.RUNNING]).update(
            status=StageStatus.PENDING, resume=True, error=""
        )
        run.status, run.error, run.cancel_requested, run.finished_at = RunStatus.QUEUED, "", False, None
        run.save(update_fields=["status", "error", "cancel_requested", "finished_at", "updated_at"])
        _enqueue(run)
    return run


def run_retry(*, run: TrainingRun, by) -> TrainingRun:
    """Start a new round with the settings of a failed or cancelled one, from the beginning."""
    if run.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
        raise Conflict({"status": f"only a failed or cancelled round can be retried; round {run.number} is {run.status}"})
    retried = run_create(
        project=run.project, by=by, preset=run.preset, recipe=run.algorithm, config=run.config,
        base_source=run.base_source, processes=run.processes, seed=run.seed,
    )
    TrainingRun.objects.filter(pk=retried.pk).update(retry_of=run)
    retried.retry_of = run
    return retried


def runs_reap_lost(*, older_than_s: int = LOST_AFTER_SECONDS) -> list[int]:
    """Mark running rounds whose worker stopped heartbeating as failed (worker lost); return their ids."""
    cutoff = timezone.now() - timezone.timedelta(seconds=older_than_s)
    lost = []
    with transaction.atomic():
        # SKIP LOCKED: a round being claimed or finished right now is not lost.
        for run in TrainingRun.objects.select_for_update(skip_locked=True).filter(
            status=RunStatus.RUNNING, heartbeat_at__lt=cutoff
        ):
            stage = run.stages.filter(status=StageStatus.RUNNING).first()
            where = f" during {stage.name} at step {stage.step}" if stage else ""
            run_finish(run, RunStatus.FAILED, f"worker lost: no heartbeat from {run.worker or 'its worker'} since "
                    f"{run.heartbeat_at:%Y-%m-%d %H:%M:%S}{where}; resume it to continue from the last checkpoint")
            run.stages.filter(status=StageStatus.RUNNING).update(status=StageStatus.FAILED, error="worker lost")
            lost.append(run.id)
    return lost


def _enqueue(run):
    from training.tasks import run_execute

    transaction.on_commit(lambda: run_execute.configure(queueing_lock=f"run-{run.id}").defer(run_id=run.id))


def stage_problems(name, preset, overrides, *, processes, **rows):
    """Reasons to refuse a stage's settings. Before the data is exported (`rows` not given) only
    the settings themselves are checked; the models a stage starts from are checked by the
    trainer when the stage starts, since earlier stages of the same round build them."""
    try:
        merged = trainer_config.stage_config(name, preset, overrides)
    except ValueError as error:
        return [f"{name}: {error}"]
    problems = trainer_config.config_problems(
        name, merged, processes=processes, train_rows=rows.get("train_rows", 10**9),
        eval_rows=rows.get("eval_rows", 0), check_models=False,
    )
    return [f"{name}: {problem}" for problem in problems]


def run_finish(run, status, error=""):
    run.status, run.error, run.finished_at = status, error, timezone.now()
    run.save(update_fields=["status", "error", "finished_at", "updated_at"])
