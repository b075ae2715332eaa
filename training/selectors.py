"""Reads for training: exports and the queue's view of them, rounds and models, as the pages
and the API show them."""

import json
import tempfile
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db.models import Min, QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone
from procrastinate.contrib.django.models import ProcrastinateJob, ProcrastinateWorker

from annotate.models import Membership, Role
from annotate.selectors.accounts import project_for_member
from platform_common.errors import Conflict
from training.models import (
    BaseConversion, BaseModel, DatasetSnapshot, Deployment, GenerationJob, MetricPoint, ModelKind, ModelVersion, RunStage,
    RunStatus, TrainingRun,
)
from training.trainers import adapters

# Files a version's folder may hold that unpickle when loaded: never handed out.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle")

# How many of the latest points the ETA looks at: recent speed, not the warm-up's.
ETA_WINDOW = 20

# The name training.tasks.snapshot_export is registered under: the queue's rows know it by that.
EXPORT_TASK = "training.snapshot_export"


# ---------------------------------------------------------------------------------------------
# Exports


def snapshots_of(*, project) -> QuerySet[DatasetSnapshot]:
    """Return the project's snapshots, newest first, with who asked for each."""
    return DatasetSnapshot.objects.filter(project=project).select_related("created_by").order_by("-created_at", "-id")


def snapshot_file_path(*, project, snapshot_id: int, name: str) -> Path:
    """Return where one file of one of the project's snapshots lies, or 404.

    Only names the snapshot lists: never a path the asker made up.
    """
    snapshot = get_object_or_404(DatasetSnapshot, pk=snapshot_id, project=project)
    if name not in {described["name"] for described in snapshot.files}:
        raise Http404("no such file in this snapshot")
    return settings.SNAPSHOT_STORE / snapshot.folder / name


def exports_unfinished(*, project, limit: int = 10) -> list[ProcrastinateJob]:
    """Return the project's latest exports that the queue has not finished: waiting, running,
    failed (a failed export leaves no snapshot), each with when it was asked for (`asked_at`)."""
    return list(
        ProcrastinateJob.objects.filter(
            task_name=EXPORT_TASK, args__project_id=project.id, status__in=["todo", "doing", "failed"]
        )
        .annotate(asked_at=Min("procrastinateevent__at"))
        .order_by("-id")[:limit]
    )


def workers_alive() -> int:
    """Return how many workers have sent a heartbeat lately (within WORKER_LOST_AFTER_SECONDS)."""
    cutoff = timezone.now() - timedelta(seconds=settings.WORKER_LOST_AFTER_SECONDS)
    return ProcrastinateWorker.objects.filter(last_heartbeat__gte=cutoff).count()


# ---------------------------------------------------------------------------------------------
# Rounds


def run_for_member(*, user, run_id: int, role: str = Role.ADMIN) -> TrainingRun:
    """Return the round if the user has `role` in its project (404 for outsiders, 403 too low)."""
    run = get_object_or_404(TrainingRun.objects.select_related("project"), pk=run_id)
    project_for_member(user=user, project_id=run.project_id, role=role)
    return run


def runs_of(*, project) -> QuerySet[TrainingRun]:
    return TrainingRun.objects.filter(project=project).prefetch_related("stages").order_by("-number")


def stage_eta_seconds(stage: RunStage) -> float | None:
    """Seconds left in a running stage, from the pace of its latest reported steps."""
    if stage.status != "running" or not stage.total or stage.step >= stage.total:
        return None
    points = list(MetricPoint.objects.filter(stage=stage).order_by("-step", "-id")[:ETA_WINDOW])
    if len(points) >= 2:
        newest, oldest = points[0], points[-1]
        steps, seconds = newest.step - oldest.step, (newest.reported_at - oldest.reported_at).total_seconds()
    elif stage.started_at and stage.step:
        steps, seconds = stage.step, (timezone.now() - stage.started_at).total_seconds()
    else:
        return None
    if steps <= 0 or seconds <= 0:
        return None
    return round((stage.total - stage.step) * seconds / steps, 1)


def run_payload(run: TrainingRun) -> dict:
    """The round as the page and the API show it: status, each stage's progress, ETA and metrics."""
    stages = []
    for stage in run.stages.select_related("model_version", "snapshot").order_by("order"):
        version = stage.model_version
        stages.append({
            "name": stage.name, "status": stage.status, "step": stage.step, "total": stage.total,
            "eta_seconds": stage_eta_seconds(stage), "metrics": stage.metrics, "error": stage.error,
            "snapshot": f"{stage.snapshot.kind} v{stage.snapshot.version}" if stage.snapshot else None,
            "model_version": {"id": version.id, "name": version.name, "metrics": version.metrics} if version else None,
            "started_at": stage.started_at, "finished_at": stage.finished_at,
        })
    current = next((s for s in stages if s["status"] == "running"), None)
    return {
        "id": run.id, "project_id": run.project_id, "number": run.number, "status": run.status,
        "preset": run.preset, "algorithm": run.algorithm, "recipe": run.algorithm, "config": run.config, "base_source": run.base_source,
        "processes": run.processes, "seed": run.seed, "error": run.error, "cancel_requested": run.cancel_requested,
        "stage": current["name"] if current else None, "heartbeat_at": run.heartbeat_at, "worker": run.worker,
        "created_at": run.created_at, "started_at": run.started_at, "finished_at": run.finished_at,
        "retry_of": run.retry_of_id, "stages": stages,
        "can_cancel": run.status in (RunStatus.QUEUED, RunStatus.RUNNING) and not run.cancel_requested,
        "can_resume": run.status == RunStatus.FAILED,
        "can_retry": run.status in (RunStatus.FAILED, RunStatus.CANCELLED),
    }


def run_curves(run: TrainingRun) -> dict[str, dict[str, list]]:
    """Every metric of every stage as a series of (step, value): {stage: {metric: [[step, value], ...]}}."""
    curves: dict[str, dict[str, list]] = {}
    for stage_name, step, values in (
        MetricPoint.objects.filter(stage__run=run).order_by("stage__order", "step", "id")
        .values_list("stage__name", "step", "values")
    ):
        for metric, value in values.items():
            curves.setdefault(stage_name, {}).setdefault(metric, []).append([step, value])
    return curves


# ---------------------------------------------------------------------------------------------
# Models and serving


def base_version_latest(*, project) -> ModelVersion | None:
    """Return the project's newest base model, or None before the first round built one."""
    return ModelVersion.objects.filter(project=project, kind=ModelKind.BASE).order_by("-version").first()


def deployable_versions(*, project) -> QuerySet[ModelVersion]:
    """Return the versions that can write replies (SFT models and RL policies), newest first."""
    return ModelVersion.objects.filter(project=project, kind__in=[ModelKind.SFT, ModelKind.POLICY]).order_by("-created_at")


def generation_jobs_of(*, project) -> QuerySet[GenerationJob]:
    """Return the project's generation jobs, newest first."""
    return GenerationJob.objects.filter(project=project).order_by("-id")


def model_versions_of(*, project) -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(project=project).select_related("run", "parent").order_by("kind", "-version")


def model_comparison(*, project) -> dict[str, dict]:
    """Per model kind, the metric names and every version's values, newest first, side by side."""
    table: dict[str, dict] = {}
    for version in model_versions_of(project=project):
        entry = table.setdefault(version.kind, {"label": version.get_kind_display(), "metrics": [], "versions": []})
        for name in version.metrics:
            if name not in entry["metrics"]:
                entry["metrics"].append(name)
        entry["versions"].append(version)
    for entry in table.values():
        entry["rows"] = [
            {"version": v, "values": [v.metrics.get(name) for name in entry["metrics"]]} for v in entry["versions"]
        ]
    return table


def version_votes(*, project) -> list[tuple[str, str, float]]:
    """Pairwise votes between model versions implied by every ranking and comparison of their replies.

    A reply ranked above another from a different version is a win (1) for it; replies tied in
    one tier are a tie (0.5); "all bad" says nothing about which is better and gives no vote.
    """
    from annotate.models import Ranking
    from training.models import GeneratedReply

    version_of = {
        message_id: f"{kind}-v{number}"
        for message_id, kind, number in GeneratedReply.objects.filter(message__project=project)
        .values_list("message_id", "model_version__kind", "model_version__version")
    }
    votes = []
    rankings = Ranking.objects.filter(candidate_set__project=project).order_by("id")
    for tiers, all_bad in rankings.values_list("tiers", "all_bad"):
        if all_bad:
            continue
        placed = [[version_of.get(m) for m in tier] for tier in tiers]
        for i, tier in enumerate(placed):
            for j, a in enumerate(tier):
                for b in tier[j + 1:]:
                    if a and b and a != b:
                        votes.append((a, b, 0.5))
                for lower in placed[i + 1:]:
                    for b in lower:
                        if a and b and a != b:
                            votes.append((a, b, 1.0))
    return votes


def version_leaderboard(*, project, samples: int = 200) -> list[dict]:
    """Return the versions' Bradley-Terry leaderboard with bootstrap intervals.

    Computed on every call, not cached: the fit with 200 bootstrap refits takes about 20 ms at ten
    thousand votes (bench/leaderboard_bench.py).
    """
    from training.leaderboard import leaderboard

    return leaderboard(version_votes(project=project), samples=samples)


def active_deployments(*, project) -> QuerySet[Deployment]:
    """The deployments that write the project's replies now, newest first (the model's order), with their versions."""
    return Deployment.objects.filter(project=project, is_active=True).select_related("model_version")


def deployment_for_chat(*, project, deployment_id: int | None = None):
    """The active deployment that answers chats: the one asked for, else the newest; 404 if none."""
    active = active_deployments(project=project)
    found = active.filter(pk=deployment_id).first() if deployment_id else active.first()
    if found is None:
        raise Http404("no model is deployed to this project" if not deployment_id else "no such active deployment")
    return found


def model_version_of(*, project, version_id: int) -> ModelVersion:
    """Return one of the project's versions, or 404 (another project's version too)."""
    return get_object_or_404(ModelVersion.objects.select_related("run", "parent"), pk=version_id, project=project)


def model_version_adapter(version: ModelVersion) -> dict | None:
    """Return how a LoRA version's adapter was set (type, r, alpha, target modules) and the base it needs, as its
    platform_training.json records them; None for a version that holds all its weights."""
    folder = settings.MODEL_STORE / version.folder
    if not adapters.is_adapter(folder):
        return None
    try:
        summary = json.loads((folder / adapters.SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        summary = {}
    return summary.get("adapter") or {}


def adapter_archive(*, version: ModelVersion) -> BinaryIO:
    """Return a zip of the version's adapter in peft's format, read to hand to anything that loads peft adapters.

    Every file at the top of its folder: adapter_config.json and adapter_model.safetensors, the tokenizer's
    files, platform_training.json (the base it was trained on, its settings and evaluation); never merged/
    (a whole model: the base with the adapter merged in) or another folder, nor a pickle (training_args.bin).
    Refused (409, saying why) for a version that holds all its weights.
    """
    folder = settings.MODEL_STORE / version.folder
    if not adapters.is_adapter(folder):
        raise Conflict({"model_version": f"{version.name} is not a LoRA adapter (it holds all its weights): "
                                         "there is no adapter to download"})
    archive = tempfile.TemporaryFile()  # noqa: SIM115 - the response that sends it closes it
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix not in PICKLE_SUFFIXES:
                # Weights barely compress; the JSON and tokenizer files do.
                stored = path.suffix == ".safetensors"
                zipped.write(path, path.name, compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
    archive.seek(0)
    return archive


# ---------------------------------------------------------------------------------------------
# Base models: the installation's, which any project's round may adopt


def base_models_for(*, user) -> QuerySet[BaseModel]:
    """Return the installation's base models to someone who may adopt one: site staff, or an admin of any project."""
    if not (user.is_staff or Membership.objects.filter(user=user, role=Role.ADMIN, is_active=True).exists()):
        raise PermissionDenied("base models are shown to site staff and to project admins")
    return BaseModel.objects.select_related("created_by").order_by("name")


def base_conversions_for(*, user) -> QuerySet[BaseConversion]:
    """Return the conversions of GGUF files into base models, newest first (site staff, who start them)."""
    if not user.is_staff:
        raise PermissionDenied("only site staff can see and start conversions of base models")
    return BaseConversion.objects.select_related("base", "requested_by").order_by("-created_at", "-id")


def base_conversion_for(*, user, conversion_id: int) -> BaseConversion:
    return get_object_or_404(base_conversions_for(user=user), pk=conversion_id)


def base_conversion_payload(conversion: BaseConversion) -> dict:
    """The conversion as the page and the API show it: its steps so far, how it ended, what it registered."""
    return {
        "id": conversion.id, "name": conversion.name, "gguf_path": conversion.gguf_path, "package": conversion.package,
        "status": conversion.status, "progress": conversion.progress,
        "step": conversion.progress[-1]["step"] if conversion.progress else None,
        "error": conversion.error, "cancel_requested": conversion.cancel_requested,
        "heartbeat_at": conversion.heartbeat_at, "worker": conversion.worker, "created_at": conversion.created_at,
        "started_at": conversion.started_at, "finished_at": conversion.finished_at,
        "base": conversion.base.name if conversion.base else None,
        "requested_by": conversion.requested_by.username if conversion.requested_by else None,
        "can_cancel": conversion.status in (RunStatus.QUEUED, RunStatus.RUNNING) and not conversion.cancel_requested,
    }
