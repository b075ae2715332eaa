"""Build labelled texts for the screen bench: sentences with and without personal data, and look-alikes.

Two sets written apart: `texts(seed)` (the set the detectors were tuned on) and `heldout_texts(seed)` (other
templates, other formats and look-alikes, written without running the detectors on them). Each text comes with its
true spans as (kind, start, end). Values are generated here (seeded), nothing is downloaded.
"""

import random
import string

FIRST = ["john", "maria", "li", "ahmed", "sofia", "james", "anna", "raj", "chloe", "lukas", "emma", "noah"]
LAST = ["doe", "garcia", "wang", "khan", "rossi", "smith", "muller", "patel", "martin", "novak"]
DOMAINS = ["example.com", "mail.example.org", "corp.example.net", "uni.example.edu", "example.co.uk", "example.de"]
FILLER = ["Thanks for the quick reply yesterday.", "Let me know if anything else is needed.",
          "The meeting moved to the afternoon.", "We reviewed the draft and left a few comments.",
          "Please keep this between the team for now.", "I will be travelling most of next week.",
          "The report is attached below.", "Sorry for the late answer, it has been busy here."]


def luhn_complete(prefix: str, length: int, rng) -> str:
    """Return a number of `length` digits starting with `prefix` whose last digit makes it pass Luhn."""
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        digits = body + check
        total = sum(int(d) if i % 2 == 0 else (int(d) * 2 - 9 if int(d) * 2 > 9 else int(d) * 2)
                    for i, d in enumerate(reversed(digits)))
        if total % 10 == 0:
            return digits
    raise AssertionError


def luhn_broken(prefix, length, rng):
    good = luhn_complete(prefix, length, rng)
    return good[:-1] + str((int(good[-1]) + rng.randint(1, 9)) % 10)


def group(digits, sizes, sep):
    out, at = [], 0
    for size in sizes:
        out.append(digits[at:at + size])
        at += size
    if at < len(digits):
        out.append(digits[at:])
    return sep.join(x for x in out if x)


# IBAN country formats: (country, BBAN shape) where n is a digit, a a capital letter, c either.
IBAN_SHAPES = [("DE", "n" * 18), ("GB", "aaaa" + "n" * 14), ("FR", "n" * 10 + "c" * 11 + "nn"), ("NL", "aaaa" + "n" * 10),
               ("ES", "n" * 20), ("IT", "a" + "n" * 10 + "c" * 12), ("BE", "n" * 12), ("CH", "n" * 5 + "c" * 12),
               ("AT", "n" * 16), ("PL", "n" * 24), ("SE", "n" * 20), ("IE", "aaaa" + "n" * 14)]


def iban_make(rng, shapes=IBAN_SHAPES):
    """Return a valid IBAN (check digits computed; tried until python-stdnum's country check also agrees)."""
    from stdnum import iban

    while True:
        country, shape = rng.choice(shapes)
        bban = "".join(rng.choice(string.digits if c == "n" else string.ascii_uppercase if c == "a"
                                  else string.digits + string.ascii_uppercase) for c in shape)
        number = f"{country}00{bban}"
        check = iban.calc_check_digits(number)
        number = f"{country}{check}{bban}"
        if iban.is_valid(number):
            return number


class Builder:
    """Appends pieces to a text, recording the spans of the labelled ones."""

    def __init__(self):
        self.parts, self.spans, self.at = [], [], 0

    def add(self, piece, kind=None):
        if kind:
            self.spans.append((kind, self.at, self.at + len(piece)))
        self.parts.append(piece)
        self.at += len(piece)
        return self

    def text(self):
        return "".join(self.parts), self.spans


def render(template, values, rng, filler=FILLER):
    """`template` is text with {kind} slots; `values` maps slot -> (kind or None, value)."""
    b = Builder()
    b.add(" ".join(rng.sample(filler, rng.randint(1, 2))) + " ")  # texts of about 200 characters
    rest = template
    while "{" in rest:
        head, _, tail = rest.partition("{")
        slot, _, rest = tail.partition("}")
        b.add(head)
        kind, value = values[slot]
        b.add(value, kind)
    b.add(rest)
    b.add(" " + rng.choice(FILLER))
    return b.text()


# ---------------------------------------------------------------- the tuning set

def _email(rng):
    return f"{rng.choice(FIRST)}{rng.choice(['.', '_', ''])}{rng.choice(LAST)}@{rng.choice(DOMAINS)}"


def _us_phone(rng):
    area, ex, line = rng.choice(["212", "415", "312", "617", "646", "202"]), rng.randint(200, 999), rng.randint(0, 9999)
    return rng.choice([f"({area}) {ex}-{line:04d}", f"{area}-{ex}-{line:04d}", f"{area}.{ex}.{line:04d}",
                       f"+1 {area} {ex} {line:04d}"])


def _intl_phone(rng):
    return rng.choice(["+44 20 7946 0{:03d}", "+49 30 1234{:03d}", "+33 1 42 68 5{:03d}", "+91 98765 43{:03d}",
                       "+61 2 9876 5{:03d}"]).format(rng.randint(0, 999))


def _card(rng):
    prefix, length, sizes = rng.choice([("4", 16, (4, 4, 4, 4)), ("51", 16, (4, 4, 4, 4)), ("37", 15, (4, 6, 5)),
                                        ("6011", 16, (4, 4, 4, 4))])
    return group(luhn_complete(prefix, length, rng), sizes, rng.choice([" ", "-", ""]))


def _iban(rng):
    number = iban_make(rng)
    return " ".join(number[i:i + 4] for i in range(0, len(number), 4)) if rng.random() < 0.7 else number


def _ipv4(rng):
    return rng.choice([f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}", f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                       f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"])


def _ipv6(rng):
    return rng.choice([f"2001:db8::{rng.randint(1, 0xffff):x}", f"fe80::{rng.randint(1, 0xffff):x}:{rng.randint(1, 0xffff):x}",
                       f"2001:0db8:85a3:0000:0000:8a2e:0370:{rng.randint(0, 0xffff):04x}"])


TUNING = {
    "email": ["You can write to me at {x}.", "Contact: {x}", "my email is {x} if you need it",
              "Forwarding this from {x}, see below.", "me at {x} works best"],
    "phone": ["Call me on {x} after six.", "My phone number is {x}.", "Reach the office at {x}.",
              "tel: {x}", "Text {x} when you land."],
    "card": ["My card number is {x}, expiry 04/27.", "Charge it to {x} please.", "Visa {x} was declined."],
    "iban": ["Please transfer the deposit to {x}.", "IBAN: {x}", "Our account is {x} at the local bank."],
    "ip": ["The server at {x} stopped answering.", "Login from IP {x} was blocked.", "ping {x} and tell me the result",
           "Connect to {x} on port 22."],
    "url": ["See {x} for the details.", "The form is at {x}"],
    "credential": ["{x}"],
}

LOOKALIKES_TUNING = [
    lambda r: f"Your order number is {r.randint(10**9, 10**10 - 1)} and it ships on 2024-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}.",
    lambda r: f"Upgrade to version {r.randint(1, 9)}.{r.randint(0, 20)}.{r.randint(0, 9)}.{r.randint(0, 99)} before Friday.",
    lambda r: f"We shipped v{r.randint(1, 5)}.{r.randint(0, 12)}.0.{r.randint(1, 9)} yesterday.",
    lambda r: f"ISBN 978-{r.randint(0, 1)}-{r.randint(100, 999)}-{r.randint(10000, 99999)}-{r.randint(0, 9)} is the second edition.",
    lambda r: f"{(a := r.randint(10, 99))} * {(b := r.randint(100, 999))} = {a * b}, check it.",
    lambda r: f"The meeting is at {r.randint(1, 12)}:{r.randint(0, 59):02d} on {r.randint(1, 28)}/{r.randint(1, 12)}/2024.",
    lambda r: f"It costs ${r.randint(1, 99)},{r.randint(100, 999)}.{r.randint(0, 99):02d} in total.",
    lambda r: f"Ship to zip code {r.randint(10000, 99999)} please.",
    lambda r: f"Request id {r.getrandbits(128):032x} failed.",
    lambda r: "The uuid is {}-{}-{}-{}-{}.".format(*(f"{r.getrandbits(n * 4):0{n}x}" for n in (8, 4, 4, 4, 12))),
    lambda r: f"Commit {r.getrandbits(160):040x} fixed it.",
    lambda r: f"We met at {r.uniform(-80, 80):.4f}, {r.uniform(-170, 170):.4f} near the lake.",
    lambda r: f"Tracking number {luhn_broken('4', 16, r)} shows it in transit.",
    lambda r: f"Invoice {r.randint(100000, 999999)}-{r.randint(1000, 9999)} is overdue.",
    lambda r: f"See section {r.randint(1, 9)}.{r.randint(1, 9)}.{r.randint(1, 9)}.{r.randint(1, 9)} of the manual.",
    lambda r: f"The reference is DE{r.randint(10, 99)} {r.randint(1000, 9999)} {r.randint(1000, 9999)} {r.randint(1000, 9999)} {r.randint(1000, 9999)} {r.randint(10, 99)} (not checked).",
]


def _credential(rng):
    return f"username: {rng.choice(FIRST)}{rng.randint(1, 99)} password: {''.join(rng.choice(string.ascii_letters) for _ in range(10))}"


def _url(rng):
    return f"https://www.{rng.choice(['example.com', 'example.org'])}/{rng.choice(['docs', 'help', 'a/b'])}?id={rng.randint(1, 999)}"


_MAKERS = {"email": _email, "phone": lambda r: (_us_phone if r.random() < 0.6 else _intl_phone)(r), "card": _card,
           "iban": _iban, "ip": lambda r: (_ipv4 if r.random() < 0.75 else _ipv6)(r), "url": _url,
           "credential": _credential}


def _build(rng, templates, makers, lookalikes, clean, n, filler=FILLER):
    out = []
    kinds = list(templates)
    for i in range(n):
        choice = i % 4
        if choice in (0, 1):  # one finding
            kind = kinds[rng.randrange(len(kinds))]
            out.append(render(rng.choice(templates[kind]), {"x": (kind, makers[kind](rng))}, rng, filler))
        elif choice == 2:  # a look-alike, nothing to find
            out.append(render(rng.choice(lookalikes)(rng).replace("{", "(").replace("}", ")"), {}, rng, filler))
        else:  # two findings, or a clean text
            if rng.random() < 0.5:
                k1, k2 = rng.sample(kinds[:5], 2)
                t = rng.choice(templates[k1]).replace("{x}", "{a}") + " " + rng.choice(templates[k2]).replace("{x}", "{b}")
                out.append(render(t, {"a": (k1, makers[k1](rng)), "b": (k2, makers[k2](rng))}, rng, filler))
            else:
                out.append(render(rng.choice(clean), {}, rng, filler))
    return out


def texts(seed=0, n=2000):
    """Return [(text, [(kind, start, end)])] of the tuning set."""
    rng = random.Random(seed)
    clean = FILLER + ["We need about 40 more chairs for the event on the 12th.", "Room 204 is free at 3 pm."]
    return _build(rng, TUNING, _MAKERS, LOOKALIKES_TUNING, clean, n)


# ---------------------------------------------------------------- the held-out set: other templates and formats

HELD_FILLER = ["hi team,", "quick note:", "fyi", "As discussed on the call,", "Update from support:",
               "[ticket] customer writes:", "ok so", "Hello! Hope you're well."]


def _h_email(rng):
    user = rng.choice([f"{rng.choice(FIRST)}+{rng.choice(['news', 'work', 'x1'])}", f"{rng.choice(FIRST).upper()}.{rng.choice(LAST)}{rng.randint(1, 99)}",
                       f"{rng.choice(FIRST)[0]}{rng.choice(LAST)}"])
    return f"{user}@{rng.choice(['support.shop.example', 'example.io', 'mx.example.fr', 'example.com.au'])}"


def _h_phone(rng):
    return rng.choice([
        f"+1 ({rng.choice(['718', '305', '503'])}) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}",
        f"1-800-{rng.randint(200, 999)}-{rng.randint(0, 9999):04d}",
        f"(555) {rng.randint(100, 999)}-{rng.randint(0, 9999):04d}",
        f"+44 7700 900{rng.randint(0, 999):03d}", f"+49 (0)89 {rng.randint(1000000, 9999999)}",
        f"+33 6 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}",
        f"+91-{rng.choice(['98', '99', '97'])}{rng.randint(100, 999)}-{rng.randint(10000, 99999)}",
        f"+81 3 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}", f"+34 91 {rng.randint(100, 999)} {rng.randint(10, 99)} {rng.randint(10, 99)}",
        f"020 7946 {rng.randint(0, 9999):04d}",
    ])


def _h_card(rng):
    prefix, length, sizes = rng.choice([("4", 16, (4, 4, 4, 4)), ("55", 16, (4, 4, 4, 4)), ("34", 15, (4, 6, 5)),
                                        ("35", 16, (4, 4, 4, 4)), ("4", 13, (4, 4, 5)), ("2221", 16, (4, 4, 4, 4))])
    return group(luhn_complete(prefix, length, rng), sizes, rng.choice([" ", "-", "", "-"]))


def _h_iban(rng):
    shapes = [("NO", "n" * 11), ("DK", "n" * 14), ("FI", "n" * 14), ("PT", "n" * 21), ("LU", "nnn" + "c" * 13),
              ("DE", "n" * 18), ("GB", "aaaa" + "n" * 14), ("CZ", "n" * 20), ("HU", "n" * 24), ("GR", "n" * 7 + "c" * 16)]
    number = iban_make(rng, shapes)
    return number if rng.random() < 0.5 else " ".join(number[i:i + 4] for i in range(0, len(number), 4))


def _h_ip(rng):
    return rng.choice([f"172.{rng.randint(16, 31)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}", "8.8.8.8", "1.1.1.1",
                       f"203.0.113.{rng.randint(1, 254)}", "::1", f"2a02:{rng.randint(1, 0xffff):x}:{rng.randint(1, 0xffff):x}::{rng.randint(1, 0xff):x}",
                       f"::ffff:192.0.2.{rng.randint(1, 254)}", f"100.{rng.randint(64, 127)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}"])


HELDOUT = {
    "email": ["reply-to -> {x}", "Sent from {x} (mobile)", "<{x}> wrote:", "cc'ing {x} here", "email them ({x}) asap"],
    "phone": ["whatsapp: {x}", "if urgent ring {x}", "Mobile {x} / office hours only", "pls dial {x} ext 12",
              "Customer phone {x}; prefers mornings."],
    "card": ["cc# {x} exp 11/26 cvv 123", "paid w/ {x}.", "card ending... actually the full one is {x}",
             "Amex/Visa: {x}"],
    "iban": ["bank details: {x} (BIC NDEANOKK)", "wire to {x} ref INV-22", "IBAN {x}.", "kontonummer {x}"],
    "ip": ["client_ip={x} status=403", "blocked {x} after 5 failed logins", "nameserver {x}",
           "ssh admin {x}", "my home IP is {x}, can you whitelist it?"],
}

LOOKALIKES_HELDOUT = [
    lambda r: f"ticket #{r.randint(2020, 2025)}{r.randint(1, 12):02d}{r.randint(1, 28):02d}-{r.randint(1, 9999):04d} reopened",
    lambda r: f"running python {r.randint(2, 3)}.{r.randint(6, 12)}.{r.randint(0, 9)} on kernel 5.{r.randint(4, 19)}.0.{r.randint(10, 99)}",
    lambda r: f"firmware 1.{r.randint(0, 9)}.{r.randint(0, 9)}.{r.randint(0, 9)} bricked the router",
    lambda r: f"build 10.0.{r.randint(10000, 22999)}.{r.randint(100, 2000)} is installed",
    lambda r: f"ISBN-10 0-{r.randint(100, 999)}-{r.randint(10000, 99999)}-{r.randint(0, 9)}, ISBN-13 979-{r.randint(10, 99)}-{r.randint(1000, 9999)}-{r.randint(100, 999)}-{r.randint(0, 9)}",
    lambda r: f"{r.randint(100, 999)} x {r.randint(1000, 9999)} is roughly {r.randint(100000, 999999)}",
    lambda r: f"total: {r.randint(1000, 9999)} + {r.randint(1000, 9999)} + {r.randint(100, 999)} = lots",
    lambda r: "opening hours 09:00-17:30, lunch 12:30-13:15",
    lambda r: f"price EUR {r.randint(1000, 99999)}.{r.randint(0, 99):02d} incl. VAT, was {r.randint(1000, 9999)},{r.randint(0, 99):02d}",
    lambda r: f"postcode {r.randint(10000, 99999)}-{r.randint(1000, 9999)} / PLZ {r.randint(10000, 99999)}",
    lambda r: "sha256 " + f"{r.getrandbits(256):064x}",
    lambda r: "session " + "-".join(f"{r.getrandbits(n * 4):0{n}x}" for n in (8, 4, 4, 4, 12)),
    lambda r: f"GPS {r.uniform(-80, 80):.6f},{r.uniform(-170, 170):.6f}",
    lambda r: f"on {r.randint(1, 28):02d}.{r.randint(1, 12):02d}.{r.randint(2000, 2025)} we had {r.randint(1000000, 9999999)} visitors",
    lambda r: f"parcel {luhn_complete('9', 20, r)} left the depot",
    lambda r: f"account no. {r.randint(10**7, 10**8 - 1)} sort code {r.randint(10, 99)}-{r.randint(10, 99)}-{r.randint(10, 99)}",
    lambda r: f"chapter 2.{r.randint(1, 9)}.{r.randint(1, 9)}.{r.randint(1, 9)} covers this",
    lambda r: f"MAC 00:1a:{r.randint(16, 255):02x}:{r.randint(16, 255):02x}:{r.randint(16, 255):02x}:{r.randint(16, 255):02x}",
    lambda r: f"the ratio was 1:{r.randint(2, 9)}:{r.randint(2, 9)} and timestamp 12:{r.randint(10, 59)}:{r.randint(10, 59)}",
    lambda r: f"serial SN{r.randint(10**11, 10**12 - 1)}, IMEI {luhn_complete('35', 15, r)}",
    lambda r: f"product code GB{r.randint(10, 99)}ABCD{r.randint(10**13, 10**14 - 1)} is wrong",
    lambda r: f"pop. {r.randint(1, 9)},{r.randint(100, 999)},{r.randint(100, 999)} (2020 census)",
]


def heldout_texts(seed=1, n=2000):
    """Return [(text, [(kind, start, end)])] of the held-out set."""
    rng = random.Random(seed)
    makers = {"email": _h_email, "phone": _h_phone, "card": _h_card, "iban": _h_iban, "ip": _h_ip}
    clean = ["see you at 5", "can we move standup to 10:15?", "I owe you 20 bucks lol", "the 3 of us will come",
             "version two is nicer", "ok thx"]
    return _build(rng, HELDOUT, makers, LOOKALIKES_HELDOUT, clean, n, HELD_FILLER)
