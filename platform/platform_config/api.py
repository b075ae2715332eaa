"""The API schema (drf-spectacular): how components are named, that every list is a page, and the errors every
operation may answer; the API's errors themselves live in platform_common.errors. And the API's answer to a
URL no route matches."""

import sys

from django.http import HttpResponse, JsonResponse
from django.views.defaults import page_not_found, server_error
from drf_spectacular import openapi as drf_spectacular_openapi
from drf_spectacular.plumbing import ResolvedComponent

from platform_common import errors
from platform_common.jobs import DATABASE_AWAY
from platform_common.pagination import Pagination


class AutoSchema(drf_spectacular_openapi.AutoSchema):
    """drf-spectacular's schema of an operation, saying what the API does beyond what it sees in a view."""

    def get_serializer_name(self, serializer, direction):
        """Name schema components after the view too: every view nests an `InputSerializer`, and
        plain class names would collide ("TokenCreateApi.InputSerializer" -> TokenCreateApiInput)."""
        return type(serializer).__qualname__.replace(".", "").replace("Serializer", "") or super().get_serializer_name(
            serializer, direction
        )

    def _get_paginator(self):
        # The views are APIViews, which drf-spectacular does not see paginate; every list they answer is a page
        # of Pagination ({count, next, previous, results}, by limit and offset), and the schema says so.
        if self.method == "GET" and self._is_list_view():
            return Pagination()
        return super()._get_paginator()

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code, (name, body, description, methods) in errors.ERROR_RESPONSES.items():
            if code in responses or (methods and self.method not in methods):
                continue
            component = ResolvedComponent(name=name, type=ResolvedComponent.SCHEMA, schema=body, object=name)
            self.registry.register_on_missing(component)
            responses[code] = {"description": description, "content": {"application/json": {"schema": component.ref}}}
            if code == "429":
                responses[code]["headers"] = errors.RETRY_AFTER_HEADER
        return responses


def not_found(request, exception):
    """Answer a URL no route matches (handler404): under /api/ as every other API 404 reads, in JSON (an id
    that is not a number, /api/runs/abc/, matched no route and got the HTML page); elsewhere Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse(errors.NOT_FOUND, status=404)
    return page_not_found(request, exception)


# How long a client is asked to wait when the database is away (a restart takes a few seconds).
RETRY_AFTER_SECONDS = 5


def server_failed(request):
    """Answer an uncaught exception (handler500): while the database is away, a 503 that says so (JSON under
    /api/, a short page elsewhere) with Retry-After, not Django's 500 page; otherwise the API's JSON 500 or Django's
    page. Called from Django's own except block, so sys.exc_info() is the exception."""
    failure = sys.exc_info()[1]
    if isinstance(failure, DATABASE_AWAY):
        detail = "the database is not answering (restarting?); try again in a few seconds"
        if request.path.startswith("/api/"):
            response = JsonResponse({"detail": detail}, status=503)
        else:
            response = HttpResponse(f"<!doctype html><title>Unavailable</title><h1>Unavailable</h1><p>{detail}.</p>",
                                    status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "the server failed; the error is in its log"}, status=500)
    return server_error(request)
