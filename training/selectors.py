"""Reads for training: exports and the queue's view of them, rounds and models, as the pages
and the API show them."""

import json
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone
from procrastinate.contrib.django.models import ProcrastinateWorker

from annotate.models import Membership, Role
from annotate.selectors.accounts import project_for_member
from platform_common.errors import Conflict
from platform_common.jobs import UNFINISHED, JobStatus
from training.models import (
    BaseConversion, BaseModel, DatasetSnapshot, Deployment, ExportJob, GenerationJob, MetricPoint, ModelKind, ModelVersion, RunStage,
    RunStatus, TrainingRun,
)
from training.trainers import adapters

# Files a version's folder may hold that unpickle when loaded: never handed out.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle")

# How many of the latest points the ETA looks at: recent speed, not the warm-up's.
ETA_WINDOW = 20

# The most metric points one poll of a round's page receives: a long round's first load comes in a
# few calls instead of one response of every step.
POINTS_PAGE = 5000


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


def exports_unfinished(*, project, limit: int = 10) -> list[ExportJob]:
    """Return the project's latest exports that have not made a snapshot: waiting, running, or failed
    (a failed export leaves no snapshot), newest first."""
    return list(ExportJob.objects.filter(project=project, status__in=[*UNFINISHED, JobStatus.FAILED])
                .order_by("-created_at", "-id")[:limit])


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
        "can_resume": run.status == RunStatus.FAILED and run.resumable,
        "can_retry": run.status in (RunStatus.FAILED, RunStatus.CANCELLED),
    }


def run_points(*, run: TrainingRun, after: int = 0, limit: int = POINTS_PAGE) -> dict:
    """Return the round's metric points written after point `after`, oldest first, for a page that polls.

    {"points": [{"id", "stage", "step", "values"}, ...], "last": the newest id sent (or `after`),
    "more": whether points beyond `limit` wait for the next call, "labels": {metric: label}}. Ids
    order the points as they were written: one worker writes a round, one insert per poll, so a
    later id is never committed before an earlier one of the same round.
    """
    rows = list(
        MetricPoint.objects.filter(stage__run=run, id__gt=after).order_by("id")
        .values_list("id", "stage__name", "step", "values")[: limit + 1]
    )
    more = len(rows) > limit
    points = [{"id": pk, "stage": stage, "step": step, "values": values} for pk, stage, step, values in rows[:limit]]
    names = {name for point in points for name in point["values"]}
    return {"points": points, "last": points[-1]["id"] if points else after, "more": more,
            "labels": {name: metric_label(name) for name in sorted(names)}}


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
# Metrics as the pages show them: one table of every figure a trainer, an evaluation or the
# demo's hidden check stores, with its readable name, unit and format.


@dataclass(frozen=True)
class Metric:
    label: str
    unit: str = ""
    # How the number reads: "share" (0-1, shown as a percentage), "count" (a whole number),
    # "number" (three significant digits), "size" (parameters: 147k, 5.2M).
    form: str = "number"
    # Which score plot of the models page draws it (PLOT_GROUPS), if any.
    plot: str | None = None
    # A "share" is stored 0-1 and plotted in percent.
    scale: float = 1.0


# A plot on the models page: its title and the unit of its y axis.
PLOT_GROUPS = {
    "share": ("Held-out and hidden-check scores", "%"),
    "loss": ("Held-out loss", "nats per token"),
}

_SHARE = {"form": "share", "unit": "%", "plot": "share", "scale": 100.0}
METRICS: dict[str, Metric] = {
    "hidden_check_greedy": Metric("hidden check, greedy", **_SHARE),
    "hidden_check_sampled": Metric("hidden check, sampled", **_SHARE),
    "general_check": Metric("general prompts right", **_SHARE),
    "reward_accuracy": Metric("reward accuracy", **_SHARE),
    "preference_accuracy": Metric("preference accuracy", **_SHARE),
    "label_accuracy": Metric("label accuracy", **_SHARE),
    "desirable_accuracy": Metric("desirable accuracy", form="share", unit="%"),
    "undesirable_accuracy": Metric("undesirable accuracy", form="share", unit="%"),
    "win_rate_vs_sft_optimistic": Metric("win rate vs SFT (optimistic)", **_SHARE),
    "win_rate_vs_previous_optimistic": Metric("win rate vs previous (optimistic)", **_SHARE),
    "exact_match": Metric("exact match", **_SHARE),
    "eval_loss": Metric("held-out loss", unit="nats/token", plot="loss"),
    "perplexity": Metric("perplexity"),
    "bleu": Metric("BLEU", unit="0-100"),
    "rouge_l": Metric("ROUGE-L F1", unit="0-1"),
    "mean_reward": Metric("mean reward", unit="reward model score"),
    "mean_reward_sft": Metric("mean reward of SFT", unit="reward model score"),
    "mean_reward_previous": Metric("mean reward of previous", unit="reward model score"),
    "mean_reward_chosen": Metric("mean reward, chosen", unit="score"),
    "mean_reward_rejected": Metric("mean reward, rejected", unit="score"),
    "mean_reward_desirable": Metric("mean reward, desirable", unit="score"),
    "mean_reward_undesirable": Metric("mean reward, undesirable", unit="score"),
    "mean_margin": Metric("mean margin", unit="score"),
    "kl": Metric("KL to reference", unit="nats"),
    "mean_reply_tokens": Metric("reply length", unit="tokens"),
    "parameters": Metric("parameters", form="size"),
    "loss": Metric("training loss"),
    "learning_rate": Metric("learning rate"),
    "eval_rows": Metric("held-out rows", form="count"),
    "eval_pairs": Metric("held-out pairs", form="count"),
    "eval_replies": Metric("held-out replies", form="count"),
    "eval_tokens": Metric("held-out tokens", form="count"),
    "generated_rows": Metric("replies generated", form="count"),
    "kl_prompts": Metric("KL prompts", form="count"),
    "hidden_check_n": Metric("hidden-check problems", form="count"),
    "general_check_n": Metric("general prompts", form="count"),
}
_UNKNOWN = Metric("")
# A figure's interval is stored beside it under this suffix, [low, high], and shown with it.
INTERVAL_SUFFIX = "_ci95"


def metric_label(name: str) -> str:
    """Return a metric's readable name: the table's, else its key in words."""
    known = METRICS.get(name)
    return known.label if known else name.replace("/", " ").replace("_", " ")


def _unit_shown(name: str) -> str:
    """Return the unit a row names beside its label: none for a share, whose values carry their %."""
    known = METRICS.get(name, _UNKNOWN)
    return "" if known.form == "share" else known.unit


def metrics_in_order(names) -> list[str]:
    """Return the metrics to show as rows: the table's order, then the rest sorted; intervals go with their figure."""
    names = {n for n in names if not (n.endswith(INTERVAL_SUFFIX) and n[: -len(INTERVAL_SUFFIX)] in names)}
    return [n for n in METRICS if n in names] + sorted(names - set(METRICS))


def _number(value: float, form: str) -> str:
    if form == "share":
        return f"{value * 100:.1f}%"
    if form == "count":
        return f"{round(value):,}"
    if form == "size":
        for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
            if abs(value) >= limit:
                return f"{value / limit:.3g}{suffix}"
        return f"{value:,.0f}"
    if value and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.2e}"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def metric_text(name: str, metrics: dict) -> str:
    """Return one metric of a version as the pages show it ("78.0% (71.2-84.0%)", "147k"), or "–" when absent."""
    value = metrics.get(name)
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    form = METRICS.get(name, _UNKNOWN).form
    text = _number(value, form)
    interval = metrics.get(name + INTERVAL_SUFFIX)
    if isinstance(interval, list) and len(interval) == 2 and all(isinstance(v, (int, float)) for v in interval):
        low, high = (_number(v, form) for v in interval)
        text += f" ({low.removesuffix('%')}–{high})"
    return text


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
    """Per model kind, its versions newest first as columns and one row per metric, readable.

    {kind: {"label", "versions": [...], "rows": [{"label", "unit", "cells": ["78% (71-84%)", "–", ...]}]}}:
    rows in METRICS' order, then any metric the table does not know, under its own name.
    """
    table: dict[str, dict] = {}
    for version in model_versions_of(project=project):
        table.setdefault(version.kind, {"label": version.get_kind_display(), "versions": []})["versions"].append(version)
    for entry in table.values():
        names = {name for version in entry["versions"] for name in version.metrics}
        entry["rows"] = [
            {"name": name, "label": metric_label(name), "unit": _unit_shown(name),
             "cells": [metric_text(name, version.metrics) for version in entry["versions"]]}
            for name in metrics_in_order(names)
        ]
    return table


def model_version_metrics(version: ModelVersion) -> list[dict]:
    """Return one version's evaluation as rows to read: [{"name", "label", "unit", "text"}], in METRICS' order."""
    return [{"name": name, "label": metric_label(name), "unit": _unit_shown(name), "text": metric_text(name, version.metrics)}
            for name in metrics_in_order(version.metrics)]


def model_score_panels(*, project) -> list[dict]:
    """The versions' held-out and hidden-check scores across rounds, one panel per kind of figure.

    [{"title", "unit", "series": [{"name", "points": [[round, value, version name], ...]}]}], for the
    models page to draw; a version trained outside a round has no place on the axis and is left out.
    """
    panels = {group: {"title": title, "unit": unit, "series": {}} for group, (title, unit) in PLOT_GROUPS.items()}
    versions = model_versions_of(project=project).exclude(run=None).order_by("run__number", "kind", "version")
    for version in versions:
        for name, value in version.metrics.items():
            shown = METRICS.get(name)
            if shown is None or shown.plot is None or not isinstance(value, (int, float)):
                continue
            series = panels[shown.plot]["series"].setdefault(
                (version.kind, name), {"name": f"{version.get_kind_display()}: {shown.label}", "points": []})
            series["points"].append([version.run.number, value * shown.scale, version.name])
    return [{**panel, "series": list(panel["series"].values())} for panel in panels.values() if panel["series"]]


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
