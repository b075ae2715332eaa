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


# The error answers in the API's schema (platform_config.api.AutoSchema puts them on every operation they may
# come from): the handler above answers each in one of two bodies.
ERROR_BODY = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
    "description": "why, in one sentence",
}
FIELD_ERRORS_BODY = {
    "type": "object",
    "additionalProperties": {},
    "description": "each field refused, named with a list of what is wrong with it (an object of the same shape for "
                   "a field that holds others); `detail` for what is no one field's",
}
WITH_BODY = ("POST", "PUT", "PATCH")
# status: (component, body, what it means, the methods that may get it (None: all))
ERROR_RESPONSES = {
    "400": ("FieldErrors", FIELD_ERRORS_BODY, "refused: a parameter or field is missing or wrong", None),
    "401": ("Error", ERROR_BODY, "no credentials, or a token that is not valid (send `Authorization: Token <key>`)",
            None),
    "403": ("FieldErrors", FIELD_ERRORS_BODY, "the user's role does not allow it, or the task is someone else's",
            None),
    "404": ("Error", ERROR_BODY, "not found, or not the user's to see: the same answer either way", None),
    "409": ("FieldErrors", FIELD_ERRORS_BODY, "well formed, but the state forbids it (done, ended, not that kind)",
            None),
    "413": ("Error", ERROR_BODY, "the body is larger than the server accepts (DATA_UPLOAD_MAX_MEMORY_SIZE)",
            WITH_BODY),
    "415": ("Error", ERROR_BODY, "the body is in a media type the operation does not read", WITH_BODY),
    "429": ("Error", ERROR_BODY, "too many requests from this user: try again after Retry-After seconds", None),
}
RETRY_AFTER_HEADER = {"Retry-After": {"schema": {"type": "integer"}, "required": True,
                                      "description": "seconds to wait before the next request"}}
