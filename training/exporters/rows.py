"""Rows of each snapshot kind, in TRL's formats, streamed one conversation tree at a time.

Messages are read in root order through a server-side cursor and grouped per tree, so memory
holds one tree (and the rankings about it) at a time, however large the project. A message
that is excluded (flagged or rejected, not cleared) takes everything under it out of every
export. Every row carries provenance: pseudonymous annotator ids, where each reply came from
(annotator, import, or model with its version), and times.
"""

import hashlib
import hmac
import json
from collections.abc import Iterator
from itertools import combinations

from django.conf import settings
from django.db import connection

from annotate.agreement import ranked_pairs
from annotate.models import CorpusText, MessageRole, MessageSource, Ranking, ReviewState

CHUNK = 5000
HELDOUT_PERCENT = 10
MESSAGE_FIELDS = ("id", "parent_id", "root_id", "role", "text", "source", "author_id", "review_state",
                  "excluded", "created_at", "origin")


def is_heldout(project_id: int, key: int) -> bool:
    """The fixed held-out split: a seeded hash of the root message id (or document id), so a
    prompt held out once is held out in every later snapshot of the project."""
    digest = hashlib.sha256(f"heldout:{project_id}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100 < HELDOUT_PERCENT


def pseudonym(project_id: int, user_id: int | None) -> str | None:
    """A stable pseudonymous annotator id: the same person gets the same id in every snapshot
    of the project, and the id cannot be turned back into the account without the secret key."""
    if user_id is None:
        return None
    mac = hmac.new(settings.SECRET_KEY.encode(), f"{project_id}:{user_id}".encode(), hashlib.sha256)
    return "a-" + mac.hexdigest()[:12]


class Tree:
    def __init__(self, project_id: int, rows: list[tuple]):
        self.project_id = project_id
        self.messages = {row[0]: dict(zip(MESSAGE_FIELDS, row)) for row in rows}
        self.root_id = rows[0][2]

    def path(self, message_id: int) -> list[dict] | None:
        """Root-to-message path, or None when any message on it is excluded or missing."""
        path, node = [], self.messages.get(message_id)
        while node is not None:
            if node["excluded"]:
                return None
            path.append(node)
            node = self.messages.get(node["parent_id"]) if node["parent_id"] else None
        if not path or path[-1]["parent_id"] is not None:
            return None
        return path[::-1]

    def origin_of(self, message: dict) -> dict:
        """Where a reply came from, without naming anyone. The same keys in every row, so
        the column has one type for `datasets`."""
        origin = json.loads(message["origin"]) if message["origin"] else {}
        return {
            "message_id": message["id"],
            "source": message["source"],
            "at": message["created_at"],
            "annotator": pseudonym(self.project_id, message["author_id"])
            if message["source"] == MessageSource.ANNOTATOR
            else None,
            "model_version": None if origin.get("model_version") is None else str(origin["model_version"]),
            "model_name": origin.get("model_name"),
            "source_user": origin.get("source_user"),
        }


def turns(path: list[dict]) -> list[dict]:
    return [{"role": message["role"], "content": message["text"]} for message in path]


# Plain SQL through a server-side cursor: times come as ISO text and origins as JSON text,
# decoded only for the replies that are exported (the ORM's converters cost more than the read).
TREES = """
SELECT id, parent_id, root_id, role, text, source, author_id, review_state, excluded,
       to_json(created_at) #>> '{}', origin::text
FROM annotate_message WHERE project_id = %s ORDER BY root_id, depth, id
"""


def trees(project) -> Iterator[Tree]:
    current = []
    with connection.chunked_cursor() as cursor:
        cursor.execute(TREES, [project.id])
        while batch := cursor.fetchmany(CHUNK):
            for row in batch:
                if current and row[2] != current[0][2]:
                    yield Tree(project.id, current)
                    current = []
                current.append(row)
    if current:
        yield Tree(project.id, current)


def sft_rows(project, *, demonstrations: str = "accepted") -> Iterator[tuple[str, dict]]:
    """(split, row) for each whole conversation that ends in a reply worth imitating:
    accepted human demonstrations by default, or every non-excluded reply (`all`)."""
    for tree in trees(project):
        split = "test" if is_heldout(project.id, tree.root_id) else "train"
        for message in tree.messages.values():
            if message["role"] != MessageRole.ASSISTANT:
                continue
            if demonstrations == "accepted" and message["review_state"] != ReviewState.ACCEPTED:
                continue
            path = tree.path(message["id"])
            if path is None:
                continue
            yield split, {"messages": turns(path), "provenance": {"root_id": tree.root_id, "reply": tree.origin_of(message)}}


def prompt_rows(project) -> Iterator[tuple[str, dict]]:
    """(split, row) for every user turn, with the conversation before it, for PPO/RLOO."""
    for tree in trees(project):
        split = "test" if is_heldout(project.id, tree.root_id) else "train"
        for message in tree.messages.values():
            if message["role"] != MessageRole.USER:
                continue
            path = tree.path(message["id"])
            if path is not None:
                yield split, {"prompt": turns(path), "provenance": {"root_id": tree.root_id, "message_id": message["id"]}}


def pretraining_rows(project) -> Iterator[tuple[str, dict]]:
    documents = CorpusText.objects.filter(project=project).order_by("id").values_list("id", "text").iterator(chunk_size=CHUNK)
    for document_id, text in documents:
        yield ("test" if is_heldout(project.id, document_id) else "train"), {"text": text}


def preference_rows(project, side) -> Iterator[tuple[str, str]]:
    """(split, row) for every pair implied by each ranking: tier i above tier j gives a pair
    for each reply of i and each of j; ties give none, and "all bad" gives none.

    `side` maps "rankings" and "consensus" to files (SplitFiles) that get, as the pairs stream
    by, the raw per-annotator rankings and each set's consensus order.
    """
    rankings = (
        Ranking.objects.filter(candidate_set__project=project)
        .order_by("candidate_set__parent__root_id", "candidate_set_id", "id")
        .values_list("candidate_set__parent__root_id", "candidate_set_id", "candidate_set__parent_id",
                     "candidate_set__message_ids", "id", "annotator_id", "external_annotator", "tiers", "all_bad",
                     "guideline_version", "created_at")
        .iterator(chunk_size=CHUNK)
    )
    pending = next(rankings, None)
    for tree in trees(project):
        split = "test" if is_heldout(project.id, tree.root_id) else "train"
        by_set = {}
        while pending is not None and pending[0] <= tree.root_id:
            if pending[0] == tree.root_id:
                by_set.setdefault(pending[1], []).append(pending)
            pending = next(rankings, None)
        for set_id, rows in by_set.items():
            yield from _pairs_of_set(tree, split, set_id, rows, side)


def _pairs_of_set(tree: Tree, split: str, set_id: int, rows: list[tuple], side: dict):
    _, _, parent_id, message_ids, *_ = rows[0]
    prompt = tree.path(parent_id)
    if prompt is None:
        return
    usable = [m for m in message_ids if m in tree.messages and not tree.messages[m]["excluded"]]
    # A set yields many pairs from few texts: encode each text and origin once and join the
    # fragments per pair (a million pairs do not go through json.dumps a million times).
    prompt_json = _json(turns(prompt))
    reply_json = {m: f'[{{"role": "assistant", "content": {_string(tree.messages[m]["text"])}}}]' for m in usable}
    origin_json = {m: _json(tree.origin_of(tree.messages[m])) for m in usable}
    ordered = []
    for _, _, _, _, ranking_id, annotator_id, external, tiers, all_bad, guideline_version, created_at in rows:
        who = pseudonym(tree.project_id, annotator_id) if annotator_id else external
        at = created_at.isoformat()
        side["rankings"].write(
            split,
            {"candidate_set_id": set_id, "ranking_id": ranking_id, "annotator": who, "imported": annotator_id is None,
             "tiers": tiers, "all_bad": all_bad, "guideline_version": guideline_version, "at": at},
        )
        if all_bad:
            continue
        tiers = [[m for m in tier if m in reply_json] for tier in tiers]
        tiers = [tier for tier in tiers if tier]
        ordered.append(tiers)
        provenance = _json({
            "root_id": tree.root_id, "candidate_set_id": set_id, "ranking_id": ranking_id, "annotator": who,
            "imported": annotator_id is None, "guideline_version": guideline_version, "at": at,
        })[:-1]  # left open: the two replies' origins follow
        for upper, lower in combinations(range(len(tiers)), 2):
            for better in tiers[upper]:
                for worse in tiers[lower]:
                    yield split, (
                        f'{{"prompt": {prompt_json}, "chosen": {reply_json[better]}, "rejected": {reply_json[worse]}, '
                        f'"provenance": {provenance}, "chosen": {origin_json[better]}, "rejected": {origin_json[worse]}}}}}'
                    )
    if ordered:
        # One ranking is its own consensus; several are combined by ranked pairs.
        order = [m for tier in ordered[0] for m in tier] if len(ordered) == 1 else ranked_pairs(sorted(usable), ordered)
        side["consensus"].write(split, {"candidate_set_id": set_id, "order": order, "rankings": len(ordered)})


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False)


# The standard library's C encoder for one JSON string (what json.dumps uses inside).
_string = json.encoder.encode_basestring
