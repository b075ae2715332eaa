"""REST API for project settings and derived figures: consensus, agreement, counts, throughput."""

from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.apis.tasks import project_candidate_set
from annotate.models import PRIORITY_SOURCES, Role, TaskKind
from annotate.selectors import accounts as account_selectors
from annotate.selectors import stats
from annotate.services import accounts as account_services


class SettingsSerializer(serializers.Serializer):
    replies_per_ranking = serializers.IntegerField(min_value=2, max_value=9)
    overlap = serializers.IntegerField(min_value=1, max_value=20)
    demonstrations_per_prompt = serializers.IntegerField(min_value=1, max_value=20)
    max_depth = serializers.IntegerField(min_value=1, max_value=20)
    lease_seconds = serializers.IntegerField(min_value=30, max_value=7 * 24 * 3600)
    flag_threshold = serializers.IntegerField(min_value=1, max_value=100)
    # Minutes after a judgement in which its annotator may change or withdraw it (0: never).
    correction_minutes = serializers.IntegerField(min_value=0, max_value=30 * 24 * 60)
    # Labelled 1-5 scales a label task asks for (helpful, honest, harmless, or the project's own).
    rubrics = serializers.ListField(child=serializers.DictField(), max_length=8)
    task_mix = serializers.DictField(child=serializers.FloatField(min_value=0, max_value=1_000_000))
    # Active learning (annotate.services.priority): each source's weight in an item's priority,
    # adaptive overlap's cap (0 off) and the Kendall's W under which a judged set is disputed.
    priority_weights = serializers.DictField(child=serializers.FloatField(min_value=0, max_value=1000))
    adaptive_overlap_cap = serializers.IntegerField(min_value=0, max_value=20)
    disputed_below = serializers.FloatField(min_value=0, max_value=1)
    # Quality control (annotate.services.gold): the share of gold in each annotator's work, the
    # gold accuracy under which new work pauses (0 never) after how many answers, and a
    # qualification set of gold tasks before real work (0 none) with its pass mark.
    gold_rate = serializers.FloatField(min_value=0, max_value=1)
    gold_pause_below = serializers.FloatField(min_value=0, max_value=1)
    gold_min_answers = serializers.IntegerField(min_value=1, max_value=1000)
    qualification_tasks = serializers.IntegerField(min_value=0, max_value=100)
    qualification_pass_mark = serializers.FloatField(min_value=0, max_value=1)

    def validate_task_mix(self, value):
        unknown = sorted(set(value) - set(TaskKind.values))
        if unknown:
            raise ValidationError(f"unknown task kinds {unknown}; use {', '.join(TaskKind.values)}")
        return value

    def validate_priority_weights(self, value):
        unknown = sorted(set(value) - set(PRIORITY_SOURCES))
        if unknown:
            raise ValidationError(f"unknown priority sources {unknown}; use {', '.join(PRIORITY_SOURCES)}")
        return value


class ProjectSettingsApi(APIView):
    """Read (members) or change (admins) how the project hands out work."""

    @extend_schema(responses=SettingsSerializer)
    def get(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id)
        settings = project.settings
        return Response(SettingsSerializer(
            {**vars(settings), "task_mix": settings.weights(), "priority_weights": settings.source_weights()}
        ).data)

    @extend_schema(request=SettingsSerializer(partial=True), responses=SettingsSerializer)
    def patch(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        data = SettingsSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        settings = account_services.project_settings_update(project=project, **data.validated_data)
        return Response(SettingsSerializer(
            {**vars(settings), "task_mix": settings.weights(), "priority_weights": settings.source_weights()}
        ).data)


class ConsensusApi(APIView):
    """The consensus order of one candidate set (ranked pairs) and its Kendall's W (reviewers)."""

    @extend_schema(
        responses=inline_serializer(
            "Consensus",
            {
                "candidate_set_id": serializers.IntegerField(),
                "rankings": serializers.IntegerField(),
                "all_bad": serializers.IntegerField(),
                "consensus": serializers.ListField(child=serializers.IntegerField()),
                "kendall_w": serializers.FloatField(allow_null=True),
            },
        )
    )
    def get(self, request, project_id, set_id):
        return Response(stats.consensus_for(project_candidate_set(request, project_id, set_id)))


class AgreementApi(APIView):
    """Krippendorff's alpha (ordinal), Kendall's W per set, and each annotator's mean tau
    against the leave-one-out consensus (reviewers). Imported rankings are left out."""

    @extend_schema(responses=inline_serializer("Agreement", {"krippendorff_alpha": serializers.FloatField(allow_null=True)}))
    def get(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.REVIEWER)
        return Response(stats.project_agreement(project=project))


class ProjectStatsApi(APIView):
    """Counts per state, per-annotator throughput and time on task, per-annotator gold accuracy with its count
    and why anyone's work is paused, and why tasks were skipped (counts per reason, the newest notes; admins)."""

    @extend_schema(responses=inline_serializer("ProjectStats", {"counts": serializers.DictField()}))
    def get(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        return Response({
            "counts": stats.project_counts(project=project),
            "annotators": stats.annotator_throughput(project=project),
            "gold": stats.gold_per_annotator(project=project),
            "skips": stats.skip_reasons(project=project),
        })


class MyCountsApi(APIView):
    """Your submitted tasks in the project, today and in total."""

    @extend_schema(responses=inline_serializer("MyCounts", {"today": serializers.IntegerField(), "total": serializers.IntegerField()}))
    def get(self, request, project_id):
        project = account_selectors.project_for_member(user=request.user, project_id=project_id)
        return Response(stats.annotator_counts(project=project, annotator=request.user))
