"""The personal-data detectors and the placeholders of redaction: pure functions, no database."""

import pytest

from annotate.screen.detectors import VERSION, personal_data, phrases
from annotate.screen.redact import Placeholders


def found(text):
    return [(span.kind, text[span.start:span.end]) for span in personal_data(text)]


@pytest.mark.parametrize("text, expected", [
    ("write to jane.roe@example.com today", ("email", "jane.roe@example.com")),
    ("me at john.doe@example.com", ("email", "john.doe@example.com")),  # scrubadub spans "me at john.doe"
    ("<ANNA.smith+news@mail.example.co.uk> wrote:", ("email", "ANNA.smith+news@mail.example.co.uk")),
    ("jane [at] example [dot] com", ("email", "jane [at] example [dot] com")),
    ("call (212) 555-0147 tonight", ("phone", "(212) 555-0147")),
    ("her number is +1-212-555-0147.", ("phone", "+1-212-555-0147")),
    ("ring +44 20 7946 0958", ("phone", "+44 20 7946 0958")),
    ("office +49 (0)89 1234567", ("phone", "+49 (0)89 1234567")),
    ("portable +33 6 12 34 56 78", ("phone", "+33 6 12 34 56 78")),
    ("whatsapp +91 98765 43210", ("phone", "+91 98765 43210")),
    ("phone: 2125550147", ("phone", "2125550147")),
    ("Card: 4111-1111-1111-1111.", ("card", "4111-1111-1111-1111")),
    ("amex 3782 822463 10005 exp 04/27", ("card", "3782 822463 10005")),
    ("paid with 5500000000000004", ("card", "5500000000000004")),
    ("IBAN GB82 WEST 1234 5698 7654 32 thanks", ("iban", "GB82 WEST 1234 5698 7654 32")),
    ("wire to DE89370400440532013000.", ("iban", "DE89370400440532013000")),
    ("iban nl91abna0417164300", ("iban", "nl91abna0417164300")),
    ("to FR14 2004 1010 0505 0001 3M02 606 now", ("iban", "FR14 2004 1010 0505 0001 3M02 606")),
    ("login from 192.168.1.20 was blocked", ("ip", "192.168.1.20")),
    ("client_ip=203.0.113.7 status=403", ("ip", "203.0.113.7")),
    ("server 2001:db8::8a2e:370:7334 is down", ("ip", "2001:db8::8a2e:370:7334")),
    ("ssh to ::ffff:192.0.2.1 please", ("ip", "::ffff:192.0.2.1")),
])
def test_personal_data_is_found_with_its_exact_span(text, expected):
    assert expected in found(text)


@pytest.mark.parametrize("text", [
    "Upgrade to version 1.2.3.4 before Friday.",
    "We shipped v2.10.0.1 yesterday.",
    "build 10.0.19041.1234 and firmware 1.0.0.7",
    "See section 4.2.1.3 of the manual.",
    "12 * 345 = 4140, check it.",
    "100 x 2345 is roughly 234500",
    "Your order number is 2125550147 and it shipped on 2024-03-05.",
    "Invoice 123456-7890 is overdue.",
    "ISBN 978-0-306-40615-7, ISBN-10 0-306-40615-2",
    "The meeting is at 10:30 on 12/03/2024, lunch 12:30-13:15.",
    "It costs $1,234.56, or EUR 90725.35 with VAT.",
    "Ship to zip code 90210-1234 please.",
    "The uuid is 550e8400-e29b-41d4-a716-446655440000.",
    "Commit 3f786850e387550fdab836ed7e6dc881de23001b fixed it.",
    "We met at 40.7128, -74.0060 near the lake.",
    "Tracking number 4111 1111 1111 1112 shows it in transit.",  # fails Luhn
    "Parcel 7000000000000000002 left the depot.",  # passes Luhn, no issuer starts with 7
    "DE89 3704 0044 0532 0130 01 has a wrong check digit",
    "MAC 00:1a:2b:3c:4d:5e and std::vector",
    "Room 204 is free at 3 pm, about 40 chairs.",
])
def test_look_alikes_are_not_personal_data(text):
    assert found(text) == []


def test_a_card_inside_an_iban_is_only_the_iban():
    # The IBAN's digits after its country part pass Luhn here: one finding, the IBAN.
    text = "IBAN: DE26 6278 3089 1180 3051 36"
    assert [kind for kind, _ in found(text)] == ["iban"]


def test_findings_carry_the_detector_and_its_version_in_order_of_start():
    spans = personal_data("ip 10.0.0.1, mail a.b@example.org, tel +44 20 7946 0958")
    assert [s.kind for s in spans] == ["ip", "email", "phone"]
    assert all(s.version == VERSION and s.detector for s in spans)


def test_listed_words_are_found_as_whole_words_ignoring_case():
    text = "That Dirty  Trick was a dirtytrick"
    assert [text[s.start:s.end] for s in phrases(text, ["dirty trick", " "])] == ["Dirty  Trick"]


def test_placeholders_number_each_value_once_per_conversation():
    places = Placeholders()
    first = places.redact("a@x.example and b@x.example", [(0, 11, "email"), (16, 27, "email")])
    again = places.redact("again A@x.example, call 555", [(6, 17, "email"), (24, 27, "phone")])
    assert first == "{{EMAIL_1}} and {{EMAIL_2}}"
    assert again == "again {{EMAIL_1}}, call {{PHONE_1}}"  # same value (any case), same number
    assert Placeholders().redact("b@x.example", [(0, 11, "email")]) == "{{EMAIL_1}}"  # a new conversation


def test_overlapping_spans_are_replaced_once():
    assert Placeholders().redact("abcdef", [(0, 4, "card"), (2, 6, "phone")]) == "{{CARD_1}}ef"


def test_scrubadubs_detectors_find_urls_credentials_and_social_security_numbers():
    text = "docs at https://www.example.com/help?id=3, username: jdoe password: hunter22\nSSN 123-45-6789"
    kinds = [kind for kind, _ in found(text)]
    assert kinds == ["url", "credential", "national_id"]
    assert found("ISBN-13 979-19-9343-781-2") == []  # scrubadub's SSN pattern alone takes 979-19-9343
