"""The content screen: what it finds in a text, the findings it stores, what it does with them, and clearing them.

Every text that enters goes through `texts_screen` (message_create for submits, generated replies and chats made
prompts; the importers for imports; training's chat stream for replies before they are shown). A finding's action
is the project's setting for its kind (ScreenSettings.action_for): *allow* records it, *redact* replaces its span
in exports (annotate.selectors.screening.live_redactions, read once per export, not by screening rows again),
*hold* excludes the message until an admin clears it (the Flagged page), *block* refuses the text where it
enters. Stored text is never changed, so switching a screen off (or clearing a finding) loses nothing.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from annotate.models import (
    SCREEN_ACTION_ORDER,
    SCREEN_KINDS,
    SCREEN_SOURCES,
    CorpusText,
    Message,
    MessageSource,
    ScreenAction,
    ScreenFinding,
    ScreenSettings,
    ScreenWhere,
)
from annotate.screen import detectors
from annotate.screen.detectors import Span

# Screens other apps add: training's classifier (training.apps registers it, since annotate never imports
# training). Each takes a project and returns a function from texts to the spans found in each, or None when
# the project has none.
SCREEN_PROVIDERS: list[Callable] = []

# Every reason a screen gives starts so: the Flagged page and message_clear tell a screen's hold by it.
HELD_PREFIX = "held by the screen"


@dataclass
class Verdict:
    """What the screen found in one text and, for each finding, what the project does with it."""

    spans: list[Span] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)

    @property
    def action(self) -> str | None:
        """The strongest action of any finding (None when nothing was found)."""
        return max(self.actions, key=SCREEN_ACTION_ORDER.index) if self.actions else None

    def describe(self, action: str | None = None) -> str:
        """Name each finding (of `action`, or all): 'email at characters 10-25, word at 30-35'."""
        named = [f"{span.kind} at characters {span.start + 1}-{span.end}"
                 for span, act in zip(self.spans, self.actions) if action in (None, act)]
        return ", ".join(named)


class ScreenBlocked(ValidationError):
    """A text the project's screen blocks where it enters; `verdict` says what was found."""

    def __init__(self, verdict: Verdict, *, what: str = "text"):
        self.verdict = verdict
        super().__init__({"text": f"the {what} was refused by the project's content screen: "
                                  f"{verdict.describe(ScreenAction.BLOCK)}"})


def screen_settings(*, project) -> ScreenSettings:
    """Return the project's screen settings (off until an admin switches it on)."""
    found = getattr(project, "_screen_settings", None)
    if found is None:
        found, _ = ScreenSettings.objects.get_or_create(project=project)
        project._screen_settings = found
    return found


def source_of(message_source: str) -> str:
    """Whose text a message is, for the actions: a model's, or a person's (written or imported)."""
    return "model" if message_source == MessageSource.MODEL else "human"


def texts_screen(*, project, texts: Sequence[str], source: str, settings: ScreenSettings | None = None,
                 force: bool = False) -> list[Verdict]:
    """Screen each text for the project (nothing found while its screen is off, unless `force`)."""
    settings = settings or screen_settings(project=project)
    if not (settings.enabled or force):
        return [Verdict() for _ in texts]
    found = [detectors.personal_data(text) + detectors.phrases(text, settings.words) for text in texts]
    for provider in SCREEN_PROVIDERS:
        screen = provider(project)
        if screen is not None:
            for spans, extra in zip(found, screen(list(texts))):
                spans.extend(extra)
    return [Verdict(spans, [settings.action_for(span.kind, source) for span in spans]) for spans in found]


def findings_rows(*, project, verdict: Verdict, where: str, message_id=None, corpus_text_id=None, text="",
                  user=None, model_version_id=None) -> list[ScreenFinding]:
    """Return (unsaved) the findings of one verdict, for findings_save."""
    return [
        ScreenFinding(project=project, message_id=message_id, corpus_text_id=corpus_text_id, text=text, user=user,
                      model_version_id=model_version_id, where=where, kind=span.kind,
                      category=SCREEN_KINDS[span.kind][0], start=span.start, end=span.end, detector=span.detector,
                      detector_version=span.version, score=span.score, action=action)
        for span, action in zip(verdict.spans, verdict.actions)
    ]


def findings_save(rows: list[ScreenFinding]) -> None:
    """Store findings; one already stored for the same span (cleared or not) stays as it is."""
    if rows:
        ScreenFinding.objects.bulk_create(rows, ignore_conflicts=True, batch_size=2000)


def hold_reason(verdict: Verdict) -> str:
    return f"{HELD_PREFIX}: {verdict.describe(ScreenAction.HOLD)}"[:200]


def message_screen(*, message: Message, verdict: Verdict, where: str) -> None:
    """Store what the screen found in a new message; hold it (excluded until cleared) if an action says so."""
    from annotate.services.tree import message_exclude

    findings_save(findings_rows(project=message.project, verdict=verdict, where=where, message_id=message.id))
    if verdict.action == ScreenAction.HOLD:
        message_exclude(message=message, reason=hold_reason(verdict))


def where_of(message_source: str) -> str:
    return {MessageSource.MODEL: ScreenWhere.GENERATION, MessageSource.IMPORT: ScreenWhere.IMPORT}.get(
        message_source, ScreenWhere.SUBMIT)


@transaction.atomic
def finding_clear(*, finding: ScreenFinding, by) -> ScreenFinding:
    """An admin's decision that a finding is a false positive: it no longer redacts or holds, and screening the
    text again leaves it cleared. A message the screen held is included again once none of its holds is live."""
    from annotate.services.tree import message_clear

    finding = ScreenFinding.objects.select_for_update().get(pk=finding.pk)
    if finding.cleared_at is None:
        finding.cleared_at, finding.cleared_by = timezone.now(), by
        finding.save(update_fields=["cleared_at", "cleared_by", "updated_at"])
    if finding.message_id:
        message = Message.objects.get(pk=finding.message_id)
        live_holds = ScreenFinding.objects.filter(message_id=message.id, cleared_at__isnull=True,
                                                  action__in=[ScreenAction.HOLD, ScreenAction.BLOCK])
        if message.excluded and message.excluded_reason.startswith(HELD_PREFIX) and not live_holds.exists():
            message_clear(message=message)
    return finding


def screen_configure(*, project, enabled: bool | None = None, actions: dict | None = None,
                     words: list[str] | None = None, classifier_min_flags: int | None = None) -> tuple[ScreenSettings, bool]:
    """Change a project's screen; return its settings and whether this switched it on (stored text then needs a
    backfill, which the caller queues: training's screen job). Refuses an unknown kind, source or action whole."""
    with transaction.atomic():
        settings = ScreenSettings.objects.select_for_update().get(pk=screen_settings(project=project).pk)
        was_on = settings.enabled
        if actions is not None:
            settings.actions = _actions_checked(actions)
        if words is not None:
            cleaned = sorted({" ".join(str(word).split()) for word in words if str(word).strip()})
            too_long = [word for word in cleaned if len(word) > 200]
            if too_long:
                raise ValidationError({"words": f"a word or phrase is at most 200 characters: {too_long[0][:40]}..."})
            settings.words = cleaned
        if classifier_min_flags is not None:
            if classifier_min_flags < 1:
                raise ValidationError({"classifier_min_flags": "must be at least 1"})
            settings.classifier_min_flags = classifier_min_flags
        if enabled is not None:
            settings.enabled = enabled
        settings.save()
    project._screen_settings = settings
    return settings, settings.enabled and not was_on


def _actions_checked(actions: dict) -> dict:
    if not isinstance(actions, dict):
        raise ValidationError({"actions": 'give {"human": {kind: action}, "model": {kind: action}}'})
    checked = {}
    for source, kinds in actions.items():
        if source not in SCREEN_SOURCES:
            raise ValidationError({"actions": f"unknown source {source!r}; use {', '.join(SCREEN_SOURCES)}"})
        if not isinstance(kinds, dict):
            raise ValidationError({"actions": f"{source}: give a mapping of kind to action"})
        for kind, action in kinds.items():
            if kind not in SCREEN_KINDS:
                raise ValidationError({"actions": f"unknown kind {kind!r}; use {', '.join(SCREEN_KINDS)}"})
            if action not in ScreenAction.values:
                raise ValidationError({"actions": f"{source} {kind}: unknown action {action!r}; "
                                                  f"use {', '.join(ScreenAction.values)}"})
        checked[source] = dict(kinds)
    return checked


# How many stored texts a backfill screens and writes at a time.
BACKFILL_BATCH = 500


def screen_backfill(*, project, progress: Callable[[int, int, dict], None] | None = None, batch=None) -> dict:
    """Screen every message and corpus text the project has stored (or one import `batch` wrote), as entry would
    have: findings recorded, holds applied (never blocks: what is stored stays; an import's blocked text is held).
    Returns the findings recorded, per kind. `progress(done, total, counts)` is called after each batch of texts
    (a job's heartbeat and cancel point)."""
    settings = screen_settings(project=project)
    messages = Message.objects.filter(project=project).order_by("id")
    corpus = CorpusText.objects.filter(project=project).order_by("id")
    where = ScreenWhere.BACKFILL
    if batch is not None:
        messages = messages.filter(origin__contains={"import": batch.id})
        corpus = corpus.filter(batch=batch)
        where = ScreenWhere.IMPORT
    total = messages.count() + corpus.count()
    done, counts = 0, {}
    for queryset, is_corpus in ((messages, False), (corpus, True)):
        last = 0
        while True:
            batch = list(queryset.filter(id__gt=last).only("id", "text", *(() if is_corpus else ("source",)))
                         [:BACKFILL_BATCH])
            if not batch:
                break
            last = batch[-1].id
            rows, holds = [], []
            for row in batch:
                source = "human" if is_corpus else source_of(row.source)
                verdict = texts_screen(project=project, texts=[row.text], source=source, settings=settings, force=True)[0]
                if not verdict.spans:
                    continue
                rows += findings_rows(project=project, verdict=verdict, where=where,
                                      **({"corpus_text_id": row.id} if is_corpus else {"message_id": row.id}))
                if not is_corpus and verdict.action in (ScreenAction.HOLD, ScreenAction.BLOCK):
                    holds.append((row, verdict))
                for span in verdict.spans:
                    counts[span.kind] = counts.get(span.kind, 0) + 1
            with transaction.atomic():
                findings_save(rows)
                _backfill_holds(holds)
            done += len(batch)
            if progress:
                progress(done, total, counts)
    return counts


def _backfill_holds(holds) -> None:
    """Hold messages whose live findings call for it (a finding an admin cleared does not)."""
    from annotate.services.tree import message_exclude

    for message, verdict in holds:
        live = set(ScreenFinding.objects.filter(message_id=message.id, cleared_at__isnull=True,
                                                action__in=[ScreenAction.HOLD, ScreenAction.BLOCK])
                   .values_list("kind", "start", "end"))
        kept = Verdict(*map(list, zip(*[(span, ScreenAction.HOLD) for span, action in zip(verdict.spans, verdict.actions)
                                        if (span.kind, span.start, span.end) in live]))) if live else Verdict()
        if kept.spans:
            full = Message.objects.select_related("project").get(pk=message.id)
            message_exclude(message=full, reason=hold_reason(kept))


@transaction.atomic
def message_findings_clear(*, message: Message, by) -> Message:
    """An admin's Clear on the Flagged page: every live finding of the message is cleared (each stays cleared),
    and the message is included again, whatever held it (the screen, flags or a rejection)."""
    from annotate.services.tree import message_clear

    for finding in ScreenFinding.objects.filter(message_id=message.id, cleared_at__isnull=True):
        finding_clear(finding=finding, by=by)
    message.refresh_from_db()
    if message.excluded:
        message = message_clear(message=message)
    return message
