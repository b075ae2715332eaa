"""REST API for dataset snapshots: list, export (in a worker, followed as an export job), download a file (admins)."""

from django.conf import settings
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.apis.accounts import paginated
from annotate.models import Role
from annotate.selectors.accounts import project_for_member
from training import services
from training.models import DatasetSnapshot, ExportJob, SnapshotKind


class SnapshotOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    version = serializers.IntegerField()
    rows = serializers.DictField(child=serializers.IntegerField())
    files = serializers.ListField(child=serializers.DictField())
    filters = serializers.DictField()
    created_at = serializers.DateTimeField()


class SnapshotListApi(APIView):
    """The project's snapshots, newest first (admins)."""

    @extend_schema(responses=SnapshotOutputSerializer(many=True))
    def get(self, request, project_id):
        project = project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        snapshots = DatasetSnapshot.objects.filter(project=project).order_by("-created_at", "-id")
        return paginated(self, snapshots, SnapshotOutputSerializer)


class ExportJobOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    status = serializers.CharField(help_text="queued, running, succeeded or failed")
    error = serializers.CharField(help_text="why it failed")
    options = serializers.DictField()
    snapshot = serializers.IntegerField(source="snapshot_id", allow_null=True, help_text="the snapshot it made")
    worker = serializers.CharField()
    heartbeat_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class SnapshotExportApi(APIView):
    """Export a new snapshot in a worker (admins): answers the export job to follow (GET exports/<id>/); the
    snapshot appears in the list when its files are complete, and a failed export says why on its job."""

    class InputSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=SnapshotKind.choices)
        demonstrations = serializers.ChoiceField(choices=services.SFT_FILTERS, default="accepted")
        parquet = serializers.BooleanField(default=True)
        filters = serializers.DictField(
            required=False, default=dict,
            help_text="since, until (ISO 8601), annotator_id, model_version, min_quality (SFT)",
        )

    @extend_schema(request=InputSerializer, responses={202: ExportJobOutputSerializer})
    def post(self, request, project_id):
        project = project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = services.export_enqueue(project=project, by=request.user, **data.validated_data)
        return Response(ExportJobOutputSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class ExportJobListApi(APIView):
    """The project's exports as a worker runs them, newest first: waiting, running, done, or failed and why (admins)."""

    @extend_schema(responses=ExportJobOutputSerializer(many=True))
    def get(self, request, project_id):
        project = project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        return paginated(self, ExportJob.objects.filter(project=project).order_by("-id"), ExportJobOutputSerializer)


class ExportJobDetailApi(APIView):
    """One export job (admins)."""

    @extend_schema(responses=ExportJobOutputSerializer)
    def get(self, request, project_id, job_id):
        project = project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        return Response(ExportJobOutputSerializer(get_object_or_404(ExportJob, pk=job_id, project=project)).data)


class SnapshotFileApi(APIView):
    """Download one file of a snapshot (admins)."""

    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    def get(self, request, project_id, snapshot_id, name):
        project = project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        snapshot = get_object_or_404(DatasetSnapshot, pk=snapshot_id, project=project)
        if name not in {described["name"] for described in snapshot.files}:
            raise Http404("no such file in this snapshot")
        return FileResponse((settings.SNAPSHOT_STORE / snapshot.folder / name).open("rb"), as_attachment=True, filename=name)
