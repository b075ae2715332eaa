"""Plain text for pretraining: documents separated by blank lines."""

from django.db import reset_queries

from annotate.importers.base import CHUNK, ImportRefused, copy_rows, decoded_lines
from annotate.models import CorpusText

MAX_DOCUMENT = 1_000_000


def read_text(stream, writer) -> None:
    paragraph, first_line = [], 0
    documents = []

    def close():
        nonlocal paragraph
        text = "".join(paragraph).strip()
        if text:
            if "\x00" in text:
                raise ImportRefused(first_line, "the text contains a NUL character")
            documents.append({"project_id": writer.project.id, "batch_id": writer.batch.id, "text": text})
            writer.counts["documents"] = writer.counts.get("documents", 0) + 1
        paragraph = []
        if len(documents) >= CHUNK:
            copy_rows(CorpusText, documents)
            documents.clear()
            reset_queries()  # see TreeWriter.flush

    size = 0
    for number, line in decoded_lines(stream):
        if not line.strip():
            close()
            size = 0
            continue
        if not paragraph:
            first_line = number
        size += len(line)
        if size > MAX_DOCUMENT:
            raise ImportRefused(first_line, f"a document (a run of lines without a blank one) is over {MAX_DOCUMENT} characters")
        paragraph.append(line)
    close()
    copy_rows(CorpusText, documents)
