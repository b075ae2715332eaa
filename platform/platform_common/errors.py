"""Errors a service raises when it refuses, and the API's handler that turns each into a status code."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, ValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class Conflict(ValidationError):
    """The request is well formed but the state forbids it (lease expired, already done): 409."""


class NotYours(ValidationError):
    """The task is leased to someone else: 403."""


STATUS_OF = {Conflict: status.HTTP_409_CONFLICT, NotYours: status.HTTP_403_FORBIDDEN}

# Every 404 of the API reads the same. Lookups answer 404 for what the asker may not see, but their
# messages differed ("no such project" for another project's task, "No Task matches the given query."
# for a missing one), which told an outsider which ids exist.
NOT_FOUND = {"detail": "not found, or not yours to see"}


def exception_handler(exc, context):
    """Turn a service's ValidationError into a 400 (409, 403 for conflicts and foreign tasks)
    that names the field and the reason; a body over the upload limit into a JSON 413; every 404
    into the same answer."""
    if isinstance(exc, (Http404, exceptions.NotFound)):
        return Response(NOT_FOUND, status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, RequestDataTooBig):
        # Django's own answer is its HTML 400 page (with DEBUG, a traceback).
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response(
            {"detail": f"the request body is larger than the {limit:,} bytes this server accepts "
                       "(DATA_UPLOAD_MAX_MEMORY_SIZE)"},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    for error_class, code in STATUS_OF.items():
        if isinstance(exc, error_class):
            return Response(exc.message_dict, status=code)
    if isinstance(exc, ValidationError):
        if hasattr(exc, "message_dict"):
            exc = exceptions.ValidationError(exc.message_dict)
        else:
            exc = exceptions.ValidationError({"detail": exc.messages})
    return drf_exception_handler(exc, context)
