"""Read snapshot files (JSONL, as the exporters write them) into the rows each stage trains on.

Rows carry provenance and other keys the trainers do not use; only the columns a stage needs
are kept, so that `datasets` never has to infer a schema for the rest.
"""

import json
from collections.abc import Iterator
from pathlib import Path

from .stages import COLUMNS, STAGES

# The columns that are not chats, with their type.
PLAIN = {"text": str, "label": bool}
PLAIN_NAMES = {"text": "a string", "label": "true or false"}


class DataError(ValueError):
    """A data file the stage cannot use; the message names the file and line."""


def read_jsonl(path: str | Path) -> Iterator[dict]:
    for _, row in _numbered(path):
        yield row


def _numbered(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, row) for each non-blank line."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as error:
                raise DataError(f"{path}, line {number}: not JSON ({error})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}, line {number}: a row must be a JSON object")
            yield number, row


def count_rows(path: str | Path | None) -> int:
    """Count the non-blank lines of a JSONL file (0 for no file): cheap, for the checks before a run."""
    if not path:
        return 0
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def stage_rows(stage: str, path: str | Path, *, limit: int | None = None) -> list[dict]:
    """Return the rows of `path` with only the columns `stage` trains on, checking each is there."""
    return list(_rows(stage, path, limit=limit))


def prompt_rows(path: str | Path, *, limit: int | None = None) -> list[dict]:
    """Return the prompts of a prompts file (held-out prompts of the RL stages, whichever is registered)."""
    return list(_rows("prompts", path, limit=limit, columns=COLUMNS["prompts"]))


def check_rows(stage: str, path: str | Path) -> None:
    """Raise DataError naming the first row `stage` cannot use; cheap enough to run before torch loads."""
    for _ in _rows(stage, path):
        pass


def _rows(stage: str, path: str | Path, *, limit: int | None = None, columns=None) -> Iterator[dict]:
    columns = columns or COLUMNS[STAGES[stage].reads]
    kept = 0
    for number, row in _numbered(path):
        if limit is not None and kept >= limit:
            break
        missing = [c for c in columns if c not in row]
        if missing:
            raise DataError(f"{path}, line {number}: no {', '.join(missing)} (the {stage} stage reads "
                            f"{', '.join(columns)})")
        for column in columns:
            value = row[column]
            if column in PLAIN and not isinstance(value, PLAIN[column]):
                raise DataError(f"{path}, line {number}: {column} must be {PLAIN_NAMES[column]}")
            if column not in PLAIN and not _is_chat(value):
                raise DataError(f"{path}, line {number}: {column} must be a list of {{role, content}} messages")
        kept += 1
        yield {c: row[c] if c in PLAIN else _plain_chat(row[c]) for c in columns}


def train_rows_problems(stage: str, path: str | Path | None) -> list[str]:
    """Return what the stage's rows_checks find wrong with its train file as a whole (both labels for KTO)."""
    checks = STAGES[stage].rows_checks
    if checks is None or not path:
        return []
    return checks(_rows(stage, path))


def _is_chat(value) -> bool:
    return isinstance(value, list) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
    )


def _plain_chat(messages: list[dict]) -> list[dict]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def texts_of(path: str | Path) -> Iterator[str]:
    """Yield the text in a file for tokenizer training: JSONL rows of text or chats, or plain text lines."""
    path = Path(path)
    if path.suffix != ".jsonl":
        with open(path, encoding="utf-8") as f:
            yield from (line for line in f if line.strip())
        return
    for row in read_jsonl(path):
        if isinstance(row.get("text"), str):
            yield row["text"]
        for key in ("messages", "prompt", "chosen", "rejected", "completion"):
            if _is_chat(row.get(key)):
                yield from (m["content"] for m in row[key])
