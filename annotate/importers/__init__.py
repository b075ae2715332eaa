"""Import files into a project: one service behind `manage.py import_data` and the API.

    import_run(project=..., format="pairs", stream=open(path, "rb"), filename=..., by=user, trusted=False)

`trusted` says the file's replies are demonstrations to imitate (a dialogue corpus): they are written
accepted, so the default SFT export takes them, all but the losing side of a judgement in the file.
All or nothing: a bad line refuses the whole file with its line number and reason, and
nothing is written. The same file (by sha256) is never imported twice into one project.
"""

import hashlib

from django.db import IntegrityError, transaction

from annotate.importers import chats, cornell, oasst, pairs, prompts, text
from annotate.importers.base import ImportRefused, TreeWriter
from annotate.models import ImportBatch, Project
from annotate.services import screening

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

__all__ = ["FORMATS", "ImportRefused", "import_run"]


def file_sha256(stream) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: stream.read(1 << 20), b""):
        digest.update(block)
    stream.seek(0)
    return digest.hexdigest()


def import_run(
    *, project: Project, format: str, stream, filename: str = "", by=None, trusted: bool = False
) -> ImportBatch:
    """Import a seekable binary stream in the given format; return the batch with its counts."""
    if format not in FORMATS:
        raise ImportRefused(0, f"unknown format {format!r}; use one of {', '.join(FORMATS)}")
    sha256 = file_sha256(stream)
    earlier = ImportBatch.objects.filter(project=project, sha256=sha256).first()
    if earlier is not None:
        raise ImportRefused(
            0, f"this file was already imported (import {earlier.id}, {earlier.created_at:%Y-%m-%d %H:%M}); nothing was added"
        )
    try:
        with transaction.atomic():
            batch = ImportBatch.objects.create(
                project=project, format=format, filename=filename[:300], sha256=sha256, imported_by=by, trusted=trusted
            )
            writer = TreeWriter(project=project, batch=batch, source_name=format)
            FORMATS[format](stream, writer)
            counts = writer.finish()
            if not any(counts.values()):
                raise ImportRefused(0, "the file holds nothing to import")
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
