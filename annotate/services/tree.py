"""Writes to conversation trees: messages, the work they create, candidate sets, exclusion."""

from collections import defaultdict

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from annotate.models import (
    CandidateSet,
    CandidateSetKind,
    Message,
    MessageRole,
    MessageSource,
    Project,
    ReviewState,
    ScreenAction,
    TaskKind,
    TaskState,
    WorkItem,
)
from annotate.services import screening

MAX_TEXT = 20_000


def text_problem(text: str, *, what: str = "message") -> str | None:
    """Say what is wrong with a message's text (for services and importers alike), or None."""
    if not text.strip():
        return f"the {what} is empty"
    if len(text) > MAX_TEXT:
        return f"the {what} is {len(text)} characters; at most {MAX_TEXT}"
    if "\x00" in text:
        return f"the {what} contains a NUL character"
    return None


def _clean_text(text: str, *, what: str) -> str:
    text = (text or "").strip()
    problem = text_problem(text, what=what)
    if problem:
        raise ValidationError({"text": problem})
    return text


def work_item_create(*, project: Project, kind: str, needed: int, message=None, candidate_set=None, excluded=()):
    return WorkItem.objects.create(
        project=project,
        kind=kind,
        message=message,
        candidate_set=candidate_set,
        needed=needed,
        open_slots=needed,
        excluded_user_ids=sorted({user_id for user_id in excluded if user_id is not None}),
    )


@transaction.atomic
def message_create(
    *,
    project: Project,
    parent: Message | None,
    role: str,
    text: str,
    source: str,
    author=None,
    origin: dict | None = None,
    guideline_version: int | None = None,
    time_spent_ms: int | None = None,
    create_work: bool = True,
    screen_where: str | None = None,
) -> Message:
    """Add a message to a tree and create the work it calls for (demonstrations, reviews...).

    The project's content screen sees it first (annotate.services.screening): a text it blocks is refused
    (ScreenBlocked, nothing written), one it holds is written excluded, and what it found is stored.
    """
    settings = project.settings
    if parent is None:
        if role != MessageRole.USER:
            raise ValidationError({"role": "a conversation starts with a user message"})
        depth = 0
    else:
        if parent.project_id != project.id:
            raise ValidationError({"parent": "the parent message belongs to another project"})
        expected = MessageRole.ASSISTANT if parent.role == MessageRole.USER else MessageRole.USER
        if role != expected:
            raise ValidationError({"role": f"a reply to a {parent.role} message must be an {expected} message"})
        depth = parent.depth + 1
        if role == MessageRole.USER and depth > 2 * (settings.max_depth - 1):
            raise ValidationError({"parent": f"the chat is already {settings.max_depth} user turns deep"})
    text = _clean_text(text, what="message")
    verdict = screening.texts_screen(project=project, texts=[text], source=screening.source_of(source))[0]
    if verdict.action == ScreenAction.BLOCK:
        raise screening.ScreenBlocked(verdict, what="reply" if role == MessageRole.ASSISTANT else "message")
    message = Message.objects.create(
        project=project,
        parent=parent,
        root_id=parent.root_id if parent else None,
        depth=depth,
        role=role,
        text=text,
        source=source,
        author=author,
        origin=origin or {},
        guideline_version=guideline_version,
        time_spent_ms=time_spent_ms,
        review_state=(
            ReviewState.PENDING
            if role == MessageRole.ASSISTANT and source == MessageSource.ANNOTATOR
            else ReviewState.NOT_NEEDED
        ),
    )
    if parent is None:
        Message.objects.filter(pk=message.pk).update(root=message)
        message.root_id = message.pk
    if create_work:
        _work_for_new_message(message, settings)
    if verdict.spans:
        screening.message_screen(message=message, verdict=verdict, where=screen_where or screening.where_of(source))
    return message


def _work_for_new_message(message: Message, settings) -> None:
    if message.parent_id and _first_excluded(_ancestors(message)):
        return  # under a flagged or rejected message: kept, but nobody is asked to work on it
    project = message.project
    author_id = message.author_id
    if message.role == MessageRole.USER:
        work_item_create(
            project=project,
            kind=TaskKind.DEMONSTRATION,
            needed=settings.demonstrations_per_prompt,
            message=message,
            excluded=[author_id],
        )
        return
    work_item_create(project=project, kind=TaskKind.LABEL, needed=settings.overlap, message=message, excluded=[author_id])
    if message.source != MessageSource.ANNOTATOR and settings.weights()[TaskKind.EDIT] > 0:
        work_item_create(project=project, kind=TaskKind.EDIT, needed=1, message=message)
    if message.review_state == ReviewState.PENDING:
        work_item_create(
            project=project, kind=TaskKind.REVIEW, needed=settings.overlap, message=message, excluded=[author_id]
        )
    if message.depth + 1 <= 2 * (settings.max_depth - 1):
        work_item_create(project=project, kind=TaskKind.PROMPT, needed=1, message=message)
    candidate_sets_form(parent=message.parent)


# Every reply a model wrote (or an import brought) that has no edit item yet, outside excluded branches (an
# excluded message and everything under it).
EDIT_ITEMS = """
WITH RECURSIVE shut AS (
    SELECT id FROM annotate_message WHERE project_id = %(project)s AND excluded
    UNION SELECT c.id FROM annotate_message c JOIN shut ON c.parent_id = shut.id
)
INSERT INTO annotate_workitem (created_at, updated_at, project_id, kind, message_id, needed, done, open_slots,
                               excluded_user_ids, assignee_ids, closed_reason, priority, priority_why,
                               priority_boost, priority_hold, signals, overlap_checked, gold)
SELECT now(), now(), m.project_id, 'edit', m.id, 1, 0, 1, '{}', '{}', '', 0, '{}', 0, '', '{}', 0, false
FROM annotate_message m
WHERE m.project_id = %(project)s AND m.role = 'assistant' AND m.source <> 'annotator'
  AND m.id NOT IN (SELECT id FROM shut)
  AND NOT EXISTS (SELECT 1 FROM annotate_workitem w WHERE w.message_id = m.id AND w.kind = 'edit')
"""


def edit_items_backfill(*, project: Project) -> int:
    """Give every stored reply of a model or an import its edit item (once), when the project starts handing out
    edits or after an import that wrote such replies; return how many it made. One statement."""
    with connection.cursor() as cursor:
        cursor.execute(EDIT_ITEMS, {"project": project.id})
        return cursor.rowcount


def candidate_sets_form(*, parent: Message) -> list[CandidateSet]:
    """Group the replies under `parent` that are in no ranking set yet into sets of K.

    Sets are fixed when made: replies that arrive later form new sets.
    """
    # Lock the parent so two replies arriving at once cannot both form a set from the same pool
    # (message_exclude takes the same lock before closing the sets of a reply).
    locked = Message.objects.select_for_update().filter(pk=parent.pk).first()
    if locked.excluded:
        return []
    project = parent.project
    k = project.settings.replies_per_ranking
    used = set()
    for ids in CandidateSet.objects.filter(parent=parent, kind=CandidateSetKind.RANKING).values_list(
        "message_ids", flat=True
    ):
        used.update(ids)
    free = list(
        Message.objects.filter(parent=parent, role=MessageRole.ASSISTANT, excluded=False)
        .exclude(pk__in=used)
        .order_by("created_at", "id")
        .values_list("id", "author_id")
    )
    made = []
    while len(free) >= k:
        chosen, free = free[:k], free[k:]
        made.append(
            _candidate_set_with_item(
                project=project,
                parent=parent,
                kind=CandidateSetKind.RANKING,
                message_ids=[message_id for message_id, _ in chosen],
                authors=[author for _, author in chosen],
            )
        )
    return made


def _candidate_set_with_item(*, project, parent, kind, message_ids, authors, origin=None) -> CandidateSet:
    candidate_set = CandidateSet.objects.create(
        project=project, parent=parent, kind=kind, message_ids=message_ids, origin=origin or {}
    )
    work_item_create(
        project=project,
        kind=TaskKind.RANKING if kind == CandidateSetKind.RANKING else TaskKind.COMPARE,
        needed=project.settings.overlap,
        candidate_set=candidate_set,
        excluded=authors,
    )
    return candidate_set


@transaction.atomic
def candidate_set_create(*, project: Project, message_ids: list[int], kind: str, origin: dict | None = None) -> CandidateSet:
    """Make a ranking (2-9 replies) or blind comparison (exactly 2) item from chosen replies."""
    if kind not in CandidateSetKind.values:
        raise ValidationError({"kind": f"kind must be one of {', '.join(CandidateSetKind.values)}"})
    ids = [int(message_id) for message_id in message_ids]
    if len(set(ids)) != len(ids):
        raise ValidationError({"message_ids": "a reply appears twice"})
    if kind == CandidateSetKind.COMPARE and len(ids) != 2:
        raise ValidationError({"message_ids": "a comparison is between exactly 2 replies"})
    if not 2 <= len(ids) <= 9:
        raise ValidationError({"message_ids": "a ranking is of 2 to 9 replies"})
    replies = {m.id: m for m in Message.objects.filter(project=project, pk__in=ids)}
    missing = [message_id for message_id in ids if message_id not in replies]
    if missing:
        raise ValidationError({"message_ids": f"no such message in this project: {missing}"})
    parents = {m.parent_id for m in replies.values()}
    if len(parents) != 1 or any(m.role != MessageRole.ASSISTANT for m in replies.values()):
        raise ValidationError({"message_ids": "all must be assistant replies to the same user message"})
    if any(m.excluded for m in replies.values()):
        raise ValidationError({"message_ids": "an excluded (flagged or rejected) reply cannot be judged"})
    parent = Message.objects.get(pk=parents.pop())
    return _candidate_set_with_item(
        project=project,
        parent=parent,
        kind=kind,
        message_ids=ids,
        authors=[replies[message_id].author_id for message_id in ids],
        origin=origin,
    )


def _tree(root_id: int) -> dict[int, tuple]:
    """Return {id: (parent_id, excluded)} for every message of one tree."""
    return {
        message_id: (parent_id, excluded)
        for message_id, parent_id, excluded in Message.objects.filter(root_id=root_id).values_list(
            "id", "parent_id", "excluded"
        )
    }


def _subtree_ids(message: Message) -> list[int]:
    tree = _tree(message.root_id)
    children = defaultdict(list)
    for message_id, (parent_id, _) in tree.items():
        children[parent_id].append(message_id)
    found, stack = [], [message.id]
    while stack:
        node = stack.pop()
        found.append(node)
        stack.extend(children[node])
    return found


def _ancestors(message: Message, tree: dict | None = None) -> list[int]:
    """Return the ids from the message up to its root, the message included."""
    tree = tree if tree is not None else _tree(message.root_id)
    path, node = [], message.id
    while node is not None:
        path.append(node)
        node = tree.get(node, (None, False))[0]
    return path


def _first_excluded(message_ids) -> int | None:
    return Message.objects.filter(pk__in=list(message_ids), excluded=True).values_list("id", flat=True).first()


def _items_about(message_ids: list[int]):
    """Work items about any of these messages: on them, on sets that hold them or sets under them."""
    return WorkItem.objects.filter(
        Q(message_id__in=message_ids)
        | Q(candidate_set__parent_id__in=message_ids)
        | Q(candidate_set__message_ids__overlap=message_ids)
    )


def message_exclude(*, message: Message, reason: str) -> None:
    """Leave a message (and what grew under it) out of exports and stop handing out work about it."""
    # Parent first, then the message: the order candidate_sets_form locks in.
    if message.parent_id:
        Message.objects.select_for_update().filter(pk=message.parent_id).first()
    locked = Message.objects.select_for_update().get(pk=message.pk)
    if locked.excluded:
        return
    reason = reason[:200]
    Message.objects.filter(pk=message.pk).update(excluded=True, excluded_reason=reason)
    message.excluded, message.excluded_reason = True, reason
    # Leases already out stay valid (their submits count); no new ones are given, and slots
    # that come back from skips or expiries stay closed.
    _items_about(_subtree_ids(message)).filter(closed_reason="").update(
        open_slots=0, closed_reason=f"message {message.id} {reason}"[:200]
    )


@transaction.atomic
def message_clear(*, message: Message) -> Message:
    """An admin's decision: the message is fine after all; it counts again in exports, and the
    work it had closed reopens (unless another excluded message still blocks it)."""
    message = Message.objects.select_for_update().get(pk=message.pk)
    message.excluded = False
    message.excluded_reason = ""
    message.cleared_at = timezone.now()
    if message.review_state == ReviewState.REJECTED:
        message.review_state = ReviewState.ACCEPTED
    message.save(update_fields=["excluded", "excluded_reason", "cleared_at", "review_state", "updated_at"])
    tree = _tree(message.root_id)
    closed = WorkItem.objects.select_for_update(of=("self",)).filter(closed_reason__startswith=f"message {message.id} ")
    for item in closed.select_related("candidate_set"):
        about = [item.message_id] if item.message_id else [item.candidate_set.parent_id, *item.candidate_set.message_ids]
        blocking = [
            ancestor
            for message_id in about
            for ancestor in _ancestors(Message(id=message_id), tree)
            if tree.get(ancestor, (None, False))[1]
        ]
        if blocking:
            item.closed_reason = f"message {blocking[0]} still excluded"
        else:
            # Every lease not yet settled (even one past its expiry, which the reclaim will
            # hand back later) still holds its slot.
            held = item.tasks.filter(state=TaskState.LEASED).count()
            item.open_slots = max(0, item.needed - item.done - held)
            item.closed_reason = ""
        item.save(update_fields=["open_slots", "closed_reason", "updated_at"])
    return message


def work_item_finish_one(item: WorkItem) -> None:
    """Count one submitted judgement on an item whose slot was leased."""
    WorkItem.objects.filter(pk=item.pk).update(done=F("done") + 1, updated_at=timezone.now())
