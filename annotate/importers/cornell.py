"""The Cornell Movie-Dialogs corpus: `movie_lines.txt` and `movie_conversations.txt`, fields
split by " +++$+++ ", latin-1 text, given as the corpus zip (the two files anywhere inside).

Each conversation becomes a chat: its first speaker takes the user's turns, the other the
assistant's; consecutive lines of one speaker are joined. Each turn keeps the corpus' ids as its
metadata: the movie, the speaking character's id and name, and the line ids it joins.

Each conversation is also a pretraining document (its lines, one a line, as the `text` format
would hold them), so a base model can be built from scratch on the dialogues themselves: a
corpus to a chat model needs no other file.
"""

import ast
import io
import sys
import zipfile

from django.db import reset_queries

from annotate.importers.base import CHUNK, ImportRefused, copy_rows, decoded_lines
from annotate.models import CorpusText, MessageRole

SEPARATOR = " +++$+++ "
LINES, CONVERSATIONS = "movie_lines.txt", "movie_conversations.txt"


def _member(archive: zipfile.ZipFile, name: str) -> str:
    for member in archive.namelist():
        if member.rsplit("/", 1)[-1] == name:
            return member
    raise ImportRefused(0, f"the zip has no {name}")


def read_zip(stream, writer) -> None:
    try:
        archive = zipfile.ZipFile(stream)
    except zipfile.BadZipFile:
        raise ImportRefused(0, f"not a zip file; give the corpus zip with {LINES} and {CONVERSATIONS}") from None
    with archive:
        lines = {}
        with archive.open(_member(archive, LINES)) as handle:
            for number, text in decoded_lines(io.BufferedReader(handle), encoding="latin-1"):
                fields = text.rstrip("\r\n").split(SEPARATOR)
                if len(fields) != 5:
                    raise ImportRefused(number, f"{LINES}: expected 5 fields split by '+++$+++', found {len(fields)}")
                # Interned: a character speaks hundreds of the corpus' 300,000 lines.
                line_id, character, name = fields[0].strip(), sys.intern(fields[1].strip()), sys.intern(fields[3].strip())
                lines[line_id] = (character, name, fields[4].strip())
        documents = []
        with archive.open(_member(archive, CONVERSATIONS)) as handle:
            for number, text in decoded_lines(io.BufferedReader(handle), encoding="latin-1"):
                if not text.strip():
                    continue
                turns = _turns(text, number, lines)
                writer.path(turns, line=number)
                documents.append({"project_id": writer.project.id, "batch_id": writer.batch.id,
                                  "text": "\n".join(words for _, words, _ in turns)})
                writer.counts["documents"] = writer.counts.get("documents", 0) + 1
                if len(documents) >= CHUNK:
                    copy_rows(CorpusText, documents)
                    documents.clear()
                    reset_queries()  # see TreeWriter.flush
        copy_rows(CorpusText, documents)


def _turns(text: str, number: int, lines: dict) -> list[tuple[str, str, dict]]:
    fields = text.rstrip("\r\n").split(SEPARATOR)
    if len(fields) != 4:
        raise ImportRefused(number, f"{CONVERSATIONS}: expected 4 fields split by '+++$+++', found {len(fields)}")
    try:
        line_ids = ast.literal_eval(fields[3].strip())
    except (ValueError, SyntaxError):
        raise ImportRefused(number, f"{CONVERSATIONS}: the line list {fields[3].strip()[:40]!r} is not a list") from None
    if not isinstance(line_ids, list) or not line_ids:
        raise ImportRefused(number, f"{CONVERSATIONS}: the line list is empty")
    movie = fields[2].strip()
    turns, speakers = [], []
    for line_id in line_ids:
        if line_id not in lines:
            raise ImportRefused(number, f"{CONVERSATIONS}: line {line_id} is not in {LINES}")
        character, name, words = lines[line_id]
        if not words:
            continue
        if speakers and speakers[-1] == character:
            role, joined, metadata = turns[-1]
            metadata["line_ids"].append(line_id)
            turns[-1] = (role, f"{joined}\n{words}", metadata)
            continue
        speakers.append(character)
        metadata = {"movie_id": movie, "character_id": character, "speaker": name, "line_ids": [line_id]}
        turns.append((MessageRole.USER if len(turns) % 2 == 0 else MessageRole.ASSISTANT, words, metadata))
    if not turns:
        raise ImportRefused(number, f"{CONVERSATIONS}: every line of this conversation is empty")
    return turns
