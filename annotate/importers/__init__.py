"""Import files into a project: one service behind `manage.py import_data` and the API.

    import_run(project=..., format="pairs", stream=open(path, "rb"), filename=..., by=user, trusted=False,
               license="cc-by-4.0")

The Import page and the API run it in a worker (annotate.services.imports: a job with its progress);
`manage.py import_data` runs it in its own process with a progress bar.

`trusted` says the file's replies are demonstrations to imitate (a dialogue corpus): they are written
accepted, so the default SFT export takes them, all but the losing side of a judgement in the file.
All or nothing: a bad line refuses the whole file with its line number and reason, and
nothing is written. The same file (by sha256) is never imported twice into one project.
"""

import hashlib
import re

from django.db import IntegrityError, transaction

from annotate.importers import chats, cornell, oasst, pairs, prompts, text
from annotate.importers.base import ImportRefused, TreeWriter
from annotate.models import ImportBatch, Project, TaskKind
from annotate.services import screening, tree

FORMATS = {
    "prompts-jsonl": prompts.read_jsonl,
    "prompts-csv": prompts.read_csv,
    # Either name reads either form on any line: concatenated datasets mix them.
    "messages": chats.read_chats,
    "sharegpt": chats.read_chats,
    "pairs": pairs.read_pairs,
    "oasst-messages": oasst.read_flat,
    "oasst-trees": oasst.read_trees,
    "cornell": cornell.read_zip,
    "text": text.read_text,
}

__all__ = ["FORMATS", "ImportRefused", "import_check", "import_run", "license_problem"]


def file_sha256(stream) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: stream.read(1 << 20), b""):
        digest.update(block)
    stream.seek(0)
    return digest.hexdigest()


# A Hugging Face licence id (https://huggingface.co/docs/hub/repositories-licenses): lowercase, as the hub writes them.
LICENSE_ID = re.compile(r"[a-z0-9][a-z0-9.+-]{0,63}")


def license_problem(license: str) -> str | None:
    """Why `license` is not a licence id a dataset card can carry, or None ("" is fine: not said)."""
    if license and not LICENSE_ID.fullmatch(license):
        return (f"{license[:70]!r} is not a licence id: use the hub's ids, lowercase letters, digits, '.', '-' and '+' "
                "(cc-by-4.0, apache-2.0, mit, other)")
    return None


def import_check(*, project: Project, format: str, sha256: str, license: str = "") -> None:
    """Refuse, before anything is read, what no import of this file can do: an unknown format or licence, or a
    file the project already has."""
    if format not in FORMATS:
        raise ImportRefused(0, f"unknown format {format!r}; use one of {', '.join(FORMATS)}")
    if problem := license_problem(license):
        raise ImportRefused(0, problem)
    earlier = ImportBatch.objects.filter(project=project, sha256=sha256).first()
    if earlier is not None:
        raise ImportRefused(
            0, f"this file was already imported (import {earlier.id}, {earlier.created_at:%Y-%m-%d %H:%M}); nothing was added"
        )


def import_run(
    *, project: Project, format: str, stream, filename: str = "", by=None, trusted: bool = False, license: str = "",
    sha256: str | None = None,
) -> ImportBatch:
    """Import a seekable binary stream in the given format; return the batch with its counts. `sha256`: the
    file's, when the caller has read it already (an upload stored for a job)."""
    sha256 = sha256 or file_sha256(stream)
    import_check(project=project, format=format, sha256=sha256, license=license)
    try:
        with transaction.atomic():
            batch = ImportBatch.objects.create(
                project=project, format=format, filename=filename[:300], sha256=sha256, imported_by=by, trusted=trusted,
                license=license,
            )
            writer = TreeWriter(project=project, batch=batch, source_name=format)
            FORMATS[format](stream, writer)
            counts = writer.finish()
            if not any(counts.values()):
                raise ImportRefused(0, "the file holds nothing to import")
            if project.settings.weights()[TaskKind.EDIT] > 0:
                counts["waiting_for_edits"] = tree.edit_items_backfill(project=project)
            if screening.screen_settings(project=project).enabled:
                # What the project's screen found in the file, per kind; holds applied before anyone sees them.
                counts["screen_findings"] = screening.screen_backfill(project=project, batch=batch)
            batch.counts = counts
            batch.save(update_fields=["counts", "updated_at"])
    except IntegrityError as error:
        if "import_file_once_per_project" not in str(error):
            raise
        # Another import of the same file committed first.
        raise ImportRefused(0, "this file was already imported; nothing was added") from None
    return batch
