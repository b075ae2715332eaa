"""Prompts, one per JSON line (`prompt` or `text`) or CSV row (a `prompt` or `text` column).

Whatever else a line or row holds (an id, a category, a source) is kept as the prompt's metadata.
"""

import csv
import io

from annotate.importers.base import ImportRefused, decoded_lines, jsonl_records, text_field
from annotate.models import MessageRole


def read_jsonl(stream, writer) -> None:
    for line, record in jsonl_records(stream):
        text = text_field(record, line, "prompt", "text")
        field = "prompt" if "prompt" in record else "text"
        metadata = {key: value for key, value in record.items() if key != field} if len(record) > 1 else None
        writer.turn(parent=None, role=MessageRole.USER, text=text, line=line, metadata=metadata)


def read_csv(stream, writer) -> None:
    text = io.TextIOWrapper(_Lines(stream), encoding="utf-8", newline="")
    reader = csv.DictReader(text)
    try:
        header = reader.fieldnames or []
    except (csv.Error, UnicodeDecodeError) as error:
        raise ImportRefused(1, f"cannot read the header: {error}") from None
    column = next((name for name in ("prompt", "text") if name in header), None)
    if column is None:
        raise ImportRefused(1, f"no 'prompt' or 'text' column (found {', '.join(header) or 'none'})")
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise ImportRefused(reader.line_num, f"not valid CSV: {error}") from None
        except UnicodeDecodeError as error:
            raise ImportRefused(reader.line_num + 1, f"not utf-8 text (bad byte at column {error.start + 1})") from None
        # A row longer than the header has its surplus under None: unnamed, so not kept.
        metadata = {name: value for name, value in row.items() if name != column and name is not None}
        writer.turn(parent=None, role=MessageRole.USER, text=text_field(row, reader.line_num, column),
                    line=reader.line_num, metadata=metadata)


class _Lines(io.RawIOBase):
    """A readable wrapper that checks UTF-8 line by line (so errors name their line)."""

    def __init__(self, stream):
        self.lines = (text.encode() for _, text in decoded_lines(stream))
        self.rest = b""

    def readable(self):
        return True

    def readinto(self, buffer):
        while not self.rest:
            try:
                self.rest = next(self.lines)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self.rest))
        buffer[:size], self.rest = self.rest[:size], self.rest[size:]
        return size
