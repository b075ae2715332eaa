"""Whole conversation trees with every judgement on them, lossless, in Open-Assistant's nested form.

    for record in tree_records(project): ...   # {"message_tree_id": ..., "prompt": {..., "replies": [...]}}

Each message has OASST's fields (message_id, role as prompter or assistant, text, created_date, synthetic,
model_name, replies) and, under `platform`, what OASST has no field for: where it came from (source,
the author's pseudonym, the model version and sampling of a generated reply, the rest of its origin), the
guideline version and time spent, its review state and exclusion, its labels and flags and its reviews,
and, on a message whose replies were ranked or compared, each candidate set with its rankings (tiers of
message ids best first, all bad, who, when, under which guidelines, how long, and for a comparison which
reply was shown as A).

The content screen's redactions are not applied here, on purpose: this is the project's backup, read back by
the trees importer, and replacing spans would lose stored text on the round trip; the findings travel beside it
in a project dump (training/services/dumps.py). Publish snapshots, which redact, not this file.

Nothing is left out: excluded messages and their judgements are in the file, marked so; unlike the
snapshot kinds this is a record of the project, not a training set. There is no OASST `rank` (the
rankings are there, per annotator), so the OASST trees importer reads the file back into another
project with every judgement (annotate/importers/oasst.py), and exporting that project gives the
same records. Ids are the source ids of imported messages, else the project's own ("p3-m41").
People are pseudonyms: annotator_pseudonym for our annotators, the imported author's pseudonym for
imported messages and rankings.
"""

from collections import defaultdict
from collections.abc import Iterator

from django.contrib.auth import get_user_model

from annotate.importers.oasst import account_pseudonym
from annotate.models import CandidateSet, CandidateSetKind, Label, Message, MessageSource, Ranking, Review
from annotate.rules import compare_order
from training.exporters.rows import annotator_pseudonym
from training.models import GeneratedReply

ROOTS_PER_QUERY = 200
ROLES = {"user": "prompter", "assistant": "assistant"}
# Origin keys shown as fields of their own, or that are this database's ids (import batch, model version).
LIFTED = {"import", "line", "source_id", "source_user", "source_kind", "model_version", "model_version_id", "sampling"}
RANKING_LIFTED = {"import", "line", "shown_as_a"}


def _when(moment) -> str:
    return moment.isoformat()


class _People:
    def __init__(self, project_id: int):
        self.project_id, self.keys = project_id, {}

    def of(self, user_ids) -> None:
        wanted = set(user_ids) - set(self.keys) - {None}
        for user in get_user_model().objects.filter(id__in=wanted):
            self.keys[user.id] = account_pseudonym(user) or annotator_pseudonym(self.project_id, user.id)

    def key(self, user_id):
        return self.keys.get(user_id) if user_id is not None else None


def message_key(project_id: int, message: Message) -> str:
    """The message's id in the file: its source id if it was imported with one, else the project's own."""
    if message.source == MessageSource.IMPORT and message.origin.get("source_id"):
        return message.origin["source_id"]
    return f"p{project_id}-m{message.id}"


def tree_records(project) -> Iterator[dict]:
    """Yield one record per conversation tree of the project, oldest root first, a few hundred trees a query."""
    roots = Message.objects.filter(project=project, parent__isnull=True).order_by("id").values_list("id", flat=True)
    people = _People(project.id)
    chunk = []
    for root_id in roots.iterator(chunk_size=ROOTS_PER_QUERY):
        chunk.append(root_id)
        if len(chunk) == ROOTS_PER_QUERY:
            yield from _records(project, chunk, people)
            chunk = []
    if chunk:
        yield from _records(project, chunk, people)


def _records(project, root_ids: list[int], people: _People) -> Iterator[dict]:
    messages = list(Message.objects.filter(project=project, root_id__in=root_ids).order_by("depth", "id"))
    labels, reviews, sets, rankings = defaultdict(list), defaultdict(list), defaultdict(list), defaultdict(list)
    for label in Label.objects.filter(message__root_id__in=root_ids).order_by("created_at", "id"):
        labels[label.message_id].append(label)
    for review in Review.objects.filter(message__root_id__in=root_ids).order_by("created_at", "id"):
        reviews[review.message_id].append(review)
    for candidate_set in CandidateSet.objects.filter(parent__root_id__in=root_ids).order_by("created_at", "id"):
        sets[candidate_set.parent_id].append(candidate_set)
    for ranking in Ranking.objects.filter(candidate_set__parent__root_id__in=root_ids).order_by("created_at", "id"):
        rankings[ranking.candidate_set_id].append(ranking)
    generated = {reply.message_id: reply for reply in
                 GeneratedReply.objects.filter(message__root_id__in=root_ids).select_related("model_version")}
    people.of([m.author_id for m in messages] + [x.annotator_id for xs in labels.values() for x in xs]
              + [x.reviewer_id for xs in reviews.values() for x in xs]
              + [x.annotator_id for xs in rankings.values() for x in xs])
    keys = {message.id: message_key(project.id, message) for message in messages}
    nodes, children = {}, defaultdict(list)
    for message in messages:
        nodes[message.id] = _node(message, keys, people, labels[message.id], reviews[message.id],
                                  [(s, rankings[s.id]) for s in sets[message.id]], generated.get(message.id))
        children[message.parent_id].append(message.id)
    for message in reversed(messages):  # deepest first, so each node's replies are complete when it is attached
        nodes[message.id]["replies"] = [nodes[child] for child in children[message.id]]
    for root_id in root_ids:
        if root_id in nodes:
            yield {"message_tree_id": keys[root_id], "prompt": nodes[root_id]}


def _node(message, keys, people, labels, reviews, candidate_sets, generated) -> dict:
    origin = message.origin or {}
    source = origin.get("source_kind", message.source) if message.source == MessageSource.IMPORT else message.source
    if message.source == MessageSource.IMPORT:
        author = origin.get("source_user")
    else:
        author = people.key(message.author_id)
    model_version = generated.model_version.name if generated else origin.get("model_version")
    platform = {
        "source": source,
        "author": author,
        "model_version": model_version,
        "sampling": generated.sampling if generated else origin.get("sampling"),
        "origin": {key: value for key, value in origin.items() if key not in LIFTED},
        "guideline_version": message.guideline_version,
        "time_spent_ms": message.time_spent_ms,
        "review_state": message.review_state,
        "excluded": message.excluded,
        "excluded_reason": message.excluded_reason,
        "judgements": {
            "labels": [{"annotator": people.key(label.annotator_id), "quality": label.quality, "flags": label.flags,
                        "rubric_scores": label.rubric_scores,
                        "guideline_version": label.guideline_version, "time_spent_ms": label.time_spent_ms,
                        "created_date": _when(label.created_at)} for label in labels],
            "reviews": [{"reviewer": people.key(review.reviewer_id), "accepted": review.accepted,
                         "comment": review.comment, "guideline_version": review.guideline_version,
                         "time_spent_ms": review.time_spent_ms, "created_date": _when(review.created_at)}
                        for review in reviews],
        },
        "candidate_sets": [_candidate_set(s, ranked, keys, people) for s, ranked in candidate_sets],
    }
    return {
        "message_id": keys[message.id],
        "role": ROLES[message.role],
        "text": message.text,
        "created_date": _when(message.created_at),
        "synthetic": source == MessageSource.MODEL or bool(origin.get("synthetic", False)),
        "model_name": model_version or origin.get("model_name"),
        "platform": platform,
        "replies": [],
    }


def _candidate_set(candidate_set, rankings, keys, people) -> dict:
    def key(message_id):
        return keys.get(message_id, f"missing-m{message_id}")

    def shown_as_a(ranking):
        if candidate_set.kind != CandidateSetKind.COMPARE:
            return None
        if ranking.task_id is not None:
            return key(compare_order(ranking.task_id, candidate_set.message_ids)[0])
        return ranking.origin.get("shown_as_a")

    return {
        "kind": candidate_set.kind,
        "candidates": [key(message_id) for message_id in candidate_set.message_ids],
        "created_date": _when(candidate_set.created_at),
        "origin": {k: v for k, v in (candidate_set.origin or {}).items() if k not in RANKING_LIFTED},
        "rankings": [
            {
                "annotator": ranking.external_annotator or people.key(ranking.annotator_id),
                "tiers": [[key(message_id) for message_id in tier] for tier in ranking.tiers],
                "all_bad": ranking.all_bad,
                "shown_as_a": shown_as_a(ranking),
                "guideline_version": ranking.guideline_version,
                "time_spent_ms": ranking.time_spent_ms,
                "created_date": _when(ranking.created_at),
                "origin": {k: v for k, v in (ranking.origin or {}).items() if k not in RANKING_LIFTED},
            }
            for ranking in rankings
        ],
    }
