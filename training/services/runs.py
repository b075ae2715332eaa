"""Training rounds as admins handle them: create, cancel, resume, retry, and reap the lost.

The worker's side, running a round's stages as child processes, is `training.services.supervisor`.
"""

import logging
import os
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from annotate.models import CorpusText
from platform_common.errors import Conflict
from training.models import (
    BaseModel,
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


def run_create(
    *, project, by, preset: str = "tiny", recipe: str | None = None, config: dict | None = None,
    base_source: str = "", processes: int = 1, seed: int = 0,
) -> TrainingRun:
    """Create a training round and queue it for a worker.

    The base model is built once per project: a round includes the base stage only while the
    project has none (or when `base_source` names a base to adopt: a registered base model, or a model
    directory under settings.BASE_MODEL_ROOTS). Every round
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
        # Stored as the real directory it resolved to, not the text given: the worker and the stage's child
        # adopt exactly the folder that passed the fence, with no registry or settings of their own, and the
        # round records what it started from (retrying it resolves the same folder again).
        base_source = str(_base_directory(base_source))
    has_base = ModelVersion.objects.filter(project=project, kind=ModelKind.BASE).exists()
    names = stages.recipe_stages(recipe, with_base=bool(base_source or not has_base))
    unknown = set(config) - set(names)
    if unknown:
        raise ValidationError({"config": f"no stage named {', '.join(sorted(unknown))} in this round ({', '.join(names)})"})
    if "base" in names and not base_source and not CorpusText.objects.filter(project=project).exists():
        raise ValidationError({
            "base_source": "the project has no base model and no pretraining text to build one from: import a "
            "text corpus (format text) or name a base model to adopt"
        })
    problems = []
    for name in names:
        if not isinstance(config.get(name, {}), dict):
            problems.append(f"{name}: the configuration must be an object of settings")
            continue
        problems += stage_problems(name, preset, config.get(name, {}), processes=processes)
        problems += _reward_function_problems(name, config.get(name, {}))
    if "screen" in names:
        from training.services.screening import classifier_problems

        problems += classifier_problems(project=project)
    if not problems and base_source:
        _check_adoptable(base_source, names=names, preset=preset, config=config)
    if not problems:
        # The rows the data has now, checked as the worker checks them once it has exported: "too few rows" or a
        # batch larger than the data is a 400 now, not a failed round minutes later.
        for name in names:
            if name == "base" and base_source:
                continue
            problems += stage_problems(name, preset, config.get(name, {}), processes=processes,
                                       train_rows=train_rows_now(project=project, kind=stages.STAGES[name].reads))
    if problems:
        raise ValidationError({"config": problems})
    project_store_check(project=project)
    with transaction.atomic():
        # Locked: two admins starting rounds at the same moment are counted one after the other.
        type(project).objects.select_for_update().filter(pk=project.pk).first()
        active = TrainingRun.objects.filter(project=project, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).count()
        if active >= settings.PROJECT_MAX_ACTIVE_ROUNDS:
            raise Conflict({"status": f"the project has {active} rounds queued or running, and may have at most "
                                      f"{settings.PROJECT_MAX_ACTIVE_ROUNDS} at once (PROJECT_MAX_ACTIVE_ROUNDS): "
                                      "wait for one to end, or cancel one"})
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


# The most train rows train_rows_now counts: every check on a row count asks for fewer (a global batch, a
# minimum), and a big project's export takes minutes.
ROWS_COUNTED = 10_000


class _Discarded:
    """Where the preference rows' side files (rankings, consensus) go when only rows are counted."""

    def write(self, split, row):
        pass


def train_rows_now(*, project, kind: str) -> int:
    """Return how many train rows an export of `kind` would have now, up to ROWS_COUNTED (10**9 beyond it)."""
    from collections import defaultdict

    from training.exporters import rows

    # As snapshots._write exports the kind, with the default filters a round uses.
    produced = rows.kind_rows(kind, project, defaultdict(_Discarded))
    counted = 0
    try:
        for split, _row in produced:
            counted += split == "train"
            if counted >= ROWS_COUNTED:
                return 10**9
    finally:
        produced.close()
    return counted


def project_store_used(*, project) -> int:
    """Return the bytes the project's snapshots and models take in the stores."""
    used = 0
    for store in (settings.SNAPSHOT_STORE, settings.MODEL_STORE):
        for folder, _dirs, files in os.walk(store / f"project-{project.id}"):
            for name in files:
                try:
                    used += os.lstat(os.path.join(folder, name)).st_size
                except OSError:
                    continue  # removed while we walked
    return used


def project_store_check(*, project) -> None:
    """Refuse new work that writes to the stores once the project has used its quota (PROJECT_STORE_QUOTA_GB)."""
    if not settings.PROJECT_STORE_QUOTA_GB:
        return
    used, quota = project_store_used(project=project), settings.PROJECT_STORE_QUOTA_GB * 10**9
    if used >= quota:
        raise Conflict({"status": f"the project's snapshots and models take {used / 10**9:.2f} GB of its "
                                  f"{settings.PROJECT_STORE_QUOTA_GB} GB (PROJECT_STORE_QUOTA_GB): delete old "
                                  "snapshots (manage.py snapshot_prune) or ask for more"})


def base_source_resolve(*, base_source: str) -> Path:
    """Return the real directory a round's `base_source` names, or refuse it as run_create does: for a caller that
    checks a base before it starts a round (the demo, before its annotators work for minutes)."""
    return _base_directory(base_source)


def _base_directory(base_source: str) -> Path:
    """Return the real directory `base_source` names: a registered base model, or a folder under BASE_MODEL_ROOTS.

    Never one in the model or snapshot store (other projects' models and data), even where a root holds
    them. `..` and symlinks are resolved before the fence, so neither leaves a root. A path outside the
    roots is refused in the same words whether it exists or not: the answer tells nothing about the server.
    """
    roots = [Path(os.path.realpath(root)) for root in settings.BASE_MODEL_ROOTS]
    refused = ValidationError({"base_source": "base_source must be the name of a registered base model or a model "
                                              f"directory under one of BASE_MODEL_ROOTS ({', '.join(map(str, roots))})"})
    if "\x00" in base_source:  # no path or name has one; the database and os.path refuse it with an exception
        raise refused
    registered = BaseModel.objects.filter(name=base_source).first()
    if registered is not None:
        refused = ValidationError({"base_source": f"the base model {registered.name!r} is registered at "
                                                  f"{registered.folder}, which is not under BASE_MODEL_ROOTS"})
    given = Path(registered.folder if registered else base_source)
    if not given.is_absolute():
        raise refused
    real = Path(os.path.realpath(given))
    stores = [Path(os.path.realpath(store)) for store in (settings.MODEL_STORE, settings.SNAPSHOT_STORE)]
    if not any(real.is_relative_to(root) for root in roots) or any(real.is_relative_to(s) for s in stores):
        raise refused
    # Inside a root, the admin's own folder: saying what is there tells nothing new.
    if not real.is_dir():
        raise ValidationError({"base_source": f"{real} is not a directory"})
    limit = TrainingRun._meta.get_field("base_source").max_length  # the real path may be longer than the text given
    if len(str(real)) > limit:
        raise ValidationError({"base_source": f"the directory's real path {real} is longer than {limit} characters"})
    return real


def _check_adoptable(directory: str, *, names, preset, config):
    """Refuse a directory that is not a model to adopt, or whose context is shorter than a stage's rows;
    the base stage's child checks it again (trainer_config.config_problems) before loading it."""
    problems = [f"{directory}: {p}" for p in trainer_config.adoption_problems(directory)]
    if not problems:
        for name in names:
            merged = trainer_config.stage_config(name, preset, config.get(name, {}))
            problems += [f"{name}: {p}" for p in
                         trainer_config.context_problems(directory, merged, name="adopted model")]
    if problems:
        raise ValidationError({"base_source": problems})


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
        if not run.resumable:
            raise Conflict({"status": f"round {run.number} was refused for its data or settings, and would be "
                                      "refused again: retry it with other settings, or once there is more data"})
        run.stages.filter(status__in=[StageStatus.FAILED, StageStatus.RUNNING]).update(
            status=StageStatus.PENDING, resume=True, error=""
        )
        run.stages.filter(status=StageStatus.NOT_RUN).update(status=StageStatus.PENDING)
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


def runs_reap_lost(*, older_than_s: float | None = None) -> list[int]:
    """Mark running rounds whose worker stopped heartbeating (for WORKER_LOST_AFTER_SECONDS, or `older_than_s`)
    as failed (worker lost); return their ids. The reaper of every job kind is training.jobs.jobs_reap_lost."""
    from training.jobs import jobs_reap_lost

    return jobs_reap_lost(older_than_s=older_than_s).get("round", [])


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


def reward_functions_offered() -> dict[str, str]:
    """Return the installation's verifiable reward functions (settings.REWARD_FUNCTIONS), dotted path by name."""
    return {path.rpartition(".")[2]: path for path in settings.REWARD_FUNCTIONS}


def _reward_function_problems(name, overrides):
    """Refuse reward functions the installation does not offer: a round names them, and only the paths the
    installation lists are handed to the trainer (supervisor._spec), so no code an admin types is imported."""
    chosen = overrides.get("reward_functions") if isinstance(overrides, dict) else None
    if not isinstance(chosen, list) or "reward_functions" not in stages.STAGES[name].settings.model_fields:
        return []  # the stage's settings check says what is wrong with anything else
    offered = reward_functions_offered()
    unknown = [function for function in chosen if isinstance(function, str) and function not in offered]
    if not unknown:
        return []
    return [f"{name}: no reward function named {', '.join(map(repr, unknown))} in this installation: it offers "
            f"{', '.join(offered) or 'none'} (the REWARD_FUNCTIONS setting)"]


def run_finish(run, status, error=""):
    run.status, run.error, run.finished_at = status, error, timezone.now()
    run.save(update_fields=["status", "error", "finished_at", "updated_at"])
