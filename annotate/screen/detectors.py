"""Find personal data and listed words in a text, as typed character spans.

Personal data: scrubadub's default detectors (email, phone, URL, credentials, the national ids it knows), with
detectors of our own on top where it falls short (see each). Names and street addresses would need downloaded NER
models (TextBlob/NLTK data, spaCy, libpostal): out of scope offline, and what is here is English-centred.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

# Bumped whenever a detector changes what it finds: stored findings name the version that found them.
VERSION = "1"


@dataclass(frozen=True)
class Span:
    """One finding in one text: `text[start:end]` is a `kind` (SCREEN_KINDS) found by `detector`."""

    kind: str
    start: int
    end: int
    detector: str
    version: str = VERSION
    score: float | None = None


# scrubadub's filth types, by the kind we call them.
_SCRUBADUB_KINDS = {"email": "email", "phone": "phone", "url": "url", "credential": "credential",
                    "social_security_number": "national_id"}


@lru_cache(maxsize=1)
def _scrubber():
    # Imported here: scrubadub pulls in scikit-learn and TextBlob (3 s), which only a screen needs.
    import scrubadub

    scrubber = scrubadub.Scrubber()
    scrubber.remove_detector("credit_card")  # a bare pattern: see _cards
    scrubber.remove_detector("twitter")
    return scrubber


# 13 to 19 digits, in groups split by single spaces or dashes.
_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")


def _cards(text: str) -> list[Span]:
    """Card numbers: scrubadub's credit-card detector is a bare pattern with no Luhn check that misses spaced or
    dashed numbers; this one takes them and keeps only numbers that pass Luhn (python-stdnum)."""
    from stdnum import luhn

    spans = []
    for match in _CARD.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and luhn.is_valid(digits):
            spans.append(Span("card", match.start(), match.end(), "card.luhn"))
    return spans


def personal_data(text: str) -> list[Span]:
    """Return the personal data in `text`, in order of where it starts."""
    spans = _cards(text)
    for filth in _scrubber().iter_filth(text):
        kind = _SCRUBADUB_KINDS.get(filth.type)
        if kind:
            spans.append(Span(kind, filth.beg, filth.end, f"scrubadub.{filth.type}"))
    return sorted(spans, key=lambda span: (span.start, span.end))


def phrases(text: str, words: Sequence[str]) -> list[Span]:
    """Return where any of `words` (words or phrases) occurs in `text` as whole words, ignoring case."""
    pattern = _phrase_pattern(tuple(sorted({w.strip().lower() for w in words if w.strip()})))
    if pattern is None:
        return []
    return [Span("word", m.start(), m.end(), "wordlist") for m in pattern.finditer(text)]


@lru_cache(maxsize=64)
def _phrase_pattern(words: tuple[str, ...]):
    if not words:
        return None
    alternatives = "|".join(r"\s+".join(map(re.escape, word.split())) for word in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)
