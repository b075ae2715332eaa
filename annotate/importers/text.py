"""Plain text for pretraining: documents separated by blank lines."""

from annotate.importers.base import CHUNK, ImportRefused, decoded_lines
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
            documents.append(CorpusText(project=writer.project, batch=writer.batch, text=text))
            writer.counts["documents"] = writer.counts.get("documents", 0) + 1
        paragraph = []
        if len(documents) >= CHUNK:
            CorpusText.objects.bulk_create(documents)
            documents.clear()

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
    CorpusText.objects.bulk_create(documents)
