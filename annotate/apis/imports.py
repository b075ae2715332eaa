"""REST API for imports (admins): upload a file in a named format; all or nothing."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.importers import FORMATS, import_run
from annotate.models import Role
from annotate.selectors import accounts as account_selectors


class ImportCreateApi(APIView):
    __doc__ = (
        "Import a file into the project (admins). A bad line refuses the whole file (400, naming "
        "the line); the same file twice is refused too. Formats: " + ", ".join(FORMATS) + "."
    )

    parser_classes = [MultiPartParser]

    class InputSerializer(serializers.Serializer):
        format = serializers.ChoiceField(choices=sorted(FORMATS))
        file = serializers.FileField()

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        responses={201: inline_serializer("Imported", {"id": serializers.IntegerField(), "counts": serializers.DictField()})},
    )
    def post(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["file"]
        batch = import_run(
            project=project, format=data.validated_data["format"], stream=upload.file, filename=upload.name, by=request.user
        )
        return Response({"id": batch.id, "counts": batch.counts}, status=status.HTTP_201_CREATED)
