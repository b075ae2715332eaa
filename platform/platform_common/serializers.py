"""Input fields the API's serializers share."""

from typing import ClassVar

from rest_framework import serializers

JSON_KINDS = {bool: "true or false", int: "a number", float: "a number", list: "a list", dict: "an object"}


class StrictCharField(serializers.CharField):
    """A CharField that takes only strings: DRF's turns 12 into "12", so a number sent as a text was stored."""

    default_error_messages: ClassVar[dict] = {"not_a_string": "must be a string, not {kind}"}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string", kind=JSON_KINDS.get(type(data), type(data).__name__))
        return super().to_internal_value(data)


def whole_number(text: str) -> bool:
    """Whether `text` is ASCII digits only, as int() reads it: str.isdigit() also takes "²", which int() refuses."""
    return text.isascii() and text.isdecimal()
