"""Pages for training (project admins): dataset exports, listed with their files to download.

Exports run in a worker (training.tasks.snapshot_export), never in the request: the page queues
one and lists the snapshots, and the exports still waiting or running, as the queue knows them.
"""

from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Min
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from procrastinate.contrib.django.models import ProcrastinateJob, ProcrastinateWorker

from annotate.models import Role
from annotate.selectors.accounts import members_of, membership_with_role
from training import services
from training.models import DatasetSnapshot, SnapshotKind

EXPORT_TASK = "training.snapshot_export"


class ExportForm(forms.Form):
    kind = forms.ChoiceField(choices=SnapshotKind.choices)
    demonstrations = forms.ChoiceField(
        choices=[("accepted", "accepted by a reviewer"), ("all", "all, reviewed or not")],
        initial="accepted", label="Demonstrations (SFT)",
    )
    parquet = forms.BooleanField(required=False, initial=True, label="Parquet files too (besides JSONL)")
    since = forms.DateTimeField(required=False, label="From (SFT, preference, prompts)",
                                widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    until = forms.DateTimeField(required=False, label="Until (SFT, preference, prompts)",
                                widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    annotator_id = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="Only one annotator (SFT, preference)")
    model_version = forms.CharField(required=False, max_length=200, label="Only one model version (SFT, preference)")
    min_quality = forms.FloatField(required=False, min_value=1, max_value=5, label="Minimum mean quality (SFT)")

    def __init__(self, *args, project, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["annotator_id"].choices = [("", "anyone")] + [
            (m.user_id, m.user.username) for m in members_of(project=project)
        ]

    def filters(self) -> dict:
        data = self.cleaned_data
        chosen = {name: data[name] for name in ("since", "until", "annotator_id", "model_version", "min_quality")}
        return {name: value.isoformat() if hasattr(value, "isoformat") else value
                for name, value in chosen.items() if value not in (None, "")}


def _exports_unfinished(project) -> list[ProcrastinateJob]:
    """The project's latest exports that the queue has not finished: waiting, running, failed
    (a failed export leaves no snapshot), each with when it was asked for."""
    return list(
        ProcrastinateJob.objects.filter(
            task_name=EXPORT_TASK, args__project_id=project.id, status__in=["todo", "doing", "failed"]
        )
        .annotate(asked_at=Min("procrastinateevent__at"))
        .order_by("-id")[:10]
    )


def _workers_alive() -> int:
    cutoff = timezone.now() - timedelta(seconds=settings.WORKER_LOST_AFTER_SECONDS)
    return ProcrastinateWorker.objects.filter(last_heartbeat__gte=cutoff).count()


@login_required
def exports_page(request, project_id):
    membership = membership_with_role(user=request.user, project_id=project_id, role=Role.ADMIN)
    project = membership.project
    form = ExportForm(project=project)
    status = 200
    if request.method == "POST":
        form = ExportForm(request.POST, project=project)
        if form.is_valid():
            try:
                services.snapshot_export_enqueue(
                    project=project, kind=form.cleaned_data["kind"], by=request.user,
                    demonstrations=form.cleaned_data["demonstrations"], filters=form.filters(),
                    parquet=form.cleaned_data["parquet"],
                )
            except ValidationError as error:
                for field, texts in (error.message_dict if hasattr(error, "error_dict") else {None: error.messages}).items():
                    form.add_error(field if field in form.fields else None, texts)
            else:
                messages.success(
                    request,
                    f"{SnapshotKind(form.cleaned_data['kind']).label} export queued. It is listed below once a "
                    "worker has written it; reload the page to see it.",
                )
                return redirect("training:exports", project_id=project.id)
        status = 400
    snapshots = DatasetSnapshot.objects.filter(project=project).select_related("created_by").order_by("-created_at", "-id")[:100]
    return render(
        request,
        "training/exports.html",
        {
            "project": project,
            "membership": membership,
            "form": form,
            "snapshots": snapshots,
            "unfinished": _exports_unfinished(project),
            "workers_alive": _workers_alive(),
        },
        status=status,
    )


@login_required
def export_file(request, project_id, snapshot_id, name):
    """Download one file of a snapshot (admins)."""
    membership = membership_with_role(user=request.user, project_id=project_id, role=Role.ADMIN)
    snapshot = get_object_or_404(DatasetSnapshot, pk=snapshot_id, project=membership.project)
    # Only names the snapshot lists: never a path the asker made up.
    if name not in {described["name"] for described in snapshot.files}:
        raise Http404("no such file in this snapshot")
    return FileResponse((settings.SNAPSHOT_STORE / snapshot.folder / name).open("rb"), as_attachment=True, filename=name)
