"""REST API for serving models back: deployments, generation jobs, the arena leaderboard, chat."""

import itertools
import json
import logging
from functools import partial

from django.conf import settings
from django.core.cache import caches
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from annotate.apis.accounts import paginated
from annotate.models import Role
from annotate.selectors.accounts import membership_for, project_for_member
from training import selectors
from training.generation import GenerationError
from training.models import Backend, Deployment, GenerationJob, GenerationKind, ModelVersion
from training.services import serving

logger = logging.getLogger(__name__)


class _CostlyWorkThrottle(UserRateThrottle):
    """Requests per user for work that keeps a core busy (a chat reply, a generation job), at the rate its
    setting names, counted in the database cache: the default cache is each web process's own, so with N
    processes a user would get N times the rate."""

    cache = caches["throttles"]
    rate_setting = ""

    def get_rate(self):
        return getattr(settings, self.rate_setting)


class ChatThrottle(_CostlyWorkThrottle):
    scope = "chat"
    rate_setting = "CHAT_THROTTLE_RATE"


class GenerationThrottle(_CostlyWorkThrottle):
    scope = "generation"
    rate_setting = "GENERATION_THROTTLE_RATE"


class DeploymentOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    model_version = serializers.CharField(source="model_version.name")
    model_version_id = serializers.IntegerField()
    backend = serializers.CharField()
    url = serializers.CharField()
    served_model = serializers.CharField()
    sampling = serializers.DictField()
    share = serializers.IntegerField()
    is_active = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)


class DeploymentListApi(APIView):
    """The project's deployments, newest first, active and ended (admins)."""

    @extend_schema(responses=DeploymentOutputSerializer(many=True))
    def get(self, request, project_id):
        project = project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        deployments = Deployment.objects.filter(project=project).select_related("model_version").order_by("-created_at")
        return paginated(self, deployments, DeploymentOutputSerializer)


class DeploymentCreateApi(APIView):
    """Deploy a model version: it writes candidate replies and answers chats (admins)."""

    class InputSerializer(serializers.Serializer):
        model_version_id = serializers.IntegerField()
        backend = serializers.ChoiceField(choices=Backend.choices, default=Backend.TRANSFORMERS)
        url = serializers.CharField(required=False, default="", allow_blank=True)
        served_model = serializers.CharField(required=False, default="", allow_blank=True)
        sampling = serializers.DictField(required=False, default=dict, help_text="temperature, top_p, max_new_tokens, seed")
        share = serializers.IntegerField(default=1, min_value=1, max_value=9)
        replace = serializers.BooleanField(default=False, help_text="end the other deployments")

    @extend_schema(request=InputSerializer, responses={201: DeploymentOutputSerializer})
    def post(self, request, project_id):
        project = project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        version = get_object_or_404(ModelVersion, pk=values.pop("model_version_id"), project=project)
        deployment = serving.deployment_create(project=project, model_version=version, by=request.user, **values)
        return Response(DeploymentOutputSerializer(deployment).data, status=status.HTTP_201_CREATED)


class DeploymentEndApi(APIView):
    """Undeploy: the version writes no more replies (admins)."""

    @extend_schema(request=None, responses=DeploymentOutputSerializer)
    def post(self, request, project_id, deployment_id):
        project = project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        deployment = get_object_or_404(Deployment, pk=deployment_id, project=project)
        return Response(DeploymentOutputSerializer(serving.deployment_end(deployment=deployment)).data)


class DeploymentRollbackApi(APIView):
    """End the newest deployment and deploy again the version deployed before it (admins)."""

    @extend_schema(request=None, responses={201: DeploymentOutputSerializer})
    def post(self, request, project_id):
        project = project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        deployment = serving.deployment_rollback(project=project, by=request.user)
        return Response(DeploymentOutputSerializer(deployment).data, status=status.HTTP_201_CREATED)


class GenerationJobOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    status = serializers.CharField()
    max_prompts = serializers.IntegerField()
    prompts_done = serializers.IntegerField()
    replies_written = serializers.IntegerField()
    replies_screened = serializers.IntegerField(help_text="replies the content screen blocked (not written)")
    error = serializers.CharField()
    worker = serializers.CharField()
    heartbeat_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    retry_of = serializers.IntegerField(source="retry_of_id", allow_null=True)


class GenerationJobListApi(APIView):
    """The project's generation jobs, newest first: status, progress, and why one failed (admins)."""

    @extend_schema(responses=GenerationJobOutputSerializer(many=True))
    def get(self, request, project_id):
        project = project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        return paginated(self, GenerationJob.objects.filter(project=project).order_by("-id"), GenerationJobOutputSerializer)


class GenerationJobCancelApi(APIView):
    """Cancel a generation job: a queued one at once, a running one after its current batch (admins)."""

    @extend_schema(request=None, responses=GenerationJobOutputSerializer)
    def post(self, request, project_id, job_id):
        project = project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        job = serving.generation_cancel(job=get_object_or_404(GenerationJob, pk=job_id, project=project))
        return Response(GenerationJobOutputSerializer(job).data)


class GenerationJobCreateApi(APIView):
    """Queue generation: K replies from the deployed versions under prompts that need rankings,
    or blind arena pairs of two versions (admins)."""

    throttle_classes = (*api_settings.DEFAULT_THROTTLE_CLASSES, GenerationThrottle)

    class InputSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=GenerationKind.choices, default=GenerationKind.CANDIDATES)
        max_prompts = serializers.IntegerField(default=100, min_value=1, max_value=100_000)
        version_ids = serializers.ListField(child=serializers.IntegerField(), required=False, default=list,
                                            help_text="arena: the two model versions to compare")

    @extend_schema(request=InputSerializer, responses={202: GenerationJobOutputSerializer})
    def post(self, request, project_id):
        project = project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        ids = data.validated_data["version_ids"]
        versions = list(ModelVersion.objects.filter(project=project, pk__in=ids))
        versions.sort(key=lambda v: ids.index(v.pk))
        if len(versions) != len(set(ids)):
            return Response({"version_ids": ["no such model version in this project"]}, status=400)
        job = serving.generation_enqueue(
            project=project, by=request.user, kind=data.validated_data["kind"],
            max_prompts=data.validated_data["max_prompts"], versions=versions,
        )
        return Response(GenerationJobOutputSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class GenerationJobRetryApi(APIView):
    """Queue a failed generation job again (admins)."""

    throttle_classes = (*api_settings.DEFAULT_THROTTLE_CLASSES, GenerationThrottle)

    @extend_schema(request=None, responses={202: GenerationJobOutputSerializer})
    def post(self, request, project_id, job_id):
        project = project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        job = get_object_or_404(GenerationJob, pk=job_id, project=project)
        return Response(GenerationJobOutputSerializer(serving.generation_retry(job=job, by=request.user)).data,
                        status=status.HTTP_202_ACCEPTED)


class LeaderboardApi(APIView):
    """Model versions by Bradley-Terry strength from every vote between their replies, with
    bootstrap 95% intervals (members)."""

    @extend_schema(responses=inline_serializer("Leaderboard", {"versions": serializers.ListField(child=serializers.DictField())}))
    def get(self, request, project_id):
        project = project_for_member(user=request.user, project_id=project_id)
        return Response({"versions": selectors.version_leaderboard(project=project)})


class ChatInputSerializer(serializers.Serializer):
    turns = serializers.ListField(child=serializers.DictField(), help_text="[{role: user|assistant, content}], ending "
                                  "with a user turn; to save as a prompt, each assistant turn with its `signature`")
    deployment_id = serializers.IntegerField(required=False, help_text="which deployment answers; default the newest")


class ChatReplyApi(APIView):
    """Stream the deployed model's reply to a chat as server-sent events (members).

    Each event's data is JSON: {"text": ...} for the next piece of the reply; the stream ends with an
    `event: done` ({"model_version": ..., "signature": ...}: send the signature back with the reply, as the turn's
    "signature", to save the chat as a prompt), or with an `event: error` ({"detail": ...}) when the model
    failed after its first words. A model that fails before answering anything is a JSON 502 instead.
    With the project's content screen on, text comes a sentence at a time, screened (redacted kinds as
    placeholders), and a reply the screen stops ends with `event: withheld` ({"model_version", "notice"}):
    show the notice instead of the text sent so far; the reply has no signature.
    """

    throttle_classes = (*api_settings.DEFAULT_THROTTLE_CLASSES, ChatThrottle)

    @extend_schema(request=ChatInputSerializer, responses={
        (200, "text/event-stream"): OpenApiResponse(str, description="the reply, as server-sent events"),
        502: OpenApiResponse(inline_serializer("ChatFailed", {"detail": serializers.CharField()}),
                             description="the model failed before writing anything"),
    })
    def post(self, request, project_id):
        membership = membership_for(user=request.user, project_id=project_id)
        data = ChatInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        deployment = selectors.deployment_for_chat(project=membership.project,
                                                   deployment_id=data.validated_data.get("deployment_id"))
        chunks = serving.chat_screened(
            project=membership.project, user=request.user, version=deployment.model_version,
            chunks=serving.chat_stream(deployment=deployment, turns=data.validated_data["turns"]),
        )
        name = deployment.model_version.name
        explain = membership.role == Role.ADMIN
        try:
            # The first piece before the answer starts: until then a failure can still be a status code.
            first = next(chunks, None)
        except GenerationError as error:
            return Response({"detail": _chat_failure(name, error, explain=explain)}, status=status.HTTP_502_BAD_GATEWAY)
        sign = partial(serving.chat_reply_sign, project=membership.project, user=request.user,
                       version=deployment.model_version, turns=data.validated_data["turns"])
        response = StreamingHttpResponse(_chat_events(name, first, chunks, explain=explain, sign=sign),
                                         content_type="text/event-stream; charset=utf-8")
        response["X-Model-Version"] = name
        response["Cache-Control"] = "no-store"
        return response


def _chat_failure(name: str, error: GenerationError, *, explain: bool) -> str:
    """Say that the model failed: why to a project admin (the server's address and its status, never what it
    answered), only that it did to an annotator, who may not learn the servers behind the project."""
    logger.warning("chat with %s failed: %s", name, error)
    if explain:
        return f"{name} could not answer: {error}"
    return f"{name} could not answer just now; try again later, or tell a project admin"


def _event(data: dict, *, kind: str | None = None) -> str:
    return (f"event: {kind}\n" if kind else "") + f"data: {json.dumps(data)}\n\n"


def _chat_events(name: str, first: str | None, chunks, *, explain: bool, sign):
    """Yield the reply's server-sent events, ending with done (with the whole reply's signature, which saving
    the chat as a prompt asks for) or with the error that cut it short."""
    reply = []
    try:
        for chunk in (() if first is None else itertools.chain([first], chunks)):
            if isinstance(chunk, serving.ChatWithheld):
                # The screen stopped the reply: no signature, so it can never be saved as the model's words.
                yield _event({"model_version": name, "notice": chunk.notice}, kind="withheld")
                return
            reply.append(chunk)
            yield _event({"text": chunk})
        yield _event({"model_version": name, "signature": sign(reply="".join(reply))}, kind="done")
    except GenerationError as error:
        yield _event({"detail": _chat_failure(name, error, explain=explain)}, kind="error")
    finally:
        chunks.close()  # a client that went away stops the generation


class ChatToPromptApi(APIView):
    """Turn a chat into a prompt for the queue: its last user turn gets demonstrations and replies (members).
    Each model turn carries the `signature` its reply's stream ended with; a reply without one, or changed, is
    refused."""

    @extend_schema(request=ChatInputSerializer, responses={201: inline_serializer("ChatPrompt", {"message_id": serializers.IntegerField()})})
    def post(self, request, project_id):
        project = project_for_member(user=request.user, project_id=project_id)
        data = ChatInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        message = serving.chat_to_prompt(project=project, user=request.user, turns=data.validated_data["turns"])
        return Response({"message_id": message.id}, status=status.HTTP_201_CREATED)

