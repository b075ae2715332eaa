"""Open-Assistant data, as flat messages (one message a line) or nested trees (one tree a line).

Fields as OASST publishes them: message_id, parent_id, user_id, text, role (prompter or
assistant), rank (0 best among ranked siblings), deleted, synthetic, model_name. Deleted
messages and everything under them are left out. Siblings that carry ranks become one
imported ranking (equal ranks tied). OASST's rank merges several annotators' votes, so it is
attributed to one pseudonymous identity for the merged ranks; each message keeps its author's
pseudonym in its origin.

A message already in the project (by its OASST message_id, from an earlier import of either form) is not
written again: its replies in the file hang under it, and the counts say how many messages were new
(`messages`) and how many already there (`already_there`), so an export or a newer release of the
same trees merges with what is there instead of landing twice. A message by an author whose data was
deleted from the project (contributors.contributor_delete) is left out with everything under it, as a
deleted one is (`by_deleted_contributors`), so importing the source again does not bring it back.

The platform's own lossless tree export (training/exporters/trees.py) is this nested form with a
`platform` object on each message: a message that has one is read with its provenance, state and time
spent, and its labels, reviews and candidate sets with their rankings are written as they were
(PlatformJudgements), its authors named by the pseudonyms the file gives.
"""

import re
from collections import defaultdict

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from psycopg.types.json import Jsonb

from annotate.importers.base import IdPool, ImportRefused, Turn, copy_rows, jsonl_records, source_user_pseudonym
from annotate.models import (
    CandidateSet,
    CandidateSetKind,
    Flag,
    Label,
    Message,
    MessageRole,
    MessageSource,
    Ranking,
    Review,
    ReviewState,
)
from annotate.services import contributors

ROLES = {"prompter": MessageRole.USER, "assistant": MessageRole.ASSISTANT}
MERGED_RANKS = "merged-ranks"  # the source "user" of OASST's merged ranks, keyed when it is written
MAX_CANDIDATES = 9
# A pseudonym as exports write it: our annotators' ("a-" and 12 hex digits) or an imported author's.
PSEUDONYM = re.compile(r"^(a-[0-9a-f]{12}|[a-z][a-z0-9-]*:[0-9a-f]{16})$")

# The project's messages imported from OASST, by their OASST id: whatever an import of another file
# brought in, in either form.
IMPORTED = """
SELECT origin ->> 'source_id', id, root_id, depth, role FROM annotate_message
WHERE project_id = %s AND source = %s AND origin ? 'source_id'
"""


def pseudonymous_account(pseudonym: str):
    """Return the account standing for a person known only by their pseudonym, made on first use.

    Labels and reviews need an account (imported rankings do not: they name their author); this one cannot
    log in (inactive, no usable password) and its username is the pseudonym, so exports and project dumps
    give the person the pseudonym they had (account_pseudonym)."""
    if not PSEUDONYM.match(pseudonym):
        raise ValueError(f"{pseudonym!r} is not a pseudonym")
    user, created = get_user_model().objects.get_or_create(username=pseudonym, defaults={"is_active": False})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def account_pseudonym(user) -> str | None:
    """Return the pseudonym an account made by pseudonymous_account stands for; None for a real account."""
    if user.is_active or user.has_usable_password() or not PSEUDONYM.match(user.username):
        return None
    return user.username


class OasstTrees:
    """Rebuild trees from OASST messages given in any order (a child may precede its parent)."""

    def __init__(self, writer):
        self.writer = writer
        self.turns = {}  # OASST message id -> written turn
        self.deleted = set()
        self.waiting = defaultdict(list)  # parent id not yet seen -> [(line, message)]
        self.ranked = defaultdict(list)  # parent OASST id -> [(rank, turn, line, written now)]
        with connection.cursor() as cursor:
            cursor.execute(IMPORTED, [writer.project.id, MessageSource.IMPORT])
            self.there = {source_id: Turn(*turn) for source_id, *turn in cursor.fetchall()}
        writer.counts["already_there"] = 0
        self.forgotten = contributors.deleted_pseudonyms(project=writer.project)
        writer.counts["by_deleted_contributors"] = 0
        self.platform = PlatformJudgements(writer)

    def known(self, message_id) -> bool:
        return message_id in self.turns or message_id in self.there

    def add(self, message: dict, line: int) -> None:
        message_id = message.get("message_id")
        if not isinstance(message_id, str) or not message_id:
            raise ImportRefused(line, "a message has no 'message_id'")
        parent_id = message.get("parent_id")
        if parent_id is not None and not self.known(parent_id) and parent_id not in self.deleted:
            self.waiting[parent_id].append((line, message))
            return
        self._write(message, line)

    def _write(self, message: dict, line: int) -> None:
        message_id, parent_id = message["message_id"], message.get("parent_id")
        platform = message.get("platform")
        if isinstance(platform, dict):  # a platform export names its authors by pseudonym already
            author = platform.get("author")
        else:
            author = source_user_pseudonym("oasst", str(message.get("user_id", "")))
        if message.get("deleted") or parent_id in self.deleted or author in self.forgotten:
            self.deleted.add(message_id)
            if author in self.forgotten and not message.get("deleted"):
                self.writer.counts["by_deleted_contributors"] += 1
        else:
            role = ROLES.get(message.get("role"))
            if role is None:
                raise ImportRefused(line, f"message {message_id} has role {message.get('role')!r}; use prompter or assistant")
            text = message.get("text")
            if not isinstance(text, str) or not text.strip():
                raise ImportRefused(line, f"message {message_id} has no text")
            if message_id in self.turns:
                raise ImportRefused(line, f"message_id {message_id} appears twice")
            new = message_id not in self.there
            if new and isinstance(platform, dict):  # the platform's own tree export (training/exporters/trees.py)
                origin = self.platform.message(message, platform, line)
                turn = self.writer.turn(parent=self.turns.get(parent_id) or self.there.get(parent_id), role=role,
                                        text=text, line=line, origin=origin, merge=False)
            elif new:
                origin = {"source_id": message_id, "source_user": author}
                for field in ("model_name", "synthetic", "lang"):
                    if message.get(field) is not None:
                        origin[field] = message[field]
                parent = self.turns.get(parent_id) or self.there.get(parent_id)
                turn = self.writer.turn(parent=parent, role=role, text=text, line=line, origin=origin, merge=False)
            else:  # taken as it is; the file's replies to it hang under it
                turn = self.there[message_id]
                self.writer.counts["already_there"] += 1
            self.turns[message_id] = turn
            if new and isinstance(platform, dict):
                self.platform.written(turn, message, platform, line)
            rank = message.get("rank")
            if rank is not None:
                if not isinstance(rank, int) or rank < 0:
                    raise ImportRefused(line, f"message {message_id} has rank {rank!r}; ranks are whole numbers from 0")
                self.ranked[parent_id].append((rank, turn, line, new))
        for child_line, child in self.waiting.pop(message_id, []):
            self._write(child, child_line)

    def finish(self) -> None:
        for parent_id, children in self.waiting.items():
            line, child = children[0]
            raise ImportRefused(line, f"message {child['message_id']} has parent_id {parent_id}, which is not in the file")
        ranker = source_user_pseudonym("oasst", MERGED_RANKS)
        if ranker in self.forgotten:
            return  # the merged ranks' identity was deleted: its rankings stay out
        for parent_id, ranked in self.ranked.items():
            if len(ranked) < 2 or not any(new for *_, new in ranked):
                continue  # one reply says nothing; replies all there already came with their ranking
            tiers = defaultdict(list)
            for rank, turn, *_ in ranked:
                tiers[rank].append(turn)
            if len(tiers) < 2:
                continue  # all tied: says nothing
            ordered, kept = [], 0
            for rank in sorted(tiers):  # a candidate set holds at most 9: keep the best 9
                tier = tiers[rank][: MAX_CANDIDATES - kept]
                if tier:
                    ordered.append(tier)
                    kept += len(tier)
            if len(ordered) < 2:
                continue
            kind = CandidateSetKind.RANKING if kept > 2 else CandidateSetKind.COMPARE
            self.writer.ranking(
                parent=self.turns.get(parent_id) or self.there[parent_id], tiers=ordered, annotator=ranker, line=ranked[0][2], kind=kind
            )


def _check_platform(message: dict, platform: dict, line: int) -> None:
    """Refuse the file, naming the line, where a message's `platform` part is not what the export writes."""
    where = f"message {message['message_id']}"

    def refuse_unless(ok, what):
        if not ok:
            raise ImportRefused(line, f"{where}: {what}")

    def whole(value, low=0, high=None):
        return value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= low
                                 and (high is None or value <= high))

    def moment(value):
        try:
            return value is None or (isinstance(value, str) and parse_datetime(value) is not None)
        except ValueError:
            return False

    def judged(entry, who):
        refuse_unless(isinstance(entry, dict) and isinstance(entry.get(who), str), f"a judgement without its {who}")
        refuse_unless(whole(entry.get("guideline_version")) and whole(entry.get("time_spent_ms")),
                      "guideline_version and time_spent_ms are whole numbers")
        refuse_unless(moment(entry.get("created_date")), f"created_date {entry.get('created_date')!r} is not a time")

    refuse_unless(moment(message.get("created_date")), f"created_date {message.get('created_date')!r} is not a time")
    refuse_unless(whole(platform.get("guideline_version")) and whole(platform.get("time_spent_ms")),
                  "guideline_version and time_spent_ms are whole numbers")
    refuse_unless(platform.get("review_state") in (None, *ReviewState.values), f"review_state {platform.get('review_state')!r}")
    judgements = platform.get("judgements") or {}
    refuse_unless(isinstance(judgements, dict), "'judgements' is not an object")
    for label in judgements.get("labels") or []:
        judged(label, "annotator")
        refuse_unless(whole(label.get("quality"), 1, 5), f"label quality {label.get('quality')!r} is not 1 to 5")
        refuse_unless(isinstance(label.get("flags") or [], list) and set(label.get("flags") or []) <= set(Flag.values),
                      f"flags {label.get('flags')!r}; use {', '.join(Flag.values)}")
        scores = label.get("rubric_scores") or {}
        refuse_unless(isinstance(scores, dict) and all(whole(v, 1, 5) for v in scores.values()),
                      f"rubric scores {str(scores)[:80]} are not rubric key -> 1 to 5")
    for review in judgements.get("reviews") or []:
        judged(review, "reviewer")
        refuse_unless(isinstance(review.get("accepted"), bool), "a review's 'accepted' is true or false")
    for entry in platform.get("candidate_sets") or []:
        refuse_unless(isinstance(entry, dict) and entry.get("kind") in CandidateSetKind.values,
                      f"a candidate set's kind is one of {', '.join(CandidateSetKind.values)}")
        candidates = entry.get("candidates")
        size = (2, 2) if entry["kind"] == CandidateSetKind.COMPARE else (2, MAX_CANDIDATES)
        refuse_unless(isinstance(candidates, list) and size[0] <= len(candidates) <= size[1]
                      and len(set(map(str, candidates))) == len(candidates),
                      f"a {entry['kind']} set holds {size[0]} to {size[1]} different replies")
        for ranking in entry.get("rankings") or []:
            judged(ranking, "annotator")
            tiers = ranking.get("tiers")
            refuse_unless(isinstance(tiers, list) and all(isinstance(tier, list) for tier in tiers)
                          and {key for tier in tiers for key in tier} <= set(candidates),
                          "a ranking's tiers are lists of the set's candidates")


class PlatformJudgements:
    """Read what a platform tree export keeps under `platform` (training/exporters/trees.py): a message's
    provenance, state and time spent, its labels, reviews, and the candidate sets ranked under it.

    Labels and reviews need an account: the person's pseudonymous_account; rankings name their author's
    pseudonym as imported rankings do. Judgements are written once the messages are, with the times they
    were made."""

    def __init__(self, writer):
        self.writer = writer
        self.states = []  # (message id, its columns from the file)
        self.labels, self.reviews, self.sets = [], [], []  # (line, message id, entry)

    def message(self, message: dict, platform: dict, line: int) -> dict:
        """Return the origin to write for a message of the export."""
        origin = dict(platform.get("origin") or {})
        if not isinstance(origin, dict):
            raise ImportRefused(line, f"message {message['message_id']}: 'platform.origin' is not an object")
        origin["source_id"] = message["message_id"]
        origin["source_kind"] = platform.get("source") or MessageSource.IMPORT
        for key, field in (("source_user", "author"), ("model_version", "model_version"), ("sampling", "sampling")):
            if platform.get(field) is not None:
                origin[key] = platform[field]
        return origin

    def written(self, turn, message: dict, platform: dict, line: int) -> None:
        _check_platform(message, platform, line)
        self.states.append((turn.id, {
            "created_at": message.get("created_date"),
            "guideline_version": platform.get("guideline_version"),
            "time_spent_ms": platform.get("time_spent_ms"),
            "review_state": platform.get("review_state") or ReviewState.NOT_NEEDED,
            "excluded": bool(platform.get("excluded")),
            "excluded_reason": platform.get("excluded_reason") or "",
        }))
        judged = platform.get("judgements") or {}
        self.labels += [(line, turn.id, entry) for entry in judged.get("labels") or []]
        self.reviews += [(line, turn.id, entry) for entry in judged.get("reviews") or []]
        self.sets += [(line, turn.id, entry) for entry in platform.get("candidate_sets") or []]

    def finish(self, turns: dict) -> None:
        """Write the judgements, given the written turns by source id."""
        if not (self.states or self.sets):
            return
        self.writer.flush()
        batch = self.writer.batch.id
        Message.objects.bulk_update(
            [Message(id=id, **{**state, "created_at": state["created_at"] or timezone.now()}) for id, state in self.states],
            ["created_at", "guideline_version", "time_spent_ms", "review_state", "excluded", "excluded_reason"],
            batch_size=1000,
        )
        people = {}

        def account(pseudonym, line):
            if pseudonym not in people:
                try:
                    people[pseudonym] = pseudonymous_account(str(pseudonym)).id
                except ValueError as error:
                    raise ImportRefused(line, str(error)) from None
            return people[pseudonym]

        copy_rows(Label, [{
            "message_id": id, "annotator_id": account(entry.get("annotator"), line), "quality": entry.get("quality"),
            "flags": list(entry.get("flags") or []), "rubric_scores": Jsonb(entry.get("rubric_scores") or {}),
            "guideline_version": entry.get("guideline_version"),
            "time_spent_ms": entry.get("time_spent_ms"), "created_at": entry.get("created_date"),
            "updated_at": entry.get("created_date"),
        } for line, id, entry in self.labels])
        copy_rows(Review, [{
            "message_id": id, "reviewer_id": account(entry.get("reviewer"), line), "accepted": bool(entry.get("accepted")),
            "comment": entry.get("comment") or "", "guideline_version": entry.get("guideline_version"),
            "time_spent_ms": entry.get("time_spent_ms"), "created_at": entry.get("created_date"),
            "updated_at": entry.get("created_date"),
        } for line, id, entry in self.reviews])
        set_ids, sets, rankings = IdPool(CandidateSet), [], []
        for line, parent_id, entry in self.sets:
            try:
                candidates = [turns[key].id for key in entry["candidates"]]
                ranked = [(ranking, [[turns[key].id for key in tier] for tier in ranking.get("tiers") or []])
                          for ranking in entry.get("rankings") or []]
            except KeyError:
                continue  # a reply that is not in the project (deleted, or by a deleted contributor)
            set_id = set_ids.take()
            sets.append({"id": set_id, "project_id": self.writer.project.id, "parent_id": parent_id,
                         "kind": entry.get("kind"), "message_ids": candidates,
                         "origin": Jsonb({**(entry.get("origin") or {}), "import": batch, "line": line}),
                         "created_at": entry.get("created_date"), "updated_at": entry.get("created_date")})
            for ranking, tiers in ranked:
                origin = {**(ranking.get("origin") or {}), "import": batch, "line": line}
                if ranking.get("shown_as_a") is not None:
                    origin["shown_as_a"] = ranking["shown_as_a"]
                rankings.append({
                    "candidate_set_id": set_id, "external_annotator": str(ranking.get("annotator") or ""),
                    "origin": Jsonb(origin), "tiers": Jsonb(tiers), "all_bad": bool(ranking.get("all_bad")),
                    "guideline_version": ranking.get("guideline_version"), "time_spent_ms": ranking.get("time_spent_ms"),
                    "created_at": ranking.get("created_date"), "updated_at": ranking.get("created_date"),
                })
        copy_rows(CandidateSet, sets)
        copy_rows(Ranking, rankings)
        self.writer.counts["rankings"] += len(rankings)
        self.writer.counts["labels"] = len(self.labels)
        self.writer.counts["reviews"] = len(self.reviews)


def read_flat(stream, writer) -> None:
    trees = OasstTrees(writer)
    for line, record in jsonl_records(stream):
        trees.add(record, line)
    trees.finish()


def read_trees(stream, writer) -> None:
    trees = OasstTrees(writer)
    for line, record in jsonl_records(stream):
        root = record.get("prompt")
        if not isinstance(root, dict):
            raise ImportRefused(line, "no 'prompt' object (the tree's root message)")
        stack = [(root, None)]
        while stack:
            message, parent_id = stack.pop()
            if not isinstance(message, dict):
                raise ImportRefused(line, "a reply is not an object")
            message = {**message, "parent_id": parent_id}
            trees.add(message, line)
            replies = message.get("replies") or []
            if not isinstance(replies, list):
                raise ImportRefused(line, f"'replies' of message {message.get('message_id')} is not a list")
            stack.extend((reply, message["message_id"]) for reply in reversed(replies))
    trees.finish()
    trees.platform.finish(trees.turns)
