"""Every kind of task in one table: who may do it, its page, how its page's form becomes a submit's payload, its
named submit service, its keyboard map, and where it is tested. To add a kind: a TaskKind, its row here, its
service in annotate.services.submits, its page template; tests/annotate/test_kinds.py checks that each row's
parts exist.

The submit service is named, not imported: the services import this table (through `_submit`), and a name keeps
the table free of them. What every submit shares (the idempotency key, the lease, the item's count) is
submits.task_submit's; a kind's service writes only what the kind makes.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from django.core.exceptions import ValidationError
from django.utils.module_loading import import_string

from annotate.models import Role, TaskKind

SERVICES = "annotate.services.submits"


def _text(post) -> dict:
    return {"text": post.get("text", "")}


def _ranking(post) -> dict:
    if post.get("all_bad"):
        return {"all_bad": True}
    raw = post.get("tiers", "").strip()
    if not raw:
        raise ValidationError({"tiers": "place every reply in your ranking first (or mark them all bad)"})
    try:
        return {"tiers": json.loads(raw)}
    except json.JSONDecodeError:
        raise ValidationError({"tiers": "the ranking could not be read; reload the page and try again"}) from None


def _compare(post) -> dict:
    if not post.get("choice"):
        raise ValidationError({"choice": "choose A, B, a tie or both bad"})
    return {"choice": post.get("choice")}


def _label(post) -> dict:
    rubrics = {name.removeprefix("rubric_"): value for name, value in post.items() if name.startswith("rubric_")}
    return {"quality": post.get("quality") or None, "flags": post.getlist("flags"), "rubrics": rubrics}


def _review(post) -> dict:
    decision = post.get("decision")
    if decision not in ("accept", "reject"):
        raise ValidationError({"decision": "accept or reject the reply"})
    return {"accepted": decision == "accept", "comment": post.get("comment", "")}


@dataclass(frozen=True)
class Kind:
    kind: TaskKind
    role: str  # the least role that may do it
    form: Callable  # the page's POST -> the submit's payload
    submit: str  # the name of its service in SERVICES: (task, *, annotator, payload, guideline_version, time_spent_ms)
    keys: str  # its keyboard map, as its page's help lists it (every page also has S, Esc, ?)
    tests: tuple[str, ...]  # where it is tested, beside the queue's own tests

    @property
    def template(self) -> str:
        return f"annotate/task_{self.kind.value}.html"

    @cached_property
    def _service(self):
        return import_string(f"{SERVICES}.{self.submit}")

    def submit_service(self):
        return self._service


KINDS = {row.kind.value: row for row in (
    Kind(TaskKind.PROMPT, Role.ANNOTATOR, _text, "prompt_submit", "Ctrl+Enter submits",
         ("tests/annotate/test_queue.py", "tests/browser/test_annotating.py")),
    Kind(TaskKind.DEMONSTRATION, Role.ANNOTATOR, _text, "demonstration_submit", "Ctrl+Enter submits",
         ("tests/annotate/test_queue.py", "tests/browser/test_annotating.py")),
    Kind(TaskKind.RANKING, Role.ANNOTATOR, _ranking, "ranking_submit",
         "1-9 place replies in order, arrows move the selected one, T ties it, Backspace takes it out, 0 all bad, "
         "Enter submits", ("tests/annotate/test_queue.py", "tests/browser/test_walk.py")),
    Kind(TaskKind.COMPARE, Role.ANNOTATOR, _compare, "compare_submit", "A or B, T a tie, X both bad; Enter submits",
         ("tests/annotate/test_queue.py", "tests/browser/test_annotating.py")),
    Kind(TaskKind.LABEL, Role.ANNOTATOR, _label, "label_task_submit",
         "1-5 quality, T P M O flags, Tab and arrows for rubrics; Enter submits",
         ("tests/annotate/test_rubrics.py", "tests/browser/test_annotating.py")),
    Kind(TaskKind.REVIEW, Role.REVIEWER, _review, "review_task_submit", "A accept, R reject and type why; Enter submits",
         ("tests/annotate/test_queue.py", "tests/browser/test_annotating.py")),
    Kind(TaskKind.EDIT, Role.ANNOTATOR, _text, "edit_submit", "the text box starts as the reply; Ctrl+Enter saves",
         ("tests/annotate/test_edit_task.py", "tests/browser/test_correcting_work.py")),
)}
