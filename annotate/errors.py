"""Errors a service raises when it refuses; the API turns each into a status code."""

from django.core.exceptions import ValidationError


class Conflict(ValidationError):
    """The request is well formed but the state forbids it (lease expired, already done): 409."""


class NotYours(ValidationError):
    """The task is leased to someone else: 403."""
