"""Reads of the content screen's findings: what exports redact and what the pages count."""

from collections import defaultdict

from django.db.models import Count, Q

from annotate.models import ScreenAction, ScreenFinding


def live_redactions(*, project) -> tuple[dict[int, list[tuple[int, int, str]]], dict[int, list[tuple[int, int, str]]]]:
    """Return the spans exports replace, as (start, end, kind) per message id and per corpus text id: every
    finding not cleared whose action redacts (or would have shown nothing: a block or hold an admin let through by
    clearing the message but not the finding). One query; findings are few beside the rows an export writes."""
    by_message, by_corpus = defaultdict(list), defaultdict(list)
    live = ScreenFinding.objects.filter(project=project, cleared_at__isnull=True,
                                        action__in=[ScreenAction.REDACT, ScreenAction.HOLD, ScreenAction.BLOCK])
    for message_id, corpus_id, start, end, kind in live.values_list("message_id", "corpus_text_id", "start", "end", "kind"):
        if message_id is not None:
            by_message[message_id].append((start, end, kind))
        elif corpus_id is not None:
            by_corpus[corpus_id].append((start, end, kind))
    return dict(by_message), dict(by_corpus)


def finding_counts(*, project) -> list[dict]:
    """Findings per detector and kind: live and cleared, and how many of each action (Progress)."""
    rows = (ScreenFinding.objects.filter(project=project).values("detector", "kind")
            .annotate(total=Count("id"), cleared=Count("id", filter=Q(cleared_at__isnull=False)),
                      **{action: Count("id", filter=Q(action=action, cleared_at__isnull=True))
                         for action in ScreenAction.values})
            .order_by("detector", "kind"))
    return list(rows)
