"""What every importer shares: line-numbered refusals, streamed readers, a buffered tree writer.

An import runs in one transaction: the first bad line refuses the whole file, naming the line
and the reason, and nothing is written. Files are read as streams and rows are written in
chunks, so memory stays flat for the line-by-line formats; OASST keeps an id map of its
messages and Cornell the lines of movie_lines.txt, as their references need.

A trusted import (ImportBatch.trusted) writes its replies accepted, as demonstrations a reviewer
passed, except the losing side of a judgement in the same file: a pair's rejected reply is no
demonstration.
"""

import hashlib
import hmac
import json
from collections import OrderedDict
from collections.abc import Iterator

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, reset_queries
from django.db.models import JSONField
from django.utils import timezone
import orjson
from psycopg.types.json import Jsonb

from annotate.models import (
    CandidateSet,
    CandidateSetKind,
    Message,
    MessageRole,
    MessageSource,
    Ranking,
    ReviewState,
    WorkItem,
)
from annotate.services.tree import text_problem

CHUNK = 2000
REMEMBERED_TURNS = 50_000
ROLES = frozenset(MessageRole.values)  # MessageRole.values builds a new list at every call


class ImportRefused(ValidationError):
    """The file is refused as a whole; `line` is 1-based (0 when it is about the whole file)."""

    def __init__(self, line: int, reason: str):
        self.line, self.reason = line, reason
        where = f"line {line}: " if line else ""
        super().__init__({"file": [f"{where}{reason}"]})


def decoded_lines(stream, *, encoding="utf-8") -> Iterator[tuple[int, str]]:
    """Yield (line number, text) from a binary stream, refusing bytes that are not `encoding`."""
    for number, raw in enumerate(stream, 1):
        if number == 1 and encoding == "utf-8" and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]  # a byte order mark
        try:
            yield number, raw.decode(encoding)
        except UnicodeDecodeError as error:
            raise ImportRefused(number, f"not {encoding} text (bad byte at column {error.start + 1})") from None


def jsonl_records(stream) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line of a JSON Lines stream."""
    for number, text in decoded_lines(stream):
        if not text.strip():
            continue
        try:
            record = orjson.loads(text)
        except orjson.JSONDecodeError:
            # The standard library's parser says what is wrong in words, and accepts what orjson does not
            # (NaN, integers beyond 64 bits); orjson is only the fast way for the lines both accept.
            try:
                record = json.loads(text)
            except json.JSONDecodeError as error:
                raise ImportRefused(number, f"not valid JSON: {error.msg} (column {error.colno})") from None
        if not isinstance(record, dict):
            raise ImportRefused(number, "each line must be a JSON object")
        yield number, record


def text_field(record: dict, line: int, *names: str) -> str:
    """Return the first of `names` present in the record, which must be a non-empty string."""
    for name in names:
        if name in record:
            value = record[name]
            if not isinstance(value, str):
                raise ImportRefused(line, f"'{name}' must be a string, not {type(value).__name__}")
            if not value.strip():
                raise ImportRefused(line, f"'{name}' is empty")
            return value
    raise ImportRefused(line, f"no {' or '.join(repr(n) for n in names)} field")


class IdPool:
    """Hand out primary keys from a table's own sequence, a chunk at a time, so rows can
    point at each other (parent, root) before they are written."""

    def __init__(self, model):
        self.table = model._meta.db_table
        self.free: list[int] = []

    def take(self) -> int:
        if not self.free:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                    [self.table, CHUNK],
                )
                self.free = [row[0] for row in cursor.fetchall()][::-1]
        return self.free.pop()


class Turn:
    """What the writer remembers of a written message: enough to attach children to it."""

    __slots__ = ("id", "root_id", "depth", "role")

    def __init__(self, id, root_id, depth, role):
        self.id, self.root_id, self.depth, self.role = id, root_id, depth, role


class TreeWriter:
    """Write messages, candidate sets and rankings in chunks, merging repeated turns.

    Two records that share a conversation prefix share its messages (keyed by parent, role and
    a digest of the text and metadata), so pairs with one prompt become one tree with sibling replies.
    """

    def __init__(self, *, project, batch, source_name: str):
        self.project, self.batch, self.source_name = project, batch, source_name
        self.message_ids, self.set_ids = IdPool(Message), IdPool(CandidateSet)
        self.messages, self.sets, self.rankings = [], [], []
        # Recent turns by (parent, role, text digest), to merge shared prefixes. Bounded, so a
        # huge file keeps memory flat; prefixes repeated far apart become separate trees.
        self.known: OrderedDict[tuple, Turn] = OrderedDict()
        self.counts = {"messages": 0, "conversations": 0, "rankings": 0}
        self.reply_state = ReviewState.ACCEPTED if batch.trusted else ReviewState.NOT_NEEDED
        self.replies = 0  # assistant messages written (not merged into one written before)

    def turn(
        self, *, parent: Turn | None, role: str, text: str, line: int, origin: dict | None = None, merge: bool = True,
        metadata: dict | None = None,
    ) -> Turn:
        """Write one message under `parent` (or find the same one written earlier); `metadata` is what the
        source says about it beyond its text (Message.metadata)."""
        if role not in ROLES:
            raise ImportRefused(line, f"unknown role {role!r}")
        if parent is None and role != MessageRole.USER:
            raise ImportRefused(line, "a conversation must start with a user message")
        if parent is not None and parent.role == role:
            raise ImportRefused(line, f"two {role} messages in a row; turns must alternate")
        problem = text_problem(text, what=f"{role} message")
        if problem:
            raise ImportRefused(line, problem)
        digest = hashlib.blake2b(text.encode(), digest_size=16)
        if metadata:
            # Two turns that differ only in what the source says about them (another system prompt,
            # another movie) stay two.
            digest.update(orjson.dumps(metadata, option=orjson.OPT_SORT_KEYS))
        key = (parent.id if parent else None, role, digest.digest())
        found = self.known.get(key) if merge else None
        if found is not None:
            self.known.move_to_end(key)
            return found
        message_id = self.message_ids.take()
        root_id = parent.root_id if parent else message_id
        depth = parent.depth + 1 if parent else 0
        self.messages.append(
            {
                "id": message_id,
                "project_id": self.project.id,
                "parent_id": parent.id if parent else None,
                "root_id": root_id,
                "depth": depth,
                "role": role,
                "text": text,
                "source": MessageSource.IMPORT,
                "origin": json_text({"import": self.batch.id, "line": line, **(origin or {})}),
                "metadata": json_text(metadata) if metadata else "{}",
                "review_state": self.reply_state if role == MessageRole.ASSISTANT else ReviewState.NOT_NEEDED,
            }
        )
        self.counts["messages"] += 1
        self.replies += role == MessageRole.ASSISTANT
        if parent is None:
            self.counts["conversations"] += 1
        turn = Turn(message_id, root_id, depth, role)
        if merge:
            self.known[key] = turn
            if len(self.known) > REMEMBERED_TURNS:
                self.known.popitem(last=False)
        if len(self.messages) >= CHUNK:
            self.flush()
        return turn

    def path(self, turns: list[tuple], *, line: int, parent: Turn | None = None) -> Turn | None:
        """Write a conversation given as (role, text) or (role, text, metadata) turns; return its last turn."""
        for role, text, *metadata in turns:
            parent = self.turn(parent=parent, role=role, text=text, line=line, metadata=metadata[0] if metadata else None)
        return parent

    def ranking(self, *, parent: Turn, tiers: list[list[Turn]], annotator: str, line: int, kind=CandidateSetKind.COMPARE):
        """Record an imported judgement of replies under `parent`, best tier first."""
        replies = [turn.id for tier in tiers for turn in tier]
        if len(set(replies)) != len(replies):
            raise ImportRefused(line, "the same reply appears twice in one judgement")
        set_id = self.set_ids.take()
        self.sets.append(
            {
                "id": set_id,
                "project_id": self.project.id,
                "parent_id": parent.id,
                "kind": kind,
                "message_ids": replies,
                "origin": json_text({"import": self.batch.id, "line": line}),
            }
        )
        self.rankings.append(
            {
                "candidate_set_id": set_id,
                "external_annotator": annotator,
                "origin": json_text({"import": self.batch.id, "line": line, "source": self.source_name}),
                "tiers": json_text([[turn.id for turn in tier] for tier in tiers]),
            }
        )
        self.counts["rankings"] += 1
        if len(self.sets) >= CHUNK:
            self.flush()

    def flush(self):
        copy_rows(Message, self.messages)
        copy_rows(CandidateSet, self.sets)
        copy_rows(Ranking, self.rankings)
        self.messages, self.sets, self.rankings = [], [], []
        # With DEBUG on, Django keeps the last 9,000 statements, and these are large inserts:
        # without this a big import's memory would grow with the file.
        reset_queries()

    def finish(self) -> dict:
        """Write what is buffered; prompts that arrived with no reply wait for demonstrations."""
        self.flush()
        needed = self.project.settings.demonstrations_per_prompt
        given = {"created_at": "now()", "updated_at": "now()", "project_id": "m.project_id", "kind": "'demonstration'",
                 "message_id": "m.id", "needed": "%(needed)s", "done": "0", "open_slots": "%(needed)s"}
        columns, values, params = column_defaults(WorkItem, given)
        with connection.cursor() as cursor:
            cursor.execute(
                WORK_FOR_UNANSWERED.format(columns=columns, values=values),
                {"project": self.project.id, "batch": json.dumps({"import": self.batch.id}), "needed": needed, **params},
            )
            self.counts["waiting_for_demonstrations"] = cursor.rowcount
            if self.batch.trusted:
                cursor.execute(UNTRUST_LOSERS, {"project": self.project.id, "batch": json.dumps({"import": self.batch.id})})
                self.counts["demonstrations"] = self.replies - cursor.rowcount
        return self.counts


# Imported user messages that ended their conversation wait for demonstrations.
WORK_FOR_UNANSWERED = """
INSERT INTO annotate_workitem ({columns})
SELECT {values}
FROM annotate_message m
WHERE m.project_id = %(project)s AND m.origin @> %(batch)s::jsonb AND m.role = 'user'
  AND NOT EXISTS (SELECT 1 FROM annotate_message c WHERE c.parent_id = m.id)
"""


# A trusted import's replies that an imported judgement in the same file placed below another, or
# called all bad, are not demonstrations: the rejected side of a pair stays a plain reply.
UNTRUST_LOSERS = """
UPDATE annotate_message m SET review_state = 'not_needed'
FROM (
    SELECT DISTINCT reply
    FROM annotate_ranking r
    JOIN annotate_candidateset cs ON cs.id = r.candidate_set_id,
    LATERAL unnest(cs.message_ids) AS reply
    WHERE cs.project_id = %(project)s AND r.origin @> %(batch)s::jsonb
      AND NOT COALESCE(r.tiers -> 0, '[]'::jsonb) @> to_jsonb(reply)
) losers
WHERE m.id = losers.reply AND m.origin @> %(batch)s::jsonb AND m.review_state = 'accepted'
"""


def column_defaults(model, given: dict[str, str]) -> tuple[str, str, dict]:
    """Return (columns, SQL values, parameters) for an INSERT that gives the `given` columns their SQL and
    every other column its model field's default, as copy_rows does: a field added to the model later
    (with a Python default only) then needs no change here."""
    columns, values, params = [], [], {}
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(f'"{field.column}"')
        if field.attname in given:
            values.append(given[field.attname])
        else:
            value = field.get_default()
            params[f"default_{field.attname}"] = Jsonb(value) if isinstance(field, JSONField) else value
            values.append(f"%(default_{field.attname})s")
    return ", ".join(columns), ", ".join(values), params


def json_text(value) -> str:
    """Return a value as JSON text, for a jsonb column written by copy_rows: COPY's text format takes it as it
    is, which costs a fraction of psycopg's Jsonb adapter (the standard library's json) for a million rows."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # an integer beyond 64 bits, which orjson does not write
        return json.dumps(value)


def copy_rows(model, rows: list[dict]) -> None:
    """Write rows (dicts of column values) with COPY, several times faster than INSERTs.

    A column a row leaves out gets the model field's default, so every row of a model must
    name the same columns; created_at and updated_at are now; an unnamed id comes from the
    table's identity.
    """
    if not rows:
        return
    now = timezone.now()
    given = list(rows[0])
    defaults = {}
    for field in model._meta.concrete_fields:
        if field.attname in given or field.primary_key:
            continue
        if field.attname in ("created_at", "updated_at"):
            defaults[field.attname] = now
        else:  # the field's default, or what Django would store for an unset field ("" or NULL)
            value = field.get_default()
            defaults[field.attname] = Jsonb(value) if isinstance(field, JSONField) else value
    column_of = {field.attname: field.column for field in model._meta.concrete_fields}
    columns = ", ".join(f'"{column_of[name]}"' for name in given + list(defaults))
    fixed = list(defaults.values())
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f'COPY "{model._meta.db_table}" ({columns}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row([*row.values(), *fixed])


def source_user_pseudonym(source: str, user: str) -> str:
    """Return the one stable pseudonymous identity of a source user (the real id never leaves the import).

    Keyed with PSEUDONYM_KEY, so the source's public user ids cannot be turned into it; our own annotators'
    export pseudonyms are keyed alike (training.exporters.rows.annotator_pseudonym)."""
    # The key is applied to the unkeyed digest these pseudonyms once were, since that digest is all the
    # database held of them: migration 0005 keyed what was stored the same way, so one author imported
    # before and after it keeps one identity.
    return keyed_source_pseudonym(source, hashlib.blake2b(user.encode(), digest_size=8).hexdigest())


def keyed_source_pseudonym(source: str, digest: str) -> str:
    """Return the keyed pseudonym of a source user given the unkeyed digest of their id."""
    mac = hmac.new(settings.PSEUDONYM_KEY.encode(), f"source:{source}:{digest}".encode(), hashlib.sha256)
    return f"{source}:{mac.hexdigest()[:16]}"
