"""DRF glue shared by both apps."""

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular import openapi as drf_spectacular_openapi
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from annotate.errors import Conflict, NotYours

STATUS_OF = {Conflict: status.HTTP_409_CONFLICT, NotYours: status.HTTP_403_FORBIDDEN}


def exception_handler(exc, context):
    """Turn a service's ValidationError into a 400 (409, 403 for conflicts and foreign tasks)
    that names the field and the reason."""
    for error_class, code in STATUS_OF.items():
        if isinstance(exc, error_class):
            return Response(exc.message_dict, status=code)
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "message_dict"):
            exc = exceptions.ValidationError(exc.message_dict)
        else:
            exc = exceptions.ValidationError({"detail": exc.messages})
    return drf_exception_handler(exc, context)


class AutoSchema(drf_spectacular_openapi.AutoSchema):
    """Name schema components after the view too: every view nests an `InputSerializer`, and
    plain class names would collide ("TokenCreateApi.InputSerializer" -> TokenCreateApiInput)."""

    def get_serializer_name(self, serializer, direction):
        return type(serializer).__qualname__.replace(".", "").replace("Serializer", "") or super().get_serializer_name(
            serializer, direction
        )
