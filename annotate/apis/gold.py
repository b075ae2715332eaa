"""REST API for gold items (project admins) and an annotator's own gold results (per day, a day late)."""

from django.contrib.auth import get_user_model
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.apis.accounts import paginated
from annotate.models import Role
from annotate.selectors import accounts as account_selectors
from annotate.selectors import gold as gold_selectors
from annotate.services import gold as gold_services


class GoldOutputSerializer(serializers.Serializer):
    item_id = serializers.IntegerField()
    kind = serializers.CharField(source="item.kind")
    candidate_set_id = serializers.IntegerField(source="item.candidate_set_id", allow_null=True)
    message_id = serializers.IntegerField(source="item.message_id", allow_null=True)
    answer = serializers.DictField(help_text="tiers or all_bad; quality and flags; or accepted, by kind")
    source = serializers.CharField(help_text="'marked' by an admin or promoted from the 'consensus'")
    answered = serializers.IntegerField(source="item.done", help_text="judgements of the item in all")
    created_at = serializers.DateTimeField()


class ItemIdSerializer(serializers.Serializer):
    item_id = serializers.IntegerField(min_value=1, max_value=2**63 - 1)


class GoldItemListApi(APIView):
    """The project's gold items with their known answers, newest first (admins)."""

    @extend_schema(responses=GoldOutputSerializer(many=True))
    def get(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        return paginated(self, gold_selectors.gold_items(project=project), GoldOutputSerializer)


class GoldMarkApi(APIView):
    """Make a work item gold with its known answer, or change a gold item's answer (admins).

    `answer` by kind: ranking and compare `{"tiers": [[best], ...]}` or `{"all_bad": true}`;
    label `{"quality": 1-5 or null, "flags": [...]}`; review `{"accepted": true|false}`.
    """

    class InputSerializer(ItemIdSerializer):
        answer = serializers.DictField()

    @extend_schema(request=InputSerializer, responses={201: GoldOutputSerializer})
    def post(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        gold = gold_services.gold_mark(project=project, by=request.user, **data.validated_data)
        return Response(GoldOutputSerializer(gold).data, status=status.HTTP_201_CREATED)


class GoldPromoteApi(APIView):
    """Make a judged item gold with the consensus of its judgements as the known answer (admins)."""

    @extend_schema(request=ItemIdSerializer, responses={201: GoldOutputSerializer})
    def post(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        data = ItemIdSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        gold = gold_services.gold_promote(project=project, by=request.user, **data.validated_data)
        return Response(GoldOutputSerializer(gold).data, status=status.HTTP_201_CREATED)


class GoldUnmarkApi(APIView):
    """Make a gold item ordinary work again (admins); its gold answers no longer count."""

    @extend_schema(request=ItemIdSerializer, responses=inline_serializer("GoldUnmarked", {"item_id": serializers.IntegerField()}))
    def post(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        data = ItemIdSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        item = gold_services.gold_unmark(project=project, **data.validated_data)
        return Response({"item_id": item.id})


class GoldResumeApi(APIView):
    """Let a paused annotator work again (admins): their gold answers so far stop counting for pausing."""

    class InputSerializer(serializers.Serializer):
        annotator_id = serializers.IntegerField(min_value=1, max_value=2**63 - 1)

    @extend_schema(request=InputSerializer, responses={201: inline_serializer("GoldResumed", {"annotator_id": serializers.IntegerField()})})
    def post(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        annotator = get_object_or_404(get_user_model(), pk=data.validated_data["annotator_id"])
        gold_services.gold_resume(project=project, annotator=annotator, by=request.user)
        return Response({"annotator_id": annotator.id}, status=status.HTTP_201_CREATED)


class MyGoldApi(APIView):
    """Your quality checks: right and given per day, up to yesterday; and whether your work is paused.

    Per day and a day late, never per task, so that the checks cannot be told from real work.
    """

    OutputSerializer = inline_serializer(
        "MyGold",
        {
            "days": inline_serializer(
                "GoldDay", {"day": serializers.DateField(), "correct": serializers.IntegerField(), "answered": serializers.IntegerField()},
                many=True,
            ),
            "qualification_left": serializers.IntegerField(help_text="quality checks to do before real work"),
            "paused_reason": serializers.CharField(help_text="why your new work is paused; empty when it is not"),
        },
    )

    @extend_schema(responses=OutputSerializer)
    def get(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id)
        standing = gold_selectors.gold_standing(project=project, annotator=request.user)
        return Response({
            "days": gold_selectors.gold_days_of(project=project, annotator=request.user),
            "qualification_left": standing.qualification_left,
            "paused_reason": standing.paused_reason,
        })
