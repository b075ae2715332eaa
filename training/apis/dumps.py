"""REST API of project dumps: download a whole project as a project_dump archive (project admins)."""

import tempfile

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.views import APIView

from annotate.models import Role
from annotate.selectors.accounts import project_for_member
from training.services.dumps import MEMBER_MODES, project_dump

__all__ = ["ProjectDumpApi"]


class ProjectDumpApi(APIView):
    """Download the whole project in one archive that `manage.py project_load` reads (project admins): members
    by pseudonym, or, for site staff, as accounts with their usernames and emails. Snapshot and model files
    are not in it."""

    class InputSerializer(serializers.Serializer):
        members = serializers.ChoiceField(choices=MEMBER_MODES, default="pseudonyms",
                                          help_text="pseudonyms, or accounts (site staff only)")

    @extend_schema(parameters=[InputSerializer],
                   responses={(200, "application/gzip"): OpenApiResponse(OpenApiTypes.BINARY)})
    def get(self, request, project_id):
        project = project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        data = self.InputSerializer(data=request.query_params)
        data.is_valid(raise_exception=True)
        members = data.validated_data["members"]
        if members == "accounts" and not request.user.is_staff:
            # Accounts carry members' emails out of the installation: that is the installation's call.
            raise PermissionDenied({"members": "only site staff may dump members as accounts"})
        archive = tempfile.TemporaryFile()  # gone once the response is sent and closed
        project_dump(project=project, path=archive, members=members)
        archive.seek(0)
        return FileResponse(archive, as_attachment=True, filename=f"project-{project.id}-dump.tar.gz",
                            content_type="application/gzip")
