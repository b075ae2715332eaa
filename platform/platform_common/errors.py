"""Errors a service raises when it refuses, and the API's handler that turns each into a status code."""

from django.core.exceptions import ValidationError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class Conflict(ValidationError):
    """The request is well formed but the state forbids it (lease expired, already done): 409."""


class NotYours(ValidationError):
    """The task is leased to someone else: 403."""


STATUS_OF = {Conflict: status.HTTP_409_CONFLICT, NotYours: status.HTTP_403_FORBIDDEN}


def exception_handler(exc, context):
    """Turn a service's ValidationError into a 400 (409, 403 for conflicts and foreign tasks)
    that names the field and the reason."""
    for error_class, code in STATUS_OF.items():
        if isinstance(exc, error_class):
            return Response(exc.message_dict, status=code)
    if isinstance(exc, ValidationError):
        if hasattr(exc, "message_dict"):
            exc = exceptions.ValidationError(exc.message_dict)
        else:
            exc = exceptions.ValidationError({"detail": exc.messages})
    return drf_exception_handler(exc, context)
