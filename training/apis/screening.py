"""REST API for a project's content screen (admins): its settings, switching it on (which queues a backfill of
what is stored), backfills asked for, and following them as screen jobs."""

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.apis.accounts import paginated
from annotate.models import SCREEN_KINDS, Role
from annotate.selectors.accounts import project_for_member
from annotate.services.screening import screen_settings
from training.models import ScreenJob
from training.services import screening

# A PositiveIntegerField's column holds up to 2**31 - 1; no project needs more flags than this before training.
MAX_MIN_FLAGS = 1_000_000

__all__ = ["ScreenBackfillApi", "ScreenJobCancelApi", "ScreenJobDetailApi", "ScreenJobListApi", "ScreenSettingsApi"]


class ScreenJobOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField(help_text="queued, running, succeeded, failed or cancelled")
    error = serializers.CharField(help_text="why it failed or was cancelled")
    texts_done = serializers.IntegerField(help_text="stored texts screened so far")
    texts_total = serializers.IntegerField(help_text="stored texts to screen (known once it runs)")
    counts = serializers.DictField(child=serializers.IntegerField(), help_text="findings recorded, per kind")
    requested_by = serializers.CharField(source="requested_by.username", allow_null=True, default=None)
    worker = serializers.CharField()
    heartbeat_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class ChosenClassifierSerializer(serializers.Serializer):
    model_version = serializers.IntegerField(help_text="the screen classifier version the screen runs")
    version = serializers.IntegerField()
    threshold = serializers.FloatField(help_text="the probability of harmful above which it finds a text")
    metrics = serializers.DictField(help_text="its held-out precision, recall, F1 and average precision")


class ClassifierOutputSerializer(serializers.Serializer):
    chosen = ChosenClassifierSerializer(allow_null=True)
    flags = serializers.IntegerField(help_text="messages annotators flagged toxic, spam or off task")
    min_flags = serializers.IntegerField(help_text="flags a round of the screen recipe needs (classifier_min_flags)")
    flags_needed = serializers.IntegerField(help_text="flags still to come before a screen classifier may train")


class ClassifierChoiceSerializer(serializers.Serializer):
    model_version = serializers.IntegerField(help_text="a screen classifier version of the project")
    threshold = serializers.FloatField(required=False, default=0.5, min_value=0, max_value=1,
                                       help_text="between 0 and 1: the probability of harmful above which it finds a text")


class ScreenSettingsOutputSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    actions = serializers.DictField(
        child=serializers.DictField(child=serializers.CharField()),
        help_text='{"human": {kind: action}, "model": {kind: action}}: every kind, its default where none was set',
    )
    kinds = serializers.DictField(child=serializers.CharField(), help_text="each kind the screen knows: its category")
    words = serializers.ListField(child=serializers.CharField())
    classifier_min_flags = serializers.IntegerField()
    classifier = ClassifierOutputSerializer()
    backfill = ScreenJobOutputSerializer(allow_null=True, help_text="the backfill this change queued (switching on)")


def _settings_answer(settings, job=None) -> dict:
    return ScreenSettingsOutputSerializer({
        "enabled": settings.enabled, "actions": settings.all_actions(), "words": settings.words,
        "kinds": {kind: str(category) for kind, (category, _) in SCREEN_KINDS.items()},
        "classifier_min_flags": settings.classifier_min_flags, "backfill": job,
        "classifier": screening.classifier_status(project=settings.project),
    }).data


class ScreenSettingsApi(APIView):
    """The project's content screen (admins). PATCH changes what it names; switching the screen on queues a
    backfill of everything stored, named in the answer's `backfill` (follow it at screen/jobs/<id>/)."""

    class InputSerializer(serializers.Serializer):
        enabled = serializers.BooleanField(required=False)
        # Checked by the service, which names an unknown source, kind or action; only the kinds named change.
        actions = serializers.JSONField(required=False, help_text='{"human": {kind: action}, "model": {...}}; '
                                                                  "actions: allow, redact, hold, block")
        words = serializers.ListField(child=serializers.CharField(allow_blank=True, trim_whitespace=True),
                                      required=False, help_text="words and phrases, matched whole, ignoring case")
        classifier_min_flags = serializers.IntegerField(required=False, min_value=1, max_value=MAX_MIN_FLAGS)
        classifier = ClassifierChoiceSerializer(required=False, allow_null=True,
                                                help_text="the screen classifier version to screen with; null: none")

    @extend_schema(responses=ScreenSettingsOutputSerializer)
    def get(self, request, project_id):
        project = project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        return Response(_settings_answer(screen_settings(project=project)))

    @extend_schema(request=InputSerializer, responses=ScreenSettingsOutputSerializer)
    def patch(self, request, project_id):
        project = project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        given = dict(data.validated_data)
        with transaction.atomic():  # a refused classifier changes nothing else either
            if "classifier" in given:
                choice = given.pop("classifier") or {}
                screening.classifier_choose(project=project, by=request.user,
                                            model_version_id=choice.get("model_version"),
                                            threshold=choice.get("threshold", 0.5))
            settings, job = screening.screen_update(project=project, by=request.user, **given)
        return Response(_settings_answer(settings, job))


class ScreenBackfillApi(APIView):
    """Screen everything the project has stored again, in a worker (admins): answers the screen job to follow.
    One still waiting is answered instead of a second; refused while the screen is off."""

    @extend_schema(request=None, responses={202: ScreenJobOutputSerializer})
    def post(self, request, project_id):
        project = project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        job = screening.screen_job_enqueue(project=project, by=request.user)
        return Response(ScreenJobOutputSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class ScreenJobListApi(APIView):
    """The project's backfills, newest first (admins)."""

    @extend_schema(responses=ScreenJobOutputSerializer(many=True))
    def get(self, request, project_id):
        project = project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        jobs = ScreenJob.objects.filter(project=project).select_related("requested_by").order_by("-id")
        return paginated(self, jobs, ScreenJobOutputSerializer)


class ScreenJobDetailApi(APIView):
    """One backfill: how far it is, what it found, or why it failed (admins)."""

    @extend_schema(responses=ScreenJobOutputSerializer)
    def get(self, request, project_id, job_id):
        project = project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        return Response(ScreenJobOutputSerializer(get_object_or_404(ScreenJob, pk=job_id, project=project)).data)


class ScreenJobCancelApi(APIView):
    """Cancel a backfill (admins): a queued one at once, a running one after its current batch; 409 once ended."""

    @extend_schema(request=None, responses=ScreenJobOutputSerializer)
    def post(self, request, project_id, job_id):
        project = project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        job = screening.screen_job_cancel(job=get_object_or_404(ScreenJob, pk=job_id, project=project))
        return Response(ScreenJobOutputSerializer(job).data)
