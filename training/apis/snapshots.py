"""REST API for dataset snapshots: list, export (in a worker), download a file (admins)."""

from django.conf import settings
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.apis.accounts import paginated
from annotate.models import Role
from annotate.selectors.accounts import project_for_member
from training import services
from training.models import DatasetSnapshot, SnapshotKind


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


class SnapshotExportApi(APIView):
    """Export a new snapshot in a worker (admins). It appears in the list when its files are
    complete; a failed export leaves none."""

    class InputSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=SnapshotKind.choices)
        demonstrations = serializers.ChoiceField(choices=services.SFT_FILTERS, default="accepted")
        parquet = serializers.BooleanField(default=True)
        filters = serializers.DictField(
            required=False, default=dict,
            help_text="since, until (ISO 8601), annotator_id, model_version, min_quality (SFT)",
        )

    @extend_schema(request=InputSerializer, responses={202: inline_serializer("ExportQueued", {"detail": serializers.CharField()})})
    def post(self, request, project_id):
        project = project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.snapshot_export_enqueue(project=project, by=request.user, **data.validated_data)
        return Response({"detail": "the export is queued; it appears in the snapshot list when done"}, status=status.HTTP_202_ACCEPTED)


class SnapshotFileApi(APIView):
    """Download one file of a snapshot (admins)."""

    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    def get(self, request, project_id, snapshot_id, name):
        project = project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        snapshot = get_object_or_404(DatasetSnapshot, pk=snapshot_id, project=project)
        if name not in {described["name"] for described in snapshot.files}:
            raise Http404("no such file in this snapshot")
        return FileResponse((settings.SNAPSHOT_STORE / snapshot.folder / name).open("rb"), as_attachment=True, filename=name)
