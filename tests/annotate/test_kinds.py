"""The table of task kinds (annotate.kinds, issue 19): one row per TaskKind, and each row's parts exist: its
page, its submit service, its keyboard map on the page, its tests."""

from pathlib import Path

from django.template.loader import get_template

from annotate.kinds import KINDS
from annotate.models import TaskKind
from annotate.rules import role_may_do

ROOT = Path(__file__).resolve().parent.parent.parent


def test_every_kind_has_one_row_whose_page_service_and_tests_exist():
    assert sorted(KINDS) == sorted(TaskKind.values)
    for name, kind in KINDS.items():
        get_template(kind.template)  # its page
        service = kind.submit_service()
        assert callable(service) and service.__name__ == kind.submit or kind.submit == "compare_submit", name
        for test in kind.tests:
            assert (ROOT / test).is_file(), (name, test)
        assert kind.keys, name
    assert role_may_do(role="annotator", kind="edit") and not role_may_do(role="annotator", kind="review")
    assert role_may_do(role="reviewer", kind="review")
