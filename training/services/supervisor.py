"""The worker's side of a training round: run its stages in order, each as a supervised child process.

Each stage is a child process (`python -m training.trainers.run SPEC`, or `accelerate launch` of it)
that the worker watches: it reads the progress file the trainer appends to, writes steps and metrics
into the database, and kills the child's process group when an admin cancels. Running the stage in a
child is what makes cancelling PPO possible at all: trl 1.12's PPO trainer never checks
`should_training_stop`. A stage's model directory is written whole by the trainer and registered as a
`ModelVersion` only after the child has said it is done, so no failure leaves a half-registered model.
"""

import json
import logging
import os
import shutil
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from training.models import (
    MetricPoint,
    ModelKind,
    ModelVersion,
    RunStage,
    RunStatus,
    StageStatus,
    TrainingRun,
)
from platform_common.jobs import Heartbeat, database_wait, job_claim, tolerant
from training.jobs import stage_points_forget
from training.services.runs import reward_functions_offered, run_finish, stage_problems
from training.services.snapshots import snapshot_create
from training.trainers import adapters
from training.trainers.data import train_rows_problems
from training.trainers.launch import child_command
from training.trainers.stages import STAGES

logger = logging.getLogger(__name__)

# After SIGTERM, how long a stage's child gets before SIGKILL.
KILL_GRACE_SECONDS = 5
# How long a stage that has ended waits for a database that is away before its last progress is given up: the
# model is registered (or the failure recorded) only once the database answers again.
WRITE_PATIENCE_SECONDS = 120


def run_execute(*, run_id: int) -> str:
    """Run a queued round's pending stages in order; return the round's final status."""
    # Another worker may have claimed it first (or an admin cancelled it while queued).
    if not job_claim(TrainingRun, run_id):
        return TrainingRun.objects.get(id=run_id).status
    run = TrainingRun.objects.select_related("project").get(id=run_id)
    with Heartbeat(TrainingRun, run.id):
        try:
            _prepare_data(run)
            for stage in run.stages.order_by("order"):
                if stage.status == StageStatus.SUCCEEDED:
                    continue
                database_wait(seconds=WRITE_PATIENCE_SECONDS)  # a restart between two stages is waited out too
                outcome = _stage_execute(run, stage)
                if outcome != StageStatus.SUCCEEDED:
                    return TrainingRun.objects.get(id=run.id).status
        except _Refused as refused:
            _fail(run, str(refused), resumable=False)
            return RunStatus.FAILED
        except Exception as error:  # noqa: BLE001 - the round must end failed, never running forever
            logger.exception("round %s failed", run.id)
            database_wait(seconds=WRITE_PATIENCE_SECONDS)  # else the reaper fails it, once its heartbeat stops
            _fail(run, f"{type(error).__name__}: {error}")
            return RunStatus.FAILED
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(id=run.id)
        if run.status == RunStatus.RUNNING:
            run_finish(run, RunStatus.SUCCEEDED)
            from training.tasks import priorities_refresh_soon

            priorities_refresh_soon(project_id=run.project_id)  # a new reward model: a new view of what is unsure
    return run.status


class _Refused(Exception):
    """The round cannot start or go on, for a reason an admin can act on (resuming would be refused again)."""


def _fail(run, error, *, resumable=True):
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(id=run.id)
        if run.status == RunStatus.RUNNING:
            run_finish(run, RunStatus.FAILED, error)
            TrainingRun.objects.filter(id=run.id).update(resumable=resumable)
        run.stages.filter(status=StageStatus.RUNNING).update(status=StageStatus.FAILED, error=error[:2000])
        run.stages.filter(status=StageStatus.PENDING).update(status=StageStatus.NOT_RUN)


def _prepare_data(run):
    """Export every stage's data (all feedback so far) and check the settings against the row counts."""
    problems = []
    for stage in run.stages.order_by("order"):
        if stage.status == StageStatus.SUCCEEDED:
            continue
        if stage.snapshot_id is None and not (stage.name == "base" and run.base_source):
            kind = STAGES[stage.name].reads
            try:
                stage.snapshot = snapshot_create(project=run.project, kind=kind, by_id=run.created_by_id, parquet=False)
            except ValidationError as error:
                raise _Refused(f"{stage.name}: {' '.join(error.messages)}") from None
            stage.save(update_fields=["snapshot", "updated_at"])
        if stage.snapshot_id:
            rows = stage.snapshot.rows
            problems += stage_problems(
                stage.name, run.preset, run.config.get(stage.name, {}), processes=run.processes,
                train_rows=rows.get("train", 0), eval_rows=rows.get("test", 0),
            )
            if rows.get("train"):
                train = settings.SNAPSHOT_STORE / stage.snapshot.folder / f"{stage.snapshot.kind}-train.jsonl"
                problems += [f"{stage.name}: {problem}" for problem in train_rows_problems(stage.name, train)]
    if problems:
        raise _Refused("refused before training: " + "; ".join(problems))


def _stage_execute(run, stage) -> str:
    """Run one stage as a child process; register its model when it says it is done."""
    folder = f"project-{run.project_id}/run-{run.number}/{stage.name}"
    out_dir = settings.MODEL_STORE / folder
    work_dir = settings.MODEL_STORE / f"{folder}.work"
    work_dir.mkdir(parents=True, exist_ok=True)
    progress = work_dir / "progress.jsonl"
    spec = _spec(run, stage, out_dir=out_dir, work_dir=work_dir, progress=progress)
    spec_path = work_dir / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    RunStage.objects.filter(pk=stage.pk).update(
        status=StageStatus.RUNNING, started_at=timezone.now(), finished_at=None, error="", updated_at=timezone.now()
    )
    log_path = work_dir / "stage.log"
    offset = progress.stat().st_size if progress.exists() else 0
    with log_path.open("ab") as log:
        child = subprocess.Popen(
            child_command(str(spec_path), processes=run.processes, gpus=_gpus()),
            cwd=settings.BASE_DIR, stdout=log, stderr=subprocess.STDOUT, env=_child_env(processes=run.processes),
            start_new_session=True, preexec_fn=_child_start,
        )
        reader = _ProgressReader(progress, offset)
        watch = _Watch(stage)
        cancelled = False
        while True:
            exit_code = child.poll()
            watch.apply(reader.read())
            if exit_code is not None:
                break
            # While the database is away the child trains on; its progress waits in the file and in `watch`.
            if tolerant(watch.check_cancel(run), what=f"watching round {run.id}") and watch.cancel:
                cancelled = True
                _kill(child)
                break
            time.sleep(1)
        watch.apply(reader.read())
        watch.flush(until_s=WRITE_PATIENCE_SECONDS)
        # The child may have ended while the database was away: what follows registers its model or its failure.
        database_wait(seconds=WRITE_PATIENCE_SECONDS)
        done, error = watch.done, watch.error
    if cancelled:
        with transaction.atomic():
            RunStage.objects.filter(pk=stage.pk).update(status=StageStatus.CANCELLED, finished_at=timezone.now())
            run.stages.filter(status=StageStatus.PENDING).update(status=StageStatus.CANCELLED)
            locked = TrainingRun.objects.select_for_update().get(id=run.id)
            run_finish(locked, RunStatus.CANCELLED, f"cancelled during {stage.name}")
        return StageStatus.CANCELLED
    if exit_code != 0 or done is None or not out_dir.is_dir():
        reason = error or _tail(log_path) or f"the trainer exited with code {exit_code}"
        _fail(run, f"{stage.name} failed: {reason}{_disk_note(reason)}")
        return StageStatus.FAILED
    _register(run, stage, folder=folder, metrics=done.get("metrics") or {}, spec=spec)
    return StageStatus.SUCCEEDED


def _spec(run, stage, *, out_dir, work_dir, progress):
    latest = _latest_versions(run)
    store = settings.SNAPSHOT_STORE
    data = {"train": None, "eval": None}
    if stage.snapshot_id:
        kind, folder = stage.snapshot.kind, store / stage.snapshot.folder
        data = {"train": str(folder / f"{kind}-train.jsonl"),
                "eval": str(folder / f"{kind}-test.jsonl") if stage.snapshot.rows.get("test") else None}
    if stage.name == "base":
        # The tokenizer also learns the demonstrations' text, exported for this round's SFT stage.
        sft = run.stages.filter(name="sft", snapshot__isnull=False).select_related("snapshot").first()
        if sft:
            data["texts_for_tokenizer"] = [str(store / sft.snapshot.folder / "sft-train.jsonl")]
    entry = STAGES[stage.name]
    if entry.starts_from is None:
        base_model = run.base_source or None  # a directory to adopt, not a registered version
    else:
        base_model = _path(latest.get(entry.starts_from))  # for DPO and the RL stages their frozen reference too
    config = run.config.get(stage.name, {})
    if config.get("reward_functions"):
        # The names the round chose (checked when it was created), as the dotted paths this installation lists:
        # the child imports only what the spec names.
        offered = reward_functions_offered()
        missing = [name for name in config["reward_functions"] if name not in offered]
        if missing:
            raise _Refused(f"{stage.name}: no reward function named {', '.join(missing)} in this worker's "
                           "REWARD_FUNCTIONS")
        config = {**config, "reward_functions": [offered[name] for name in config["reward_functions"]]}
    spec = {
        "stage": stage.name, "out_dir": str(out_dir), "work_dir": str(work_dir), "data": data,
        "base_model": base_model, "preset": run.preset, "config": config,
        "seed": run.seed, "resume": stage.resume, "progress_file": str(progress),
    }
    if entry.needs_reward_model:
        spec["reward_model"] = _path(latest.get(ModelKind.REWARD))
        previous = (ModelVersion.objects.filter(project=run.project, kind=ModelKind.POLICY)
                    .exclude(run=run).order_by("-version").first())
        spec["previous_policy"] = _path(previous)
    return spec


def _latest_versions(run) -> dict:
    """The versions a stage builds on: this round's where it made one, else the project's latest base."""
    found = {version.kind: version for version in ModelVersion.objects.filter(run=run)}
    if ModelKind.BASE not in found:
        base = ModelVersion.objects.filter(project=run.project, kind=ModelKind.BASE).order_by("-version").first()
        if base:
            found[ModelKind.BASE] = base
    return found


def _path(version):
    """The directory a stage is given for a version: an adapter version's merged copy (adapters.handed_on), a
    whole model every stage and check loads, else the version's own folder."""
    return adapters.handed_on(str(settings.MODEL_STORE / version.folder)) if version else None


def _register(run, stage, *, folder, metrics, spec):
    latest = _latest_versions(run)
    entry = STAGES[stage.name]
    kind = entry.registers
    parent = latest.get(entry.starts_from) if entry.starts_from else None
    with transaction.atomic():
        number = (ModelVersion.objects.filter(project=run.project, kind=kind).aggregate(v=Max("version"))["v"] or 0) + 1
        version = ModelVersion.objects.create(
            project=run.project, kind=kind, version=number, folder=folder, run=run, parent=parent,
            reward_model=latest.get(ModelKind.REWARD) if entry.needs_reward_model else None,
            snapshot=stage.snapshot, algorithm=stage.name if kind == ModelKind.POLICY else "",
            metrics=metrics, config={"preset": spec["preset"], "overrides": spec["config"], "seed": spec["seed"]},
        )
        RunStage.objects.filter(pk=stage.pk).update(
            status=StageStatus.SUCCEEDED, finished_at=timezone.now(), model_version=version, resume=False,
        )
    return version


class _Watch:
    """The trainer's progress events for one stage, written into the database as they come: one stage update and
    one insert of metric points per poll, however many steps the trainer reported since the last. Events whose
    write failed (the database was away) are kept and written with the next ones; `done` and `error` are known
    as soon as the events are read, whether written yet or not."""

    def __init__(self, stage):
        self.stage, self.pending = stage, []
        self.done = self.error = None
        self.cancel = False

    def apply(self, events):
        self.pending += events
        for event in events:
            if event.get("event") == "done":
                self.done = event
            elif event.get("event") == "error":
                self.error = str(event.get("message") or "the trainer reported an error")
        if self.pending and tolerant(self._write, what=f"writing the progress of stage {self.stage.pk}"):
            self.pending = []

    def flush(self, *, until_s: float):
        """Write what is left, waiting up to `until_s` for a database that is away."""
        deadline = time.monotonic() + until_s
        while self.pending and time.monotonic() < deadline:
            time.sleep(1)
            self.apply([])

    def check_cancel(self, run):
        def read():
            self.cancel = TrainingRun.objects.filter(id=run.id, cancel_requested=True).exists()
        return read

    def _write(self):
        changes, points = {}, []
        for event in self.pending:
            kind = event.get("event")
            if kind == "start":
                changes["total"] = int(event.get("total") or 0)
                # A resumed stage redoes the steps after its checkpoint: their points go, to come again once.
                stage_points_forget(stage=self.stage, after_step=int(event.get("step") or 0))
            elif kind == "progress":
                metrics = {k: v for k, v in (event.get("metrics") or {}).items() if isinstance(v, (int, float))}
                step = int(event.get("step") or 0)
                changes.update(step=step, total=int(event.get("total") or 0), metrics=metrics)
                if metrics:
                    at = event.get("time")
                    points.append(MetricPoint(
                        stage_id=self.stage.pk, step=step, values=metrics,
                        reported_at=datetime.fromtimestamp(at, tz=UTC) if isinstance(at, (int, float)) else timezone.now(),
                    ))
            elif kind == "checkpoint":
                changes["last_checkpoint"] = str(event.get("path", ""))
        with transaction.atomic():
            if changes:
                RunStage.objects.filter(pk=self.stage.pk).update(**changes, updated_at=timezone.now())
            if points:
                MetricPoint.objects.bulk_create(points)


class _ProgressReader:
    """Read the lines the trainer appended since the last read; a half-written line waits."""

    def __init__(self, path: Path, offset: int):
        self.path, self.offset = path, offset

    def read(self):
        if not self.path.exists():
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        events = []
        for line in complete.splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                logger.warning("unreadable progress line in %s: %r", self.path, line[:200])
        return events


def _kill(child):
    """Stop a stage's process group: SIGTERM, then SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, 10)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        try:
            child.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _die_with_parent():
    """In the child: be killed if the worker dies, so a lost worker never leaves training running."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _child_start():
    """In the child, before it runs the trainer: die with the worker, and yield the CPU to the web."""
    _die_with_parent()
    os.nice(settings.TRAINING_NICE)


def _child_env(*, processes: int = 1):
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    # Trainers never fetch from a hub; say so to the libraries too.
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    # The cores shared by the stage's processes; torch sizes its intra-op pool from OMP_NUM_THREADS.
    threads = str(max(1, (settings.TRAINING_THREADS or os.cpu_count() or 1) // max(1, processes)))
    env.update({"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})
    return env


def _disk_note(reason: str) -> str:
    """Say which store filled up when a stage died of a full disk: the trainer's error names only the file."""
    if "No space left on device" not in reason and "os error 28" not in reason and "Errno 28" not in reason:
        return ""
    free = shutil.disk_usage(settings.MODEL_STORE).free
    return f" (the model store {settings.MODEL_STORE} has {free:,} bytes free: make room, then resume the round)"


def _gpus() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    return len(list(Path("/dev").glob("nvidia[0-9]*")))


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])
