"""REST API for training rounds and model versions (admins)."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.apis.accounts import paginated
from annotate.models import Role
from annotate.selectors.accounts import project_for_member
from platform_common.pagination import Pagination
from training import selectors
from training.services import runs
from training.trainers import stages


class StageOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    status = serializers.CharField()
    step = serializers.IntegerField()
    total = serializers.IntegerField()
    eta_seconds = serializers.FloatField(allow_null=True)
    metrics = serializers.DictField()
    error = serializers.CharField()
    snapshot = serializers.CharField(allow_null=True)
    model_version = serializers.DictField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class RunOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    project_id = serializers.IntegerField()
    number = serializers.IntegerField()
    status = serializers.CharField()
    preset = serializers.CharField()
    algorithm = serializers.CharField(help_text="the round's recipe (same as recipe)")
    recipe = serializers.CharField(help_text="the round's recipe: which stages it trains after the base")
    config = serializers.DictField()
    base_source = serializers.CharField(help_text="the real directory the round adopted as its base, resolved from the "
                                                  "name or path given; empty: none adopted")
    processes = serializers.IntegerField()
    seed = serializers.IntegerField()
    error = serializers.CharField()
    cancel_requested = serializers.BooleanField()
    stage = serializers.CharField(allow_null=True, help_text="the stage running now")
    heartbeat_at = serializers.DateTimeField(allow_null=True)
    worker = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    retry_of = serializers.IntegerField(allow_null=True)
    can_cancel = serializers.BooleanField()
    can_resume = serializers.BooleanField()
    can_retry = serializers.BooleanField()
    stages = StageOutputSerializer(many=True)


class RunListApi(APIView):
    """The project's training rounds, newest first (admins)."""

    @extend_schema(responses=RunOutputSerializer(many=True))
    def get(self, request, project_id):
        project = project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        paginator = Pagination()
        page = paginator.paginate_queryset(selectors.runs_of(project=project), request, view=self)
        return paginator.get_paginated_response(RunOutputSerializer([selectors.run_payload(r) for r in page], many=True).data)


class RunCreateApi(APIView):
    """Start a training round in a worker (admins): base (first round only), then the stages of its recipe."""

    class InputSerializer(serializers.Serializer):
        preset = serializers.CharField(default="tiny", help_text="tiny (CPU tests), small, demo, gpu")
        algorithm = serializers.CharField(required=False, help_text="the old name of recipe, still accepted")
        config = serializers.DictField(
            required=False, default=dict, help_text="per stage overrides of the preset: {\"sft\": {\"learning_rate\": 1e-4}}"
        )
        base_source = serializers.CharField(
            required=False, default="", allow_blank=True,
            help_text="the base to adopt: a registered base model's name, or a Hugging Face model directory under "
                      "BASE_MODEL_ROOTS (safetensors, a causal LM, no remote code); empty: the project's base, or "
                      "one built from scratch")
        processes = serializers.IntegerField(default=1, min_value=1, max_value=64)
        seed = serializers.IntegerField(default=0)

        def get_fields(self):
            # The recipes are the registry's at the time of the request (and of the schema), so a stage
            # registered by an installation or a test is offered without touching this class.
            fields = super().get_fields()
            fields["recipe"] = serializers.ChoiceField(
                choices=stages.recipe_choices(unavailable=True), required=False,
                help_text=f"which stages the round trains after the base; default {stages.default_recipe()}. "
                + " ".join(f"{r.name}: {r.description}." for r in stages.RECIPES.values()))
            return fields

    @extend_schema(request=InputSerializer, responses={201: RunOutputSerializer})
    def post(self, request, project_id):
        project = project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        values["recipe"] = values.pop("recipe", None) or values.pop("algorithm", None)
        values.pop("algorithm", None)
        run = runs.run_create(project=project, by=request.user, **values)
        return Response(selectors.run_payload(run), status=status.HTTP_201_CREATED)


class RunDetailApi(APIView):
    """One round: status, stage, step of total with an ETA, latest metrics (admins)."""

    @extend_schema(responses=RunOutputSerializer)
    def get(self, request, run_id):
        run = selectors.run_for_member(user=request.user, run_id=run_id)
        return Response(selectors.run_payload(run))


class RunMetricsApi(APIView):
    """Every metric the round's stages reported, as (step, value) series per stage (admins)."""

    @extend_schema(responses=inline_serializer("RunMetrics", {"curves": serializers.DictField()}))
    def get(self, request, run_id):
        run = selectors.run_for_member(user=request.user, run_id=run_id)
        return Response({"curves": selectors.run_curves(run)})


def _run_action(action):
    class RunActionApi(APIView):
        @extend_schema(request=None, responses={200: RunOutputSerializer, 201: RunOutputSerializer})
        def post(self, request, run_id):
            run = selectors.run_for_member(user=request.user, run_id=run_id)
            changed = action(run=run, by=request.user)
            return Response(selectors.run_payload(changed), status=status.HTTP_201_CREATED if changed.id != run.id else 200)

    return RunActionApi


class RunCancelApi(_run_action(lambda *, run, by: runs.run_cancel(run=run))):
    """Cancel a round: a queued one at once, a running one within seconds, in any stage (admins)."""


class RunResumeApi(_run_action(lambda *, run, by: runs.run_resume(run=run))):
    """Resume a failed round from its last checkpoint (admins)."""


class RunRetryApi(_run_action(lambda *, run, by: runs.run_retry(run=run, by=by))):
    """Start a new round with a failed or cancelled round's settings (admins); 201 with the new round."""


class ModelVersionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.CharField()
    version = serializers.IntegerField()
    run = serializers.IntegerField(source="run.number", allow_null=True, help_text="the round that trained it")
    parent = serializers.CharField(source="parent.name", allow_null=True)
    algorithm = serializers.CharField()
    metrics = serializers.DictField(help_text="evaluation on the held-out split")
    created_at = serializers.DateTimeField()


class ModelVersionListApi(APIView):
    """The project's registered models with their held-out evaluation (admins)."""

    @extend_schema(responses=ModelVersionOutputSerializer(many=True))
    def get(self, request, project_id):
        project = project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        return paginated(self, selectors.model_versions_of(project=project), ModelVersionOutputSerializer)
