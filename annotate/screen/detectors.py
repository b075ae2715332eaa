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
VERSION = "2"


@dataclass(frozen=True)
class Span:
    """One finding in one text: `text[start:end]` is a `kind` (SCREEN_KINDS) found by `detector`."""

    kind: str
    start: int
    end: int
    detector: str
    version: str = VERSION
    score: float | None = None


# scrubadub's filth types, by the kind we call them (email and phone are ours: see _emails, _phones).
_SCRUBADUB_KINDS = {"url": "url", "credential": "credential", "social_security_number": "national_id"}


@lru_cache(maxsize=1)
def _scrubber_detectors():
    # Imported here: scrubadub pulls in scikit-learn and TextBlob (3 s), which only a screen needs. Its detectors are
    # run one by one, not through Scrubber.iter_filth, whose filth merging costs more than the detectors themselves.
    import scrubadub

    scrubber = scrubadub.Scrubber()
    for name in ("credit_card", "twitter", "email", "phone"):  # ours instead: _cards, _emails, _phones
        if name in scrubber._detectors:
            scrubber.remove_detector(name)
    return list(scrubber._detectors.values())


# What scrubadub's URL, credential and social security number patterns cannot match without: a text with none of it
# skips them (and the 3 s import of scrubadub, for a process that never meets one).
_SCRUBADUB_NEEDS = re.compile(r"https?://|www\.|(?i:username|login|u:)|\d{3}[-. ]\d{2}[-. ]\d{4}")


def _before(text: str, start: int, width: int = 32) -> str:
    return text[max(0, start - width):start].lower()


# 13 to 19 digits, in groups split by single spaces or dashes.
_CARD = re.compile(r"(?<![\w.,-])\d(?:[ -]?\d){12,18}(?![\w-]|[.,]\d)")
# Issuer prefixes in use (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro): a Luhn-valid number
# outside them is an order or tracking number that passed by chance (one in ten does).
_CARD_ISSUER = re.compile(r"4|5[1-5]|2[2-7]|3[4-9]|30|6[0-9]")
_CARD_NOT = re.compile(r"\b(order|tracking|invoice|ref|reference|serial|isbn|ean|upc|barcode|parcel|shipment|"
                       r"ticket|case|imei|sku)\b[^.\n]*$")
_CARD_YES = re.compile(r"\b(card|visa|mastercard|amex|discover|credit|debit|cc|pan)\b")


def _cards(text: str) -> list[Span]:
    """Card numbers: scrubadub's credit-card detector is a bare pattern with no Luhn check that misses spaced or
    dashed numbers; this one takes them and keeps numbers with an issuer's prefix that pass Luhn (python-stdnum),
    unless what precedes calls them an order, tracking or other number."""
    from stdnum import luhn

    spans = []
    for match in _CARD.finditer(text):
        if re.search(r"\b[A-Z]{2}\d{2} ?$", text[:match.start()]):
            continue  # an IBAN's shape, its check digits wrong: not a card either
        digits = re.sub(r"\D", "", match.group())
        if not (13 <= len(digits) <= 19 and _CARD_ISSUER.match(digits) and luhn.is_valid(digits)):
            continue
        before = _before(text, match.start())
        if _CARD_NOT.search(before) and not _CARD_YES.search(before):
            continue
        spans.append(Span("card", match.start(), match.end(), "card.luhn"))
    return spans


# Country code, two check digits, then 11 to 30 letters or digits, in groups split by single spaces (either case).
_IBAN = re.compile(r"(?<![\w-])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![\w-])", re.IGNORECASE)


def _ibans(text: str) -> list[Span]:
    """IBANs of any country python-stdnum knows, compact or in groups: the longest stretch (whole groups first)
    that passes stdnum's check digits and the country's format, so a word after the number is not taken in."""
    from stdnum import iban

    spans = []
    for match in _IBAN.finditer(text):
        value = match.group()
        ends = [len(value)] + [m.start() for m in re.finditer(" ", value)][::-1]
        for end in ends:
            if end >= 15 and iban.is_valid(value[:end]):
                spans.append(Span("iban", match.start(), match.start() + end, "iban.stdnum"))
                break
    return spans


_IPV4 = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w-]|\.\w)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:.]\w|[\w:])")
# Words that make a dotted number a version, a section or an identifier, not an address.
_NOT_IP = re.compile(r"\b(version|ver|v|release|released|build|firmware|update|upgrade|upgraded|patch|install|"
                     r"installed|python|node|package|library|sdk|app|chapter|section|sec|figure|fig|table|step|rule|"
                     r"clause|item|article|art|paragraph|para|oid|revision|rev|edition|driver|kernel|bios|changelog)"
                     r"\b\.?[^.\n]{0,16}$")
_IP_YES = re.compile(r"\b(ip|ips|ipv4|ipv6|address|addr|host|hostname|server|ping|connect|connected|connecting|"
                     r"subnet|gateway|dns|router|proxy|vpn|firewall|login|logged|via|inet|lan|wan|"
                     r"client|peer|machine|device|nameserver|whitelist|blocked|banned)\b")


def _versionlike(before: str) -> bool:
    """Whether the words before a dotted number call it a version or a section, and no nearer word an address."""
    version = _NOT_IP.search(before)
    if not version:
        return False
    address = [m.start() for m in _IP_YES.finditer(before)]
    return not address or address[-1] < version.start()


def _ips(text: str) -> list[Span]:
    """IP addresses (IPv4 and IPv6, checked by the standard library's ipaddress), except dotted numbers that what
    precedes them calls a version, build, section and the like ("version 1.2.3.4", "v2.10.0.1")."""
    import ipaddress

    spans = []
    for match in _IPV4.finditer(text):
        try:
            ipaddress.IPv4Address(match.group())
        except ValueError:
            continue
        if _versionlike(_before(text, match.start())):
            continue
        spans.append(Span("ip", match.start(), match.end(), "ip.ipaddress"))
    if ":" in text:
        for match in _IPV6.finditer(text):
            value = match.group()
            if value.count(":") < 2 or not re.search(r"\d", value):
                continue
            try:
                ipaddress.IPv6Address(value)
            except ValueError:
                continue
            spans.append(Span("ip", match.start(), match.end(), "ip.ipaddress"))
    return spans


# An address with "@": scrubadub's pattern also takes " at " for "@", and so spans "me at john.doe@example.com" as
# "me at john.doe". Spelled-out addresses are taken only with "dot" spelled out too, or "at" in brackets.
_EMAIL = re.compile(r"(?<![\w.+-])[\w.%+-]*\w@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![\w@-])")
_EMAIL_SPELLED = re.compile(
    r"(?<![\w.+-])[\w.+-]*\w\s*(?:[\[({<]\s*at\s*[\])}>]|\s(?:at|AT)\s)\s*[A-Za-z0-9-]+"
    r"(?:(?:\s*[\[({<]\s*dot\s*[\])}>]\s*|\s(?:dot|DOT)\s|\.)[A-Za-z0-9-]+)*"
    r"(?:\s*[\[({<]\s*dot\s*[\])}>]\s*|\s(?:dot|DOT)\s)(?:[A-Za-z]{2,24})\b", re.IGNORECASE)


def _emails(text: str) -> list[Span]:
    """Email addresses, with "@" or spelled out ("jane [at] example [dot] com", "jane at example dot com")."""
    spans = []
    if "@" in text:
        spans += [Span("email", m.start(), m.end(), "email") for m in _EMAIL.finditer(text)]
    lowered = text.lower()
    if "at" in lowered and "dot" in lowered:
        for m in _EMAIL_SPELLED.finditer(text):
            if not re.search(r"[\[({<]\s*at\s*[\])}>]|\sdot\s|[\[({<]\s*dot", m.group(), re.IGNORECASE):
                continue
            spans.append(Span("email", m.start(), m.end(), "email.spelled"))
    return spans


# A run of 7 to 15 digits with single spaces, dashes or dots between groups, an optional "+country" and an area
# code in brackets. Letters, dashes or dots right next to it make it part of something else (a UUID, a hash, a
# version, a decimal number).
_PHONE = re.compile(r"(?<![\w+.,/$€£¥#-])(?:\+\s?\d{1,3}(?:\s?\(0\))?[\s.-]?)?(?:\(\d{1,5}\)[\s.-]?)?\d{1,15}"
                    r"(?:(?:[ .-]|\s?-\s?)\d{1,8}){0,6}(?![\w@/-]|[.,:]\d|\s?%|\s?[*x×+/=^-]\s?\d)")
_PHONE_YES = re.compile(r"\b(phone|phones|call|calling|called|tel|telephone|mobile|cell|cellphone|fax|whatsapp|"
                        r"text|sms|ring|dial|reach|reached|contact|hotline|helpline|landline|"
                        r"portable|handy|téléphone|telefon|numéro)\b[^\d\n]{0,20}$")
_PHONE_NOT = re.compile(r"\b(order|orders|invoice|ref|reference|tracking|track|isbn|issn|account|acct|iban|id|"
                        r"serial|sku|ticket|case|policy|patient|member|customer|booking|confirmation|receipt|"
                        r"transaction|txn|batch|lot|model|part|zip|postcode|postal|room|flight|page|pages|"
                        r"total|sum|population|year|years|ean|upc|barcode|imei|pin|code|otp|version|v|price|cost|costs|eur|usd|"
                        r"gbp|chf|amount|balance)\b(?:-1[03])?[^\d\n]{0,24}$|[#№]\s*$|\d\s*[*x×+/=^-]\s*$")
_DATE = re.compile(r"\d{4}[-./ ]\d{1,2}[-./ ]\d{1,2}|\d{1,2}[-./ ]\d{1,2}[-./ ]\d{2,4}|\d{5}-\d{4}")
_NANP = re.compile(r"(?:\+?1[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}")
# National forms with a trunk prefix 0 are tried in these regions (each try costs a parse, ~50 us); others as US.
_REGIONS = ("GB", "DE", "FR", "IN", "NL", "AU", "IT", "IE", "CH", "BE", "AT", "BR", "JP")


def _last(pattern: re.Pattern, before: str):
    """Return the last match of `pattern` (anchored at the end) in `before`, trying later starts first."""
    found = pattern.search(before)
    while found and found.start() < len(before):
        later = pattern.search(before, found.start() + 1)
        if not later:
            break
        found = later
    return found


def _phones(text: str) -> list[Span]:
    """Phone numbers, checked by phonenumbers: in international form (+44 ...), the North American shapes
    ((212) 555-0147, 212-555-0147, 212.555.0147), or other national forms valid in a common region. A bare run of
    digits, a date's shape, an ISBN and what the words before call an order, invoice or account number are not
    taken unless the words before say phone."""
    import phonenumbers

    spans = []
    for match in _PHONE.finditer(text):
        value = match.group().rstrip(" .-")
        digits = re.sub(r"\D", "", value)
        if not 7 <= len(digits) <= 15 or len(value) < 8 and not value.startswith("+"):
            continue
        before = _before(text, match.start())
        # The nearer of the words before decides: "call about order 123-456-7890" is an order number.
        said, denied = _last(_PHONE_YES, before), _last(_PHONE_NOT, before)
        if denied and not (said and said.start() > denied.start()):
            continue
        said = bool(said)
        plus = value.startswith("+")
        grouped = bool(re.search(r"\d[\s.()-]+\d", value)) or value.startswith("(")
        if not plus and (_DATE.fullmatch(value) or re.fullmatch(r"\d+\.\d{1,2}", value)):
            continue  # a date or an amount
        if not plus and len(digits) in (10, 13) and re.search(r"\d-\d+-\d+-\d$", value):
            continue  # an ISBN's shape (its last group a single check digit)
        if not plus and not said:
            if not grouped:
                continue  # a bare run of digits: an id as often as a phone
            if re.fullmatch(r"\d+\.\d+", value):
                continue  # a decimal
        found = False
        try:
            if plus:
                number = phonenumbers.parse(value, None)
                found = phonenumbers.is_valid_number(number) or (said and phonenumbers.is_possible_number(number))
            elif _NANP.fullmatch(value):
                # The North American shape is a phone even where the number is not assigned (555 numbers).
                found = phonenumbers.is_possible_number(phonenumbers.parse(value, "US"))
            else:
                for region in _REGIONS if value.startswith("0") else ("US",):
                    number = phonenumbers.parse(value, region)
                    if phonenumbers.is_valid_number(number):
                        found = len(digits) >= 9 or said
                        break
        except phonenumbers.NumberParseException:
            continue
        if found:
            spans.append(Span("phone", match.start(), match.start() + len(value), "phone.phonenumbers"))
    return spans


def personal_data(text: str) -> list[Span]:
    """Return the personal data in `text`, in order of where it starts."""
    ibans = _ibans(text)
    # An IBAN's digits can pass Luhn: they are not also a card.
    spans = [c for c in _cards(text) if not any(c.start < i.end and i.start < c.end for i in ibans)]
    spans += ibans + _emails(text) + _ips(text)
    # A card, an IBAN or an address is not also a phone, nor a URL's or an address's digits.
    taken = [(s.start, s.end) for s in spans]
    for detector in _scrubber_detectors() if _SCRUBADUB_NEEDS.search(text) else ():
        for filth in detector.iter_filth(text):
            kind = _SCRUBADUB_KINDS.get(filth.type)
            if kind == "national_id" and (re.search(r"[\d-]$", text[:filth.beg]) or re.match(r"-?\d", text[filth.end:])):
                continue  # scrubadub's pattern has no bounds: part of a longer dashed number (an ISBN-13)
            if kind:
                spans.append(Span(kind, filth.beg, filth.end, f"scrubadub.{filth.type}"))
                taken.append((filth.beg, filth.end))
    spans += [s for s in _phones(text) if not any(s.start < end and start < s.end for start, end in taken)]
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
