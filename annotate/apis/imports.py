"""REST API for imports (admins): upload a file in a named format for a worker to import, all or nothing; follow
the import job; list what went in."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.importers import FORMATS
from annotate.models import ImportJob, Role
from annotate.selectors import accounts as account_selectors
from annotate.selectors import progress as progress_selectors
from annotate.services import imports
from platform_common.pagination import Pagination


class ImportOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    format = serializers.CharField()
    filename = serializers.CharField()
    sha256 = serializers.CharField()
    trusted = serializers.BooleanField(help_text="its replies went in as accepted demonstrations")
    license = serializers.CharField(help_text="the licence named for the file's content; empty: not said")
    counts = serializers.DictField(child=serializers.IntegerField())
    imported_by = serializers.CharField(source="imported_by.username", default=None, allow_null=True)
    created_at = serializers.DateTimeField()


class ImportJobOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField(help_text="queued, running, succeeded or failed")
    format = serializers.CharField()
    filename = serializers.CharField()
    trusted = serializers.BooleanField()
    license = serializers.CharField(help_text="the licence named for the file's content; empty: not said")
    bytes_total = serializers.IntegerField()
    bytes_done = serializers.IntegerField(help_text="how far the worker has read the file")
    error = serializers.CharField(help_text="why the file was refused (with its line) or the job failed")
    line = serializers.IntegerField(help_text="the line that refused the file; 0 when the reason is the whole file")
    batch = ImportOutputSerializer(allow_null=True, help_text="what went in, once it succeeded")
    requested_by = serializers.CharField(source="requested_by.username", default=None, allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class ImportCreateApi(APIView):
    __doc__ = (
        "Upload a file to import into the project (admins); a worker imports it (202, the import job: poll "
        "`imports/jobs/<id>/` for its progress and end). An unknown format or licence, an empty file or one the "
        "project already has is refused now (400). In the worker a bad line refuses the whole file: the job fails "
        "naming the line, and nothing is written. `trusted` says its replies are demonstrations to imitate (a "
        "dialogue corpus): they go in accepted, so the default SFT export takes them, all but the losing side of a "
        "pair or ranking in the file. `license`: the licence of the file's content as a Hugging Face licence id "
        "(cc-by-4.0, apache-2.0, ...), named for this source in every dataset card. Formats: " + ", ".join(FORMATS) + "."
    )

    parser_classes = [MultiPartParser]

    class InputSerializer(serializers.Serializer):
        format = serializers.ChoiceField(choices=sorted(FORMATS))
        file = serializers.FileField()
        trusted = serializers.BooleanField(default=False)
        license = serializers.CharField(default="", allow_blank=True, max_length=64)

    @extend_schema(request={"multipart/form-data": InputSerializer}, responses={202: ImportJobOutputSerializer})
    def post(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["file"]
        job = imports.import_enqueue(
            project=project, format=data.validated_data["format"], upload=upload, filename=upload.name,
            by=request.user, trusted=data.validated_data["trusted"], license=data.validated_data["license"],
        )
        return Response(ImportJobOutputSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class ImportJobListApi(APIView):
    """The project's import jobs, newest first (admins): waiting, running with the bytes read so far, done with
    what went in, or refused and why."""

    @extend_schema(responses=ImportJobOutputSerializer(many=True))
    def get(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        paginator = Pagination()
        jobs = ImportJob.objects.filter(project=project).select_related("batch__imported_by", "requested_by")
        page = paginator.paginate_queryset(jobs, request, view=self)
        return paginator.get_paginated_response(ImportJobOutputSerializer(page, many=True).data)


class ImportJobDetailApi(APIView):
    """One import job (admins): its status, bytes read of the file, and the batch it wrote or why it failed."""

    @extend_schema(responses=ImportJobOutputSerializer)
    def get(self, request, project_id, job_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        job = get_object_or_404(ImportJob.objects.select_related("batch__imported_by", "requested_by"),
                                pk=job_id, project=project)
        return Response(ImportJobOutputSerializer(job).data)


class ImportListApi(APIView):
    """List the files imported into the project, newest first (admins), each with its counts and whether its
    replies were trusted as demonstrations."""

    @extend_schema(responses=ImportOutputSerializer(many=True))
    def get(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        paginator = Pagination()
        page = paginator.paginate_queryset(progress_selectors.imports_of(project=project, limit=None), request, view=self)
        return paginator.get_paginated_response(ImportOutputSerializer(page, many=True).data)
