"""REST API for imports (admins): upload a file in a named format, all or nothing; list what went in."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.importers import FORMATS, import_run
from annotate.models import Role
from annotate.selectors import accounts as account_selectors
from annotate.selectors import progress as progress_selectors
from platform_common.pagination import Pagination


class ImportOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    format = serializers.CharField()
    filename = serializers.CharField()
    sha256 = serializers.CharField()
    trusted = serializers.BooleanField(help_text="its replies went in as accepted demonstrations")
    counts = serializers.DictField(child=serializers.IntegerField())
    imported_by = serializers.CharField(source="imported_by.username", default=None, allow_null=True)
    created_at = serializers.DateTimeField()


class ImportCreateApi(APIView):
    __doc__ = (
        "Import a file into the project (admins). A bad line refuses the whole file (400, naming "
        "the line); the same file twice is refused too. `trusted` says its replies are demonstrations "
        "to imitate (a dialogue corpus): they go in accepted, so the default SFT export takes them, all "
        "but the losing side of a pair or ranking in the file. Formats: " + ", ".join(FORMATS) + "."
    )

    parser_classes = [MultiPartParser]

    class InputSerializer(serializers.Serializer):
        format = serializers.ChoiceField(choices=sorted(FORMATS))
        file = serializers.FileField()
        trusted = serializers.BooleanField(default=False)

    @extend_schema(request={"multipart/form-data": InputSerializer}, responses={201: ImportOutputSerializer})
    def post(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["file"]
        batch = import_run(
            project=project, format=data.validated_data["format"], stream=upload.file, filename=upload.name,
            by=request.user, trusted=data.validated_data["trusted"],
        )
        return Response(ImportOutputSerializer(batch).data, status=status.HTTP_201_CREATED)


class ImportListApi(APIView):
    """List the files imported into the project, newest first (admins), each with its counts and whether its
    replies were trusted as demonstrations."""

    @extend_schema(responses=ImportOutputSerializer(many=True))
    def get(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        paginator = Pagination()
        page = paginator.paginate_queryset(progress_selectors.imports_of(project=project, limit=None), request, view=self)
        return paginator.get_paginated_response(ImportOutputSerializer(page, many=True).data)
