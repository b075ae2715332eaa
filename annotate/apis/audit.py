"""REST API for the audit log of admin actions: a project's (its admins), every project's (site staff)."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAdminUser
from rest_framework.views import APIView

from annotate.models import Role
from annotate.selectors import accounts as account_selectors
from annotate.selectors import audit
from platform_common.pagination import Pagination


class AuditChangeSerializer(serializers.Serializer):
    field = serializers.CharField()
    before = serializers.JSONField(allow_null=True, help_text="null for a creation; a user as their username")
    after = serializers.JSONField(allow_null=True, help_text="null for a deletion")


class AuditEntryOutputSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    user_id = serializers.IntegerField(allow_null=True, help_text="who did it; null for a command or a worker")
    username = serializers.CharField(allow_null=True)
    action = serializers.ChoiceField(choices=sorted(audit.ACTIONS.values()))
    kind = serializers.CharField(help_text="what was changed: project, membership, invite, project settings, ...")
    object_id = serializers.IntegerField()
    project_id = serializers.IntegerField()
    changes = AuditChangeSerializer(many=True)


def audit_page(view: APIView, *, project_id: int | None):
    paginator = Pagination()
    rows = paginator.paginate_queryset(audit.audit_rows(project_id=project_id), view.request, view=view)
    return paginator.get_paginated_response(AuditEntryOutputSerializer(audit.audit_entries(rows=rows), many=True).data)


class ProjectAuditListApi(APIView):
    """The project's audit log, newest first (admins): who changed its settings, guidelines, members,
    invites and deployments, when, and each field before and after."""

    @extend_schema(responses=AuditEntryOutputSerializer(many=True))
    def get(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        return audit_page(self, project_id=project.id)


class AuditListApi(APIView):
    """Every project's audit log, newest first, deleted projects included (site staff)."""

    permission_classes = [IsAdminUser]

    class FilterSerializer(serializers.Serializer):
        project = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1,
                                           help_text="only this project's entries (it may have been deleted)")

    @extend_schema(parameters=[FilterSerializer], responses=AuditEntryOutputSerializer(many=True))
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        return audit_page(self, project_id=filters.validated_data.get("project"))
