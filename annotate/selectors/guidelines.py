"""The versions a project's guidelines went through and what changed between two of them, read from the audit
history (django-simple-history keeps every save of a Project); the diff is the standard library's difflib."""

import difflib

from django.core.exceptions import ValidationError

from annotate.models import Project


def guideline_versions(*, project: Project) -> list[dict]:
    """Each version of the guidelines, newest first: its number, text, when it was saved and by whom. A version
    saved before the audit history existed (or loaded from a dump) is missing; the current one never is."""
    records = (project.history.order_by("guideline_version", "-history_date", "-history_id")
               .distinct("guideline_version").select_related("history_user"))
    found = {record.guideline_version: {
        "version": record.guideline_version, "text": record.guidelines, "at": record.history_date,
        "by": record.history_user.username if record.history_user else None,
    } for record in records}
    if project.guideline_version not in found:
        found[project.guideline_version] = {"version": project.guideline_version, "text": project.guidelines,
                                            "at": project.updated_at, "by": None}
    return sorted(found.values(), key=lambda version: -version["version"])


def guideline_diff(*, project: Project, old: int, new: int, versions: list[dict] | None = None) -> dict:
    """What changed from version `old` to `new`, line by line: a unified diff's lines, each with its kind (added,
    removed, same, or a hunk's header). Refuses a version the project has no text of, naming it."""
    texts = {version["version"]: version["text"] for version in versions or guideline_versions(project=project)}
    for name, number in (("from", old), ("to", new)):
        if number not in texts:
            known = ", ".join(str(v) for v in sorted(texts))
            raise ValidationError({name: f"version {number} of the guidelines is not recorded; there are {known}"})
    lines = difflib.unified_diff(texts[old].splitlines(), texts[new].splitlines(), f"version {old}", f"version {new}",
                                 lineterm="", n=2)
    kinds = {"+": "added", "-": "removed", " ": "same", "@": "hunk"}
    shown = [{"kind": kinds.get(line[:1], "same"), "text": line} for line in list(lines)[2:]]  # past the file names
    return {"from": old, "to": new, "lines": shown, "changed": any(line["kind"] != "same" for line in shown)}
