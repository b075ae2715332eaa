"""REST API for the content screen's findings (admins): list them, clear a false positive."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.models import SCREEN_KINDS, Role, ScreenFinding
from annotate.selectors import accounts as account_selectors
from annotate.selectors import screening as screening_selectors
from annotate.services import screening
from platform_common.pagination import Pagination


class FindingOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    message_id = serializers.IntegerField(allow_null=True)
    corpus_text_id = serializers.IntegerField(allow_null=True)
    where = serializers.CharField()
    kind = serializers.CharField()
    category = serializers.CharField()
    start = serializers.IntegerField()
    end = serializers.IntegerField()
    found = serializers.SerializerMethodField(help_text="the text of the span")
    detector = serializers.CharField()
    detector_version = serializers.CharField()
    score = serializers.FloatField(allow_null=True)
    action = serializers.CharField()
    created_at = serializers.DateTimeField()
    cleared_at = serializers.DateTimeField(allow_null=True)
    cleared_by_id = serializers.IntegerField(allow_null=True)

    def get_found(self, finding) -> str:
        return screening_selectors.finding_text(finding)[finding.start:finding.end]


class ScreenFindingListApi(APIView):
    """The project's screen findings, newest first (admins), paginated; filter by kind and live (not cleared)."""

    class FilterSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=sorted(SCREEN_KINDS), required=False)
        live = serializers.BooleanField(required=False, allow_null=True, default=None,
                                        help_text="true: only not cleared; false: only cleared")

    @extend_schema(parameters=[FilterSerializer], responses=FindingOutputSerializer(many=True))
    def get(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        found = screening_selectors.findings_list(project=project, **filters.validated_data)
        paginator = Pagination()
        page = paginator.paginate_queryset(found, request, view=self)
        return paginator.get_paginated_response(FindingOutputSerializer(page, many=True).data)


class ScreenFindingClearApi(APIView):
    """Clear a finding as a false positive (admins): it no longer redacts or holds, and stays cleared."""

    @extend_schema(request=None, responses=FindingOutputSerializer)
    def post(self, request, project_id, finding_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        finding = get_object_or_404(ScreenFinding, pk=finding_id, project=project)
        finding = screening.finding_clear(finding=finding, by=request.user)
        return Response(FindingOutputSerializer(finding).data)
