"""Rows of each snapshot kind, in TRL's formats, streamed one conversation tree at a time.

Messages are read in root order through a server-side cursor and grouped per tree, so memory
holds one tree (and the rankings about it) at a time, however large the project. A message
that is excluded (flagged or rejected, not cleared) takes everything under it out of every
export. Every row of every kind carries provenance: pseudonymous annotator ids, where each message
came from (an annotator; an import, with its batch, file and line; or a model, with its version),
where each judgement came from (the same, for an imported ranking), and times.

The held-out split is decided by content (Splits): two copies of one prompt, or of one document,
always share a split, and a root keeps the split it was first exported in.
"""

import functools
import hashlib
import hmac
from collections import defaultdict, namedtuple
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime

import orjson
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Avg
from django.utils.dateparse import parse_datetime

from annotate import consensus
from annotate.agreement import ranked_pairs, tier_pairs
from annotate.importers.oasst import account_pseudonym
from annotate.models import ImportBatch, Label, Message, MessageRole, MessageSource, ReviewState, Split
from annotate.screen.redact import Placeholders
from annotate.selectors.screening import live_redactions

CHUNK = 5000
HELDOUT_PERCENT = 10
# Plain strings, not the enum's members: split names go into file names and the dataset card's YAML.
TRAIN, TEST = Split.TRAIN.value, Split.TEST.value
MESSAGE_FIELDS = ("id", "parent_id", "root_id", "role", "text", "source", "author_id", "review_state",
                  "excluded", "created_at", "model_version", "model_name", "source_user", "split", "split_key",
                  "import_id", "line")


@dataclass(frozen=True)
class Filters:
    """What a snapshot keeps, beyond the rule that excluded content never leaves: a time range
    (of the reply for SFT, of the judgement for preference and unpaired, of the prompt for
    prompts), one annotator (author of the reply, or of the ranking, label or review), one model
    version (of the reply, or of either reply of a pair), and, for SFT, a minimum mean label
    quality of the reply."""

    since: datetime | None = None
    until: datetime | None = None
    annotator_id: int | None = None
    model_version: str | None = None
    min_quality: float | None = None

    APPLIES = {
        "sft": {"since", "until", "annotator_id", "model_version", "min_quality"},
        "sft_completion": {"since", "until", "annotator_id", "model_version", "min_quality"},
        "preference": {"since", "until", "annotator_id", "model_version"},
        "implicit_pairs": {"since", "until", "annotator_id", "model_version"},
        "unpaired": {"since", "until", "annotator_id", "model_version"},
        "prompts": {"since", "until"},
        "pretraining": set(),
        "flags": set(),
    }

    @classmethod
    def parse(cls, raw: dict | None, *, kind: str) -> "Filters":
        raw = {key: value for key, value in (raw or {}).items() if value not in (None, "")}
        unknown = set(raw) - {field.name for field in fields(cls)}
        if unknown:
            raise ValidationError({"filters": f"unknown filters {sorted(unknown)}"})
        wrong = set(raw) - cls.APPLIES[kind]
        if wrong:
            raise ValidationError({"filters": f"{sorted(wrong)} do not apply to {kind} snapshots"})
        values = {}
        for name in ("since", "until"):
            if name in raw:
                when = raw[name] if isinstance(raw[name], datetime) else parse_datetime(str(raw[name]))
                if when is None:
                    raise ValidationError({name: f"{raw[name]!r} is not a date and time (ISO 8601)"})
                values[name] = when if when.tzinfo else when.replace(tzinfo=UTC)
        try:
            if "annotator_id" in raw:
                values["annotator_id"] = int(raw["annotator_id"])
            if "min_quality" in raw:
                values["min_quality"] = float(raw["min_quality"])
        except (TypeError, ValueError):
            raise ValidationError({"filters": "annotator_id is a user id and min_quality a number"}) from None
        if "model_version" in raw:
            values["model_version"] = str(raw["model_version"])
        return cls(**values)

    def as_dict(self) -> dict:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self).items() if v is not None}

    def in_time(self, when) -> bool:
        when = datetime.fromisoformat(when) if isinstance(when, str) else when
        return (self.since is None or when >= self.since) and (self.until is None or when < self.until)


def content_digest(text: str) -> bytes:
    """Return the digest of what decides a text's split: the text casefolded, its whitespace collapsed."""
    return hashlib.blake2b(" ".join(text.casefold().split()).encode(), digest_size=16).digest()


def content_split(project_id: int, digest: bytes) -> str:
    """Return the split the content rule gives a text of this digest: a seeded hash, HELDOUT_PERCENT held out."""
    seeded = hashlib.sha256(f"heldout:{project_id}:".encode() + digest).digest()
    return TEST if int.from_bytes(seeded[:8], "big") % 100 < HELDOUT_PERCENT else TRAIN


class Splits:
    """The held-out split of a project's trees (by their root prompts) or documents, fixed once decided.

    A root's split is its content's: every root whose normalised text (content_digest) is the same shares
    one split, so no prompt and no document is in both splits of any export. The content rule (a seeded
    hash of the normalised text) decides a text none of whose copies was exported yet. Every root an export
    reaches is remembered with its split (`remember`, then `save`), and a text with remembered copies keeps
    theirs, so a prompt held out once stays held out in every later snapshot, whatever rule decided it then.
    Copies remembered in both splits (from before splits went by content) are held out: held out once is
    held out for good, and a held-out text must not be trained on.

    A remembered row carries the digest it was decided by (split_key), so reading what was remembered costs
    16 bytes a row, and a remembered row's text is never normalised again. Memory holds only the digests
    whose remembered split differs from the content rule, and the held-out ones', not every root.
    """

    def __init__(self, project_id: int, *, documents: bool = False):
        self.project_id = project_id
        self.table = "annotate_corpustext" if documents else "annotate_message"
        self.pending: list[tuple[int, str, bytes]] = []
        trained, tested = set(), set()  # digests of held-out content remembered in train, and in test
        self.overrides: dict[bytes, str] = {}
        with connection.chunked_cursor() as cursor:
            cursor.execute(
                # The text only where a split was remembered without its key (set by hand, say).
                f"SELECT split_key, split, CASE WHEN split_key IS NULL THEN text END FROM {self.table}"
                " WHERE project_id = %s AND split <> ''"
                + ("" if documents else " AND parent_id IS NULL"),
                [project_id],
            )
            while batch := cursor.fetchmany(CHUNK):
                for key, split, text in batch:
                    digest = bytes(key) if key is not None else content_digest(text)
                    if content_split(project_id, digest) == TRAIN:
                        if split == TEST:
                            self.overrides[digest] = TEST
                    else:
                        (tested if split == TEST else trained).add(digest)
        for digest in trained - tested:
            self.overrides[digest] = TRAIN

    def of(self, text: str, key: bytes | None = None) -> tuple[str, bytes]:
        """Return the split of a text, and its digest (`key` when the row remembers it)."""
        digest = bytes(key) if key else content_digest(text)
        return self.overrides.get(digest) or content_split(self.project_id, digest), digest

    def remember(self, id: int, split: str, digest: bytes, remembered: str) -> None:
        """Note that the root (or document) `id`, remembered in `remembered` ("" for none), went to `split`."""
        if not remembered:
            self.pending.append((id, split, digest))
            if len(self.pending) >= CHUNK:
                self.save()

    def save(self) -> None:
        """Write the splits noted since the last save. A root remembered already keeps what it has: a text
        whose copies are in both splits is held out by the rule above, not by rewriting what was remembered."""
        if self.pending:
            ids, splits, keys = zip(*self.pending)
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {self.table} t SET split = s.split, split_key = s.key"
                    " FROM unnest(%s::bigint[], %s::text[], %s::bytea[]) AS s(id, split, key)"
                    " WHERE t.id = s.id AND t.split = ''",
                    [list(ids), list(splits), list(keys)],
                )
        self.pending = []


def is_heldout(project_id: int, root_id: int) -> bool:
    """Whether the project's exports hold out the tree of this root prompt (for tests and scripts that check)."""
    text = Message.objects.filter(project_id=project_id, id=root_id).values_list("text", flat=True).get()
    return Splits(project_id).of(text)[0] == TEST


def annotator_pseudonym(project_id: int, user_id: int | None) -> str | None:
    """A stable pseudonymous annotator id: the same person gets the same id in every snapshot
    of the project, and the id cannot be turned back into the account without PSEUDONYM_KEY, a
    secret of its own (rotating SECRET_KEY renames nobody)."""
    if user_id is None:
        return None
    mac = hmac.new(settings.PSEUDONYM_KEY.encode(), f"{project_id}:{user_id}".encode(), hashlib.sha256)
    return "a-" + mac.hexdigest()[:12]


class Redactions:
    """The content screen's live findings that redact, read once per export, and what the export redacted.

    Exports apply the stored findings and never screen a row again: with no findings this costs one dict lookup
    per message. Each exported row (one conversation) numbers its placeholders with a Placeholders of its own,
    so `{{EMAIL_1}}` is the same address throughout a row and rows number independently. `counts` is, per kind,
    the spans replaced in the distinct messages (or documents) the export wrote, not per row they appear in."""

    def __init__(self, project):
        self.by_message, self.by_corpus = live_redactions(project=project)
        self.counts: dict[str, int] = {}
        self.seen: set[tuple[str, int]] = set()

    def text(self, kind: str, id: int, text: str, spans, placeholders: Placeholders | None) -> str:
        if ("m" if kind == "message" else "c", id) not in self.seen:
            self.seen.add(("m" if kind == "message" else "c", id))
            for _, _, found in spans:
                self.counts[found] = self.counts.get(found, 0) + 1
        return (placeholders or Placeholders()).redact(text, spans)

    def of_message(self, message, placeholders: Placeholders | None) -> str:
        """The message's text as this export writes it: its live redacting spans replaced."""
        spans = self.by_message.get(message.id)
        return message.text if spans is None else self.text("message", message.id, message.text, spans, placeholders)


NO_REDACTIONS = None  # a Tree made outside an export (is_heldout, scripts) redacts nothing


# One message as the exporters read it: a tuple (cheaper than a dict for a million rows).
MessageRow = namedtuple("MessageRow", MESSAGE_FIELDS)


class Tree:
    def __init__(self, project_id: int, rows: list[tuple], pseudonyms: dict, files: dict[int, str],
                 redactions: Redactions | None = NO_REDACTIONS):
        self.project_id = project_id
        self.redactions = redactions
        self.messages = {row[0]: MessageRow._make(row) for row in rows}
        self.root_id = rows[0][2]
        self.root = self.messages[self.root_id]
        self.pseudonyms = pseudonyms
        self.files = files  # import batch id -> the file it read

    def path(self, message_id: int) -> list[MessageRow] | None:
        """Root-to-message path, or None when any message on it is excluded or missing."""
        path, node = [], self.messages.get(message_id)
        while node is not None:
            if node.excluded:
                return None
            path.append(node)
            node = self.messages.get(node.parent_id) if node.parent_id else None
        if not path or path[-1].parent_id is not None:
            return None
        return path[::-1]

    def annotator_of(self, message: MessageRow) -> str | None:
        if message.source != MessageSource.ANNOTATOR:
            return None
        return self.pseudonym(message.author_id)

    def pseudonym(self, user_id: int | None) -> str | None:
        # One HMAC per person per export, not one per row. A stand-in account (a person loaded from a project
        # dump or a tree export) carries the pseudonym they had, so they keep it in this project too.
        if user_id not in self.pseudonyms:
            user = get_user_model().objects.filter(id=user_id).first() if user_id is not None else None
            self.pseudonyms[user_id] = (user and account_pseudonym(user)) or annotator_pseudonym(self.project_id, user_id)
        return self.pseudonyms[user_id]

    def origin_of(self, message: MessageRow) -> dict:
        """Where a message came from, without naming anyone: its annotator's pseudonym, the import batch, file
        and line it was read from, or the model version that wrote it. The same keys in every row, so the
        column has one type for `datasets`."""
        # Empty rather than null where a field does not apply (parquet.empty_filled says why), written here for
        # the common row so that the files' writer has nothing to fill.
        return {
            "message_id": message.id,
            "source": message.source,
            "at": message.created_at,
            "annotator": self.annotator_of(message) or "",
            "model_version": message.model_version or "",
            "model_name": message.model_name or "",
            "source_user": message.source_user or "",
            "import_id": message.import_id or 0,
            "file": self.files.get(message.import_id, ""),
            "line": message.line or 0,
        }


def turns(path: list[MessageRow], tree: "Tree | None" = None, placeholders: Placeholders | None = None) -> list[dict]:
    """The path as chat turns; with `tree`, each text as its export writes it (live redactions replaced, numbered
    by `placeholders`, the row's own)."""
    redactions = tree.redactions if tree is not None else None
    if not (redactions and redactions.by_message):
        return [{"role": message.role, "content": message.text} for message in path]
    return [{"role": message.role, "content": redactions.of_message(message, placeholders)} for message in path]


def placeholders_for(tree: "Tree") -> Placeholders | None:
    """A fresh numbering for one exported row, or None when the project has nothing to redact (no cost)."""
    return Placeholders() if tree.redactions is not None and tree.redactions.by_message else None


# Plain SQL through a server-side cursor: times come as ISO text and the origin's few exported
# keys as text, so Python decodes no JSON (the ORM's converters cost more than the read).
TREES = """
SELECT id, parent_id, root_id, role, text, source, author_id, review_state, excluded,
       to_json(created_at) #>> '{}', origin ->> 'model_version', origin ->> 'model_name', origin ->> 'source_user',
       split, split_key, (origin ->> 'import')::bigint, (origin ->> 'line')::int
FROM annotate_message WHERE project_id = %s ORDER BY root_id, depth, id
"""


def import_files(project) -> dict[int, str]:
    """The file each of the project's import batches read, by batch id (a few rows, read once per export)."""
    return {batch_id: filename or None for batch_id, filename in
            ImportBatch.objects.filter(project=project).values_list("id", "filename")}


def trees(project, redactions: Redactions | None = None) -> Iterator[Tree]:
    current, pseudonyms, files = [], {}, import_files(project)
    redactions = redactions if redactions is not None else Redactions(project)
    with connection.chunked_cursor() as cursor:
        cursor.execute(TREES, [project.id])
        while batch := cursor.fetchmany(CHUNK):
            for row in batch:
                if current and row[2] != current[0][2]:
                    yield Tree(project.id, current, pseudonyms, files, redactions)
                    current = []
                current.append(row)
    if current:
        yield Tree(project.id, current, pseudonyms, files, redactions)


def split_trees(project, redactions: Redactions | None = None) -> Iterator[tuple[str, Tree]]:
    """(split, tree) for each tree of the project, remembering the split of every root it reaches."""
    splits = Splits(project.id)
    for tree in trees(project, redactions):
        split, digest = splits.of(tree.root.text, tree.root.split_key)
        splits.remember(tree.root_id, split, digest, tree.root.split)
        yield split, tree
    splits.save()


def sft_rows(project, *, demonstrations: str = "accepted", filters: Filters = Filters(),
             redactions: Redactions | None = None) -> Iterator[tuple[str, dict]]:
    """(split, row) for each whole conversation that ends in a reply worth imitating:
    accepted demonstrations by default (a reviewer's, or a trusted import's), or every non-excluded
    reply (`all`) but the losing side of an imported judgement: a pair's rejected reply is no
    demonstration. A system message an import kept (Message.metadata) is put back before its turn;
    the provenance's `turns` are the tree's turns only."""
    quality = {}
    if filters.min_quality is not None:
        quality = dict(
            Label.objects.filter(message__project=project, quality__isnull=False)
            .exclude(verdict="overruled").exclude(task__item__gold=True)  # as kept_judgement
            .values_list("message_id").annotate(mean=Avg("quality"))
        )
    beaten = _ByRoot(_sft_rows_stream(IMPORTED_LOSERS, project)) if demonstrations == "all" else None
    systems = _ByRoot(_sft_rows_stream(SYSTEM_MESSAGES, project))
    for split, tree in split_trees(project, redactions):
        losers = {reply for _, reply in beaten.take(tree.root_id)} if beaten else ()
        system = {message_id: text for _, message_id, text in systems.take(tree.root_id)}
        for message in tree.messages.values():
            if message.role != MessageRole.ASSISTANT or message.id in losers:
                continue
            if demonstrations == "accepted" and message.review_state != ReviewState.ACCEPTED:
                continue
            if not _reply_kept(tree, message, filters, quality):
                continue
            path = tree.path(message.id)
            if path is None:
                continue
            messages = turns(path, tree, placeholders_for(tree))
            if system:
                for index in reversed([i for i, turn in enumerate(path) if turn.id in system]):
                    messages.insert(index, {"role": "system", "content": system[path[index].id]})
            yield split, {"messages": messages, "provenance": _conversation_provenance(tree, path)}


# The replies an imported judgement placed below another or called all bad (the rejected side of a pair),
# and the system messages imports kept, in the trees' order (as RANKINGS), for sft_rows.
IMPORTED_LOSERS = """
WITH kept AS MATERIALIZED (
    SELECT DISTINCT parent.root_id, reply
    FROM annotate_ranking r
    JOIN annotate_candidateset cs ON cs.id = r.candidate_set_id
    JOIN annotate_message parent ON parent.id = cs.parent_id,
    LATERAL unnest(cs.message_ids) AS reply
    WHERE cs.project_id = %s AND r.annotator_id IS NULL
      AND NOT COALESCE(r.tiers -> 0, '[]'::jsonb) @> to_jsonb(reply)
)
SELECT * FROM kept ORDER BY root_id, reply
"""
SYSTEM_MESSAGES = """
SELECT root_id, id, metadata ->> 'system' FROM annotate_message
WHERE project_id = %s AND metadata ? 'system' ORDER BY root_id, id
"""


def _sft_rows_stream(sql: str, project) -> Iterator[tuple]:
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, [project.id])
        while batch := cursor.fetchmany(CHUNK):
            yield from batch


def _conversation_provenance(tree: Tree, path: list[MessageRow]) -> dict:
    """The provenance of a conversation ending in a reply: the reply's origin, and every turn's, in order (an
    earlier reply may be a model's or an import's, and the prompt an annotator's)."""
    return {"root_id": tree.root_id, "reply": tree.origin_of(path[-1]), "turns": [tree.origin_of(m) for m in path]}


def sft_completion_rows(project, *, demonstrations: str = "accepted", filters: Filters = Filters(),
                        redactions: Redactions | None = None) -> Iterator[tuple[str, dict]]:
    """(split, row) for the same conversations as sft_rows, in TRL's prompt-completion form: the turns
    before the reply as `prompt`, the reply as `completion`. SFTTrainer then takes the loss on the
    completion only (its completion_only_loss), with no chat template generation markers needed."""
    for split, row in sft_rows(project, demonstrations=demonstrations, filters=filters, redactions=redactions):
        messages = row["messages"]
        yield split, {"prompt": messages[:-1], "completion": messages[-1:], "provenance": row["provenance"]}


def _reply_kept(tree, message, filters: Filters, quality: dict) -> bool:
    if not filters.in_time(message.created_at):
        return False
    if filters.annotator_id is not None and message.author_id != filters.annotator_id:
        return False
    if filters.model_version is not None and message.model_version != filters.model_version:
        return False
    return filters.min_quality is None or quality.get(message.id, 0) >= filters.min_quality


def prompt_rows(project, *, filters: Filters = Filters(),
                redactions: Redactions | None = None) -> Iterator[tuple[str, dict]]:
    """(split, row) for every user turn, with the conversation before it, for PPO/RLOO."""
    for split, tree in split_trees(project, redactions):
        for message in tree.messages.values():
            if message.role != MessageRole.USER or not filters.in_time(message.created_at):
                continue
            path = tree.path(message.id)
            if path is not None:
                yield split, {"prompt": turns(path, tree, placeholders_for(tree)), "provenance": {
                    "root_id": tree.root_id, "message_id": message.id, "turns": [tree.origin_of(m) for m in path],
                }}


# Plain SQL, as TREES: the time as ISO text. An import records no line per document, only its batch.
DOCUMENTS = """
SELECT id, text, split, split_key, batch_id, to_json(created_at) #>> '{}'
FROM annotate_corpustext WHERE project_id = %s ORDER BY id
"""


def pretraining_rows(project, *, redactions: Redactions | None = None) -> Iterator[tuple[str, dict]]:
    """(split, row) for every document, its split decided by its normalised text (Splits), with the
    import batch and file it came from. TRL reads `text` and ignores the provenance column."""
    splits, files = Splits(project.id, documents=True), import_files(project)
    redactions = redactions if redactions is not None else Redactions(project)
    redacted = redactions.by_corpus
    with connection.chunked_cursor() as cursor:
        cursor.execute(DOCUMENTS, [project.id])
        while batch := cursor.fetchmany(CHUNK):
            for document_id, text, remembered, key, batch_id, at in batch:
                split, digest = splits.of(text, key)
                splits.remember(document_id, split, digest, remembered)
                if redacted and (spans := redacted.get(document_id)):
                    text = redactions.text("corpus", document_id, text, spans, None)  # a document is its own row
                yield split, {"text": text, "provenance": {
                    "document_id": document_id, "import_id": batch_id, "file": files.get(batch_id, ""), "at": at,
                }}
    splits.save()


# The pairs' rankings, in the trees' order, by plain SQL (as TREES): the ORM's converters cost more
# than the read. The time comes as UTC text, because Django's timestamptz loader parses in Python
# (about 10 us a value) and datetime.isoformat() costs as much again; `_isoformat` finishes it.
# MATERIALIZED because a cursor is planned for its first tenth of rows (cursor_tuple_fraction),
# which picks nested loops over every message in the database in root order; a CTE is planned
# for all its rows (hash joins, then one sort): half the time for a million pairs.
# A judgement made on a gold item once it was gold (as annotate.selectors.gold scores it): it measured the
# annotator against a known answer and is left out of every export, as it did nothing to the data either.
def not_gold(alias: str) -> str:
    return (f"NOT EXISTS (SELECT 1 FROM annotate_task gt JOIN annotate_goldanswer ga ON ga.item_id = gt.item_id "
            f"WHERE gt.id = {alias}.task_id AND gt.created_at >= ga.created_at)")


# A ranking or label a reviewer overruled (annotate.services.corrections) is left out the same way.
def kept_judgement(alias: str) -> str:
    return f"{alias}.verdict <> 'overruled' AND {not_gold(alias)}"


RANKINGS = """
WITH kept AS MATERIALIZED (
    SELECT parent.root_id, cs.id AS set_id, cs.parent_id, cs.message_ids, r.id, r.annotator_id,
           r.external_annotator, r.tiers, r.all_bad, r.guideline_version,
           to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS at,
           (r.origin ->> 'import')::bigint AS import_id, (r.origin ->> 'line')::int AS line
    FROM annotate_ranking r
    JOIN annotate_candidateset cs ON cs.id = r.candidate_set_id
    JOIN annotate_message parent ON parent.id = cs.parent_id
    WHERE cs.project_id = %s AND """ + kept_judgement("r") + """{conditions}
)
SELECT * FROM kept ORDER BY root_id, set_id, id
"""


def rankings(project, filters: Filters) -> Iterator[tuple]:
    """(root_id, set_id, parent_id, message_ids, ranking_id, annotator_id, external_annotator,
    tiers, all_bad, guideline_version, created_at as ISO text, import batch id, line) for each
    ranking the filters keep (the last two None for a ranking made here)."""
    conditions, params = [], [project.id]
    for sql, value in (("r.created_at >= %s", filters.since), ("r.created_at < %s", filters.until),
                       ("r.annotator_id = %s", filters.annotator_id)):
        if value is not None:
            conditions.append(f" AND {sql}")
            params.append(value)
    with connection.chunked_cursor() as cursor:
        cursor.execute(RANKINGS.format(conditions="".join(conditions)), params)
        while batch := cursor.fetchmany(CHUNK):
            for *row, tiers, all_bad, guideline_version, at, import_id, line in batch:
                yield *row, orjson.loads(tiers), all_bad, guideline_version, _isoformat(at), import_id, line


def preference_rows(project, side, *, filters: Filters = Filters(), implicit: bool = False,
                    redactions: Redactions | None = None) -> Iterator[tuple[str, dict]]:
    """(split, row) for every pair implied by each ranking: tier i above tier j gives a pair
    for each reply of i and each of j; ties give none, and "all bad" gives none. Two replies
    with the same text give none either: a reward model cannot score one text above itself,
    and such pairs (several annotators writing the same answer, a model sampling the same
    reply twice) would only teach it noise.

    Each pair has a `margin`: how many tiers of its ranking lie between chosen and rejected
    (1 for neighbouring tiers). TRL's RewardTrainer, given a `margin` column, trains on
    -log sigmoid(r_chosen - r_rejected - margin) (as Llama 2's reward models were), so a pair
    the annotator set further apart must be scored further apart; DPO and the rest ignore it.

    `implicit` writes TRL's implicit-prompt form: no `prompt` column, each of `chosen` and
    `rejected` the whole conversation ending in its reply. `side` maps "rankings" and "consensus"
    to files (SplitFiles) that get, as the pairs stream by, the raw per-annotator rankings and
    each set's consensus order, unweighted and weighted by each annotator's reliability (with
    the weights, by pseudonym; annotate.consensus).
    """
    # Measured once, on first need, over the whole project (an annotator's reliability ignores the filters).
    weights = functools.cache(lambda: consensus.project_weights(project=project))
    ranked = _ByRoot(rankings(project, filters))
    for split, tree in split_trees(project, redactions):
        by_set = {}
        for ranking in ranked.take(tree.root_id):
            by_set.setdefault(ranking[1], []).append(ranking)
        for set_id, rows in by_set.items():
            yield from _pairs_of_set(tree, split, set_id, rows, side, filters.model_version, implicit, weights)


class _ByRoot:
    """Hand out the rows of a stream ordered by root id (its first column) one tree at a time, as the
    trees stream by in the same order; rows of a root with no tree are skipped."""

    def __init__(self, stream: Iterator[tuple]):
        self.stream = stream
        self.pending = next(stream, None)

    def take(self, root_id: int) -> list[tuple]:
        found = []
        while self.pending is not None and self.pending[0] <= root_id:
            if self.pending[0] == root_id:
                found.append(self.pending)
            self.pending = next(self.stream, None)
        return found


def _pairs_of_set(tree: Tree, split: str, set_id: int, rows: list[tuple], side: dict, model_version: str | None,
                  implicit: bool = False, weights=dict):
    # `weights` is called for {annotator_key: weight} (the export's cached project_weights).
    _, _, parent_id, message_ids, *_ = rows[0]
    prompt = tree.path(parent_id)
    if prompt is None:
        return
    # One numbering per candidate set: its pairs share the prompt, so a value is the same placeholder in the
    # prompt and in either reply of every pair of the set.
    placeholders = placeholders_for(tree)
    prompt = turns(prompt, tree, placeholders)
    replies = {m: tree.messages[m] for m in message_ids if m in tree.messages and not tree.messages[m].excluded}
    # Built once per set and shared by every pair the reply is in (orjson encodes them each time).
    answers = {m: turns([reply], tree, placeholders) for m, reply in replies.items()}
    if implicit:
        answers = {m: prompt + answer for m, answer in answers.items()}
    origins = {m: tree.origin_of(reply) for m, reply in replies.items()}
    ordered, weighed = [], []
    for _, _, _, _, ranking_id, annotator_id, external, tiers, all_bad, guideline_version, created_at, import_id, line \
            in rows:
        who = tree.pseudonym(annotator_id) if annotator_id else external
        # Where an imported ranking was read (None for one made here), in the side file and on every pair.
        source = {"import_id": import_id or 0, "file": tree.files.get(import_id, ""), "line": line or 0}
        guideline_version = guideline_version or 0
        side["rankings"].write(split, {
            "candidate_set_id": set_id, "ranking_id": ranking_id, "annotator": who, "imported": annotator_id is None,
            "tiers": tiers, "all_bad": all_bad, "guideline_version": guideline_version, "at": created_at, **source,
        })
        if all_bad:
            continue
        ordered.append([kept for tier in tiers if (kept := [m for m in tier if m in replies])])
        weighed.append((who, weights().get(consensus.annotator_key(annotator_id, external), consensus.PRIOR_RELIABILITY)))
        provenance = {
            "root_id": tree.root_id, "candidate_set_id": set_id, "ranking_id": ranking_id, "annotator": who,
            "imported": annotator_id is None, "guideline_version": guideline_version, "at": created_at, **source,
        }
        # The margin is how far apart the annotator set two replies, whatever else left the export.
        for better, worse, margin in tier_pairs(tiers, keep=replies):
            chosen, rejected = replies[better], replies[worse]
            if model_version is not None and model_version not in (chosen.model_version, rejected.model_version):
                continue
            if chosen.text == rejected.text:
                continue
            row = {"chosen": answers[better], "rejected": answers[worse], "margin": margin,
                   "provenance": {**provenance, "chosen": origins[better], "rejected": origins[worse]}}
            yield split, row if implicit else {"prompt": prompt, **row}
    if ordered:
        # One ranking is its own consensus; several are combined by ranked pairs.
        order = [m for tier in ordered[0] for m in tier] if len(ordered) == 1 else ranked_pairs(sorted(replies), ordered)
        weighted = order if len(ordered) == 1 else ranked_pairs(sorted(replies), ordered, [w for _, w in weighed])
        side["consensus"].write(split, {"candidate_set_id": set_id, "order": order, "rankings": len(ordered),
                                        "weighted_order": weighted,
                                        "weights": [{"annotator": who, "weight": w} for who, w in weighed]})


# A quality label (1-5) of 4 or 5 is a vote for the reply, 1 or 2 a vote against it; 3, the middle of the
# scale, says neither.
DESIRABLE_QUALITY, UNDESIRABLE_QUALITY = 4, 2
VERDICTS = (ReviewState.ACCEPTED, ReviewState.REJECTED)

# Every label (its quality, and whether it flags the message) and every review on the project's messages, in
# the trees' order (as RANKINGS). The filters are applied in Python: a flag out of the time range, or by
# another annotator than the one filtered on, still keeps a rejected reply out.
JUDGEMENTS = """
WITH kept AS MATERIALIZED (
    SELECT m.root_id, l.message_id, 'quality' AS kind, l.quality AS value, cardinality(l.flags) > 0 AS flagged,
           l.annotator_id, l.guideline_version,
           to_char(l.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS at
    FROM annotate_label l JOIN annotate_message m ON m.id = l.message_id
    WHERE m.project_id = %s AND """ + kept_judgement("l") + """
    UNION ALL
    SELECT m.root_id, r.message_id, 'review', r.accepted::int, false, r.reviewer_id, r.guideline_version,
           to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')
    FROM annotate_review r JOIN annotate_message m ON m.id = r.message_id
    WHERE m.project_id = %s AND """ + not_gold("r") + """
)
SELECT * FROM kept ORDER BY root_id, message_id, at
"""


def unpaired_rows(project, *, filters: Filters = Filters(),
                  redactions: Redactions | None = None) -> Iterator[tuple[str, dict]]:
    """(split, row) for each reply judged good or bad on its own, in TRL's unpaired preference format (KTO,
    BCO): the conversation before it as `prompt`, the reply as `completion`, `label` true for a reply to imitate.

    Each judgement is a vote for or against a reply: a reviewer's acceptance or rejection of a demonstration;
    a quality label (see DESIRABLE_QUALITY); the top tier of a ranking of two tiers or more (for) and its bottom
    tier (against); every reply of an "all bad" ranking (against). Replies with the same text under the same
    prompt are one reply with all their judgements, so a (prompt, reply) gives one row at most, settled so:
    - a review state decides (accepted: true, rejected: false): a reviewer judged the reply on its own, where a
      ranking only places it among others. One rejection among its copies is enough, as one reviewer's is in
      review_save, and an admin who clears a rejection accepts the reply;
    - any other reply takes the majority of its votes; a tie gives no row (its judges disagree).

    A rejected reply is excluded from every other export; here, as an example of what not to write, it gives a
    row labelled false, provided nobody ever flagged it (a flag may say personal data or harm, which never
    leaves) and nothing above it is excluded. Any other excluded reply is left out, as everywhere.

    The time range and annotator filters keep judgements: a review state counts through its reviews, and one
    with no review behind it (set directly, as an import of trusted replies would) at the reply's time, and only
    with no annotator filter.
    """
    ranked = _ByRoot(rankings(project, filters))
    judged = _ByRoot(_message_judgements(project))
    for split, tree in split_trees(project, redactions):
        yield from _unpaired_of_tree(tree, split, ranked.take(tree.root_id), judged.take(tree.root_id), filters)


def _message_judgements(project) -> Iterator[tuple]:
    """(root_id, message_id, kind, value, flagged, author_id, guideline_version, created_at as ISO text) for each
    label (kind "quality", value its quality or None) and review (kind "review", value 1 accepted, 0 rejected)."""
    with connection.chunked_cursor() as cursor:
        cursor.execute(JUDGEMENTS, [project.id, project.id])
        while batch := cursor.fetchmany(CHUNK):
            for *row, at in batch:
                yield *row, _isoformat(at)


def _unpaired_of_tree(tree: Tree, split: str, ranked: list[tuple], judged: list[tuple], filters: Filters):
    def judgement(kind, message_id, desirable, *, by, external=None, imported=None, at, guideline_version,
                  ranking_id=None, quality=None) -> dict:
        # The same keys in every judgement, so the column has one type for `datasets`.
        return {
            "kind": kind, "desirable": desirable, "message_id": message_id,
            "annotator": tree.pseudonym(by) if by else external,
            "imported": by is None if imported is None else imported, "at": at,
            "guideline_version": guideline_version, "ranking_id": ranking_id, "quality": quality,
        }

    votes, reviews, reviewed, flagged = defaultdict(list), defaultdict(list), set(), set()
    for _, message_id, kind, value, is_flag, by, guideline_version, at in judged:
        if is_flag:
            flagged.add(message_id)
        if kind == "review":
            reviewed.add(message_id)
        if value is None or not filters.in_time(at) or filters.annotator_id not in (None, by):
            continue
        if kind == "review":
            reviews[message_id].append(judgement("review", message_id, bool(value), by=by, at=at,
                                                 guideline_version=guideline_version))
        elif value >= DESIRABLE_QUALITY or value <= UNDESIRABLE_QUALITY:
            votes[message_id].append(judgement("quality", message_id, value >= DESIRABLE_QUALITY, by=by, at=at,
                                               guideline_version=guideline_version, quality=value))
    for _, _, _, message_ids, ranking_id, by, external, tiers, all_bad, guideline_version, at, *_ in ranked:
        said = {"by": by, "external": external, "at": at, "guideline_version": guideline_version,
                "ranking_id": ranking_id}
        if all_bad:
            for m in message_ids:
                votes[m].append(judgement("all_bad", m, False, **said))
            continue
        # As for pairs: the top and bottom among the replies still exported.
        tiers = [[m for m in tier if m in tree.messages and not tree.messages[m].excluded] for tier in tiers]
        tiers = [tier for tier in tiers if tier]
        if len(tiers) >= 2:
            for m in tiers[0]:
                votes[m].append(judgement("ranking_top", m, True, **said))
            for m in tiers[-1]:
                votes[m].append(judgement("ranking_bottom", m, False, **said))

    same_reply = {}  # (prompt message, text) -> [(message, verdict or None, judgements)]
    for message in tree.messages.values():
        if message.role != MessageRole.ASSISTANT:
            continue
        if filters.model_version is not None and message.model_version != filters.model_version:
            continue
        if message.excluded and (message.review_state != ReviewState.REJECTED or message.id in flagged):
            continue
        verdict, said = None, []
        if message.review_state in VERDICTS:
            if reviews[message.id]:
                verdict, said = message.review_state == ReviewState.ACCEPTED, reviews[message.id]
            elif message.id not in reviewed and filters.annotator_id is None and filters.in_time(message.created_at):
                verdict = message.review_state == ReviewState.ACCEPTED
                said = [judgement("review_state", message.id, verdict, by=None,
                                  imported=message.source == MessageSource.IMPORT, at=message.created_at,
                                  guideline_version=None)]
        if message.excluded and verdict is None:
            continue  # a rejected reply is exported only as its rejection, and the filters left that out
        said = said + votes.get(message.id, [])
        if said:
            same_reply.setdefault((message.parent_id, message.text), []).append((message, verdict, said))

    for (parent_id, text), copies in same_reply.items():
        prompt = tree.path(parent_id)
        if prompt is None:
            continue
        verdicts = [verdict for _, verdict, _ in copies if verdict is not None]
        said = [j for _, _, judgements in copies for j in judgements]
        if verdicts:
            label, settled_by = all(verdicts), "review"
        else:
            desirable = sum(j["desirable"] for j in said)
            if 2 * desirable == len(said):
                continue
            label, settled_by = 2 * desirable > len(said), "majority"
        placeholders = placeholders_for(tree)
        prompt = turns(prompt, tree, placeholders)
        if placeholders is not None:  # copies share the text; the first copy with findings redacts it
            redacting = next((m for m, _, _ in copies if m.id in tree.redactions.by_message), copies[0][0])
            text = tree.redactions.of_message(redacting, placeholders)
        yield split, {
            "prompt": prompt, "completion": [{"role": "assistant", "content": text}], "label": label,
            "provenance": {
                "root_id": tree.root_id, "reply": tree.origin_of(copies[0][0]),
                "message_ids": [message.id for message, _, _ in copies], "settled_by": settled_by, "judgements": said,
            },
        }


def _isoformat(utc: str) -> str:
    """What datetime.isoformat() writes for a UTC time given as 'YYYY-MM-DDTHH:MM:SS.ffffff'."""
    return (utc[:-7] if utc.endswith(".000000") else utc) + "+00:00"


def kind_rows(kind: str, project, side, *, demonstrations: str = "accepted", filters: Filters = Filters(),
              redactions: Redactions | None = None) -> Iterator[tuple[str, dict]]:
    """(split, row) of a snapshot of `kind` (a SnapshotKind value), for the export and for counting a round's rows
    before it is queued: one dispatch, so the two cannot drift. `side` takes a preference kind's side files
    (rankings, consensus: a SplitFiles each)."""
    if kind in ("sft", "sft_completion"):
        made = sft_rows if kind == "sft" else sft_completion_rows
        return made(project, demonstrations=demonstrations, filters=filters, redactions=redactions)
    if kind == "prompts":
        return prompt_rows(project, filters=filters, redactions=redactions)
    if kind == "pretraining":
        return pretraining_rows(project, redactions=redactions)
    if kind == "unpaired":
        return unpaired_rows(project, filters=filters, redactions=redactions)
    if kind == "flags":
        return flags_rows(project, redactions=redactions)
    return preference_rows(project, side, filters=filters, implicit=kind == "implicit_pairs", redactions=redactions)


# The flags that make a message harmful to the screen classifier (personal data is the detectors' work), and
# every label on the project's messages, its flags counted only while live: a label older than an admin's
# clearing of the message was overruled (as in submits.flags_apply).
HARMFUL_FLAGS = ("toxic", "spam", "off_task")
LABELS = """
SELECT l.message_id, l.flags, l.updated_at > coalesce(m.cleared_at, '-infinity') AS live
FROM annotate_label l JOIN annotate_message m ON m.id = l.message_id
WHERE m.project_id = %s AND """ + kept_judgement("l") + """
"""


def flags_rows(project, *, redactions: Redactions | None = None) -> Iterator[tuple[str, dict]]:
    """(split, row) for each message annotators labelled, as the screen classifier trains on it: its `text`
    (live redactions replaced), `label` true when a live label flags it toxic, spam or off task and false when
    its labels flag nothing, and the flags given. A message flagged only for personal data is left out (neither
    harmful nor clean). Unlike every other kind this one carries excluded messages: flagged text is what it
    is for, so it trains the screen and is not a dataset to publish."""
    labelled: dict[int, list] = {}  # message id -> [labels, flags of its live labels]
    with connection.chunked_cursor() as cursor:
        cursor.execute(LABELS, [project.id])
        while batch := cursor.fetchmany(CHUNK):
            for message_id, flags, live in batch:
                seen = labelled.setdefault(message_id, [0, set()])
                seen[0] += 1
                if live:
                    seen[1].update(flags)
    if not labelled:
        return
    for split, tree in split_trees(project, redactions):
        for message in tree.messages.values():
            seen = labelled.get(message.id)
            if seen is None:
                continue
            count, live = seen
            harmful = sorted(live.intersection(HARMFUL_FLAGS))
            if live and not harmful:
                continue  # flagged for personal data alone
            text = message.text if tree.redactions is None else tree.redactions.of_message(message, placeholders_for(tree))
            yield split, {"text": text, "label": bool(harmful), "flags": ",".join(harmful),
                          "provenance": {"root_id": tree.root_id, "role": message.role, "labels": count,
                                         "message": tree.origin_of(message)}}
