"""The API schema's naming rule (drf-spectacular); the API's errors live in platform_common.errors."""

from drf_spectacular import openapi as drf_spectacular_openapi


class AutoSchema(drf_spectacular_openapi.AutoSchema):
    """Name schema components after the view too: every view nests an `InputSerializer`, and
    plain class names would collide ("TokenCreateApi.InputSerializer" -> TokenCreateApiInput)."""

    def get_serializer_name(self, serializer, direction):
        return type(serializer).__qualname__.replace(".", "").replace("Serializer", "") or super().get_serializer_name(
            serializer, direction
        )
