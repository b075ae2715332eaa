"""The trail of a message's judgements: every change and withdrawal of the labels on it and of the rankings of
every set it is in, from django-simple-history's records (annotate.services.corrections writes them)."""

from django.db.models import Q

from annotate.models import CandidateSet, Label, Ranking

ACTIONS = {"+": "made", "~": "changed", "-": "withdrawn"}
FIELDS = {"label": ("quality", "flags", "verdict", "verdict_comment"),
          "ranking": ("tiers", "all_bad", "verdict", "verdict_comment")}


def message_trail(*, message) -> list[dict]:
    """Oldest first: which judgement, what happened to it (made, changed, withdrawn), when, by whom, and its
    fields before and after (None before its first record, None after a withdrawal). Two queries a kind."""
    sets = list(CandidateSet.objects.filter(Q(message_ids__contains=[message.id])).values_list("id", flat=True))
    sources = {
        "label": Label.history.filter(message_id=message.id),
        "ranking": Ranking.history.filter(candidate_set_id__in=sets),
    }
    entries = []
    for kind, records in sources.items():
        previous: dict[int, dict | None] = {}
        for record in records.select_related("history_user").order_by("id", "history_date", "history_id"):
            values = {name: getattr(record, name) for name in FIELDS[kind]}
            withdrawn = record.history_type == "-"
            entries.append({
                "kind": kind, "id": record.id, "action": ACTIONS[record.history_type], "at": record.history_date,
                "by": record.history_user.username if record.history_user else None,
                "before": previous.get(record.id, values if withdrawn else None),
                "after": None if withdrawn else values,
            })
            previous[record.id] = None if withdrawn else values
    return sorted(entries, key=lambda entry: (entry["at"], entry["kind"], entry["id"]))
