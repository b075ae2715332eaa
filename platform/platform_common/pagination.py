"""The API's pages: `limit` and `offset`, checked before they reach a query."""

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination

MAX_LIMIT = 1000
# OFFSET plus LIMIT must fit in PostgreSQL's bigint.
MAX_OFFSET = 2**63 - 1 - MAX_LIMIT


class Pagination(LimitOffsetPagination):
    """DRF's limit/offset pages, refusing a parameter it cannot use with a 400 that names it.

    DRF passes any whole number on to the query (?limit=9223372036854775808 overflowed a bigint: a 500)
    and silently pages by its default when it cannot read one (?limit=ten).
    """

    max_limit = MAX_LIMIT

    def get_limit(self, request):
        return _whole_number(request, self.limit_query_param, default=self.default_limit, low=1, high=self.max_limit)

    def get_offset(self, request):
        return _whole_number(request, self.offset_query_param, default=0, low=0, high=MAX_OFFSET)

    # What the schema says (drf-spectacular asks the paginator): DRF's own page and parameters, with what
    # this class adds, so that a client (or schemathesis) knows the bounds and that every key is always there.

    def get_paginated_response_schema(self, schema):
        page = super().get_paginated_response_schema(schema)
        page["required"] = ["count", "next", "previous", "results"]
        page["properties"]["count"]["minimum"] = 0
        return page

    def get_schema_operation_parameters(self, view):
        bounds = {self.limit_query_param: {"minimum": 1, "maximum": self.max_limit, "default": self.default_limit},
                  self.offset_query_param: {"minimum": 0, "maximum": MAX_OFFSET, "default": 0}}
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"].update(bounds[parameter["name"]])
        return parameters


def _whole_number(request, name: str, *, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise ValidationError({name: [f"must be a whole number from {low} to {high}, not {raw[:40]!r}"]})
    return value
