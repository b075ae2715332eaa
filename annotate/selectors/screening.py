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
    return [{**row, "live": row["total"] - row["cleared"]} for row in rows]


def findings_list(*, project, kind: str | None = None, live: bool | None = None):
    """Return the project's findings, newest first: of one kind, only live (not cleared) or only cleared."""
    found = ScreenFinding.objects.filter(project=project).select_related("message", "corpus_text", "user")
    if kind:
        found = found.filter(kind=kind)
    if live is not None:
        found = found.filter(cleared_at__isnull=live)
    return found.order_by("-created_at", "-id")


def finding_text(finding: ScreenFinding) -> str:
    """The text a finding is about: its message's, its corpus text's, or (a chat reply) its own."""
    if finding.message_id:
        return finding.message.text
    if finding.corpus_text_id:
        return finding.corpus_text.text
    return finding.text


def highlighted(text: str, spans) -> list[dict]:
    """Cut a text into pieces, each {"text", "kind"} (kind None outside every span), for a template to escape and
    wrap the found spans in <mark>: no markup is ever built from the text here. Overlapping spans merge."""
    pieces, at = [], 0
    for start, end, kind in sorted(spans):
        start = max(start, at)
        if start >= end:
            continue
        if start > at:
            pieces.append({"text": text[at:start], "kind": None})
        pieces.append({"text": text[start:end], "kind": kind})
        at = end
    if at < len(text):
        pieces.append({"text": text[at:], "kind": None})
    return pieces


def findings_of_messages(*, message_ids) -> dict[int, list[ScreenFinding]]:
    """Live findings per message id (the Flagged page shows them with the held messages)."""
    found = defaultdict(list)
    for finding in ScreenFinding.objects.filter(message_id__in=list(message_ids), cleared_at__isnull=True).order_by("start"):
        found[finding.message_id].append(finding)
    return dict(found)


def findings_outside_held(*, project, limit: int = 200) -> list[ScreenFinding]:
    """Live findings that hold no excluded message: those that redact in exports, those on corpus texts, and
    chat replies the screen stopped (no message). Newest first, each with `pieces` of its text highlighted."""
    found = list(
        findings_list(project=project, live=True)
        .filter(Q(message__isnull=True) | Q(message__excluded=False))[:limit]
    )
    for finding in found:
        finding.pieces = highlighted(finding_text(finding), [(finding.start, finding.end, finding.kind)])
    return found
