"""Replace found spans with typed, numbered placeholders, stable within one conversation."""


class Placeholders:
    """Numbers each distinct value of a kind in the order first met: one per conversation (an export row), so the
    same email twice in a chat is `{{EMAIL_1}}` both times and another one `{{EMAIL_2}}`."""

    def __init__(self):
        self.numbers: dict[tuple[str, str], int] = {}
        self.per_kind: dict[str, int] = {}

    def of(self, kind: str, value: str) -> str:
        key = (kind, value.strip().lower())
        if key not in self.numbers:
            self.per_kind[kind] = self.per_kind.get(kind, 0) + 1
            self.numbers[key] = self.per_kind[kind]
        return "{{%s_%d}}" % (kind.upper(), self.numbers[key])

    def redact(self, text: str, spans) -> str:
        """Return `text` with each (start, end, kind) span replaced; overlapping spans merge into the first."""
        out, at = [], 0
        for start, end, kind in sorted(spans):
            if start < at:  # inside a span already replaced
                continue
            out.append(text[at:start])
            out.append(self.of(kind, text[start:end]))
            at = end
        out.append(text[at:])
        return "".join(out)
