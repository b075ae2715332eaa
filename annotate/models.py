import secrets

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.utils import timezone
from platform_common.jobs import Job
from platform_common.models import TimeStamped
from simple_history.models import HistoricalRecords


class Role(models.TextChoices):
    ANNOTATOR = "annotator", "Annotator"
    REVIEWER = "reviewer", "Reviewer"
    ADMIN = "admin", "Admin"


# A reviewer may do everything an annotator may, an admin everything a reviewer may.
ROLE_RANK = {Role.ANNOTATOR: 1, Role.REVIEWER: 2, Role.ADMIN: 3}


class Project(TimeStamped):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    guidelines = models.TextField(blank=True)
    # Every judgement records the version it was made under; bumped when guidelines change.
    guideline_version = models.PositiveIntegerField(default=1)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The audit log (annotate.selectors.audit): who changed what, before and after.
    history = HistoricalRecords()

    class Meta:
        ordering = ["name", "id"]

    def __str__(self):
        return self.name


class Membership(TimeStamped):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)
    is_active = models.BooleanField(default=True)
    history = HistoricalRecords()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="membership_once_per_project"),
            models.CheckConstraint(condition=Q(role__in=Role.values), name="membership_role_valid"),
        ]

    def __str__(self):
        return f"{self.user} in {self.project} as {self.role}"

    def has_role(self, role: str) -> bool:
        return self.is_active and ROLE_RANK[self.role] >= ROLE_RANK[role]


def _invite_token() -> str:
    return secrets.token_urlsafe(24)


def plausible_invite_token(token: str) -> bool:
    """Tokens are URL-safe base64; anything else (a NUL byte, say) cannot match one."""
    return bool(token) and len(token) <= 64 and all(c.isalnum() or c in "-_" for c in token)


class Invite(TimeStamped):
    """A single-use link that makes whoever opens it a member of a project with a role."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="invites")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)
    token = models.CharField(max_length=64, unique=True, default=_invite_token)
    note = models.CharField(max_length=200, blank=True, help_text="Who it is for")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    expires_at = models.DateTimeField()
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Not the token: the log is read by every admin of the project, the link is the creator's to hand out.
    history = HistoricalRecords(excluded_fields=["token"])

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(role__in=Role.values), name="invite_role_valid"),
        ]

    def __str__(self):
        return f"invite to {self.project} as {self.role}"


# ---------------------------------------------------------------------------------------------
# Conversation trees and the work on them


class TaskKind(models.TextChoices):
    PROMPT = "prompt", "Write a prompt"
    DEMONSTRATION = "demonstration", "Write a demonstration"
    RANKING = "ranking", "Rank replies"
    COMPARE = "compare", "Compare two replies"
    LABEL = "label", "Label a message"
    REVIEW = "review", "Review a demonstration"
    EDIT = "edit", "Edit a reply"


# Editing replies is off until an admin gives it a weight: it asks for a model's replies (or imported ones) and
# each becomes an item, so a project that never wanted edits is not given thousands of them.
DEFAULT_TASK_MIX = {kind: 0 if kind == TaskKind.EDIT else 1 for kind in TaskKind.values}


class ProjectSettings(models.Model):
    """How a project hands out work. One row per project, made with it."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="settings")
    replies_per_ranking = models.PositiveSmallIntegerField(default=4, help_text="K, from 2 to 9")
    overlap = models.PositiveSmallIntegerField(
        default=2, help_text="distinct annotators per ranking, comparison, label and review item"
    )
    demonstrations_per_prompt = models.PositiveSmallIntegerField(default=1)
    max_depth = models.PositiveSmallIntegerField(default=3, help_text="deepest user turn of a chat")
    lease_seconds = models.PositiveIntegerField(default=900)
    # Labelled 1-5 scales a label task asks for beside quality: [{"key": "helpful", "label": "Helpful", "help": ...}]
    # (annotate.services.accounts checks them; at most RUBRICS_MAX).
    rubrics = models.JSONField(default=list, blank=True)
    # How long after submitting it an annotator may change or withdraw their own ranking or label (0: never);
    # admins may withdraw anyone's at any time.
    correction_minutes = models.PositiveIntegerField(default=60)
    flag_threshold = models.PositiveSmallIntegerField(
        default=1, help_text="annotators who must flag a message before it is excluded"
    )
    task_mix = models.JSONField(default=dict, help_text="weight per task kind; 0 turns a kind off")
    # Active learning (annotate.services.priority): what puts an item first in the queue.
    priority_weights = models.JSONField(
        default=dict, blank=True, help_text="weight per priority source (uncertainty, disagreement, coverage); 0 turns one off"
    )
    adaptive_overlap_cap = models.PositiveSmallIntegerField(
        default=0, help_text="0: off; else the most annotators a disputed ranking or comparison may get"
    )
    disputed_below = models.FloatField(
        default=0.5, help_text="Kendall's W under which a judged set is disputed (earns one more annotator)"
    )
    # Quality control (annotate.services.gold): gold items mixed into the queue, pausing, qualification.
    gold_rate = models.FloatField(default=0.0, help_text="share of an annotator's tasks that are gold items; 0 off")
    gold_pause_below = models.FloatField(
        default=0.5, help_text="gold accuracy under which an annotator's new work pauses; 0 never pauses"
    )
    gold_min_answers = models.PositiveSmallIntegerField(
        default=10, help_text="gold answers an annotator gives before their accuracy can pause them"
    )
    qualification_tasks = models.PositiveSmallIntegerField(
        default=0, help_text="gold tasks a new annotator does before real work; 0 none"
    )
    qualification_pass_mark = models.FloatField(
        default=0.8, help_text="share of the qualification tasks to get right to pass"
    )
    history = HistoricalRecords()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(replies_per_ranking__gte=2, replies_per_ranking__lte=9), name="settings_k_2_to_9"
            ),
            models.CheckConstraint(condition=Q(overlap__gte=1, overlap__lte=20), name="settings_overlap_1_to_20"),
            models.CheckConstraint(condition=Q(lease_seconds__gte=30), name="settings_lease_at_least_30s"),
            models.CheckConstraint(condition=Q(flag_threshold__gte=1), name="settings_flag_threshold_positive"),
            models.CheckConstraint(condition=Q(max_depth__gte=1), name="settings_max_depth_positive"),
            models.CheckConstraint(
                condition=Q(demonstrations_per_prompt__gte=1), name="settings_demonstrations_positive"
            ),
            models.CheckConstraint(
                condition=Q(adaptive_overlap_cap__lte=20), name="settings_adaptive_overlap_cap_at_most_20"
            ),
            models.CheckConstraint(
                condition=Q(disputed_below__gte=0, disputed_below__lte=1), name="settings_disputed_below_0_to_1"
            ),
            models.CheckConstraint(condition=Q(gold_rate__gte=0, gold_rate__lte=1), name="settings_gold_rate_0_to_1"),
            models.CheckConstraint(
                condition=Q(gold_pause_below__gte=0, gold_pause_below__lte=1), name="settings_gold_pause_below_0_to_1"
            ),
            models.CheckConstraint(condition=Q(gold_min_answers__gte=1), name="settings_gold_min_answers_positive"),
            models.CheckConstraint(
                condition=Q(qualification_pass_mark__gte=0, qualification_pass_mark__lte=1),
                name="settings_qualification_pass_mark_0_to_1",
            ),
        ]

    def weights(self) -> dict[str, float]:
        mix = {**DEFAULT_TASK_MIX, **(self.task_mix or {})}
        return {kind: float(mix.get(kind, 0)) for kind in TaskKind.values}

    def source_weights(self) -> dict[str, float]:
        """Return the weight of each priority source, the defaults filled in."""
        given = {**DEFAULT_PRIORITY_WEIGHTS, **(self.priority_weights or {})}
        return {source: float(given[source]) for source in PRIORITY_SOURCES}


# What a work item's priority is made of (annotate.services.priority), each in [0, 1] before its weight.
PRIORITY_SOURCES = ("uncertainty", "disagreement", "coverage")
DEFAULT_PRIORITY_WEIGHTS = {source: 1.0 for source in PRIORITY_SOURCES}


class MessageRole(models.TextChoices):
    USER = "user", "User"
    ASSISTANT = "assistant", "Assistant"


class MessageSource(models.TextChoices):
    ANNOTATOR = "annotator", "Annotator"
    IMPORT = "import", "Import"
    MODEL = "model", "Model"


class ReviewState(models.TextChoices):
    NOT_NEEDED = "not_needed", "Not reviewed"
    PENDING = "pending", "Waiting for review"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"


class Split(models.TextChoices):
    TRAIN = "train", "Train"
    TEST = "test", "Test (held out)"


# A root prompt's or document's split, remembered at its first export (training.exporters.rows), so a
# prompt held out once stays held out whatever decides the split of new ones; "" until then, and
# split_key with it.
SPLIT_VALID = Q(split="") | Q(split__in=Split.values)


class Message(TimeStamped):
    """One turn of a conversation tree. A root is a user prompt; a chat is a path from a root."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="messages")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    # The root of the tree (itself for a root), so a whole tree loads with one query.
    root = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    depth = models.PositiveSmallIntegerField(default=0)
    role = models.CharField(max_length=16, choices=MessageRole.choices)
    text = models.TextField()
    source = models.CharField(max_length=16, choices=MessageSource.choices)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    # For imports: where it came from (file, source id, pseudonymous source user); for model
    # replies, training records the model version and sampling settings in its own table.
    origin = models.JSONField(default=dict, blank=True)
    # What a source said about the turn that the tree has no column for: a system message (`system`,
    # on the turn after it, the root for a chat's opening one: the tree's turns are user and assistant
    # only; SFT exports put it back before that turn), Cornell's line, character and movie ids, a
    # CSV's extra columns.
    metadata = models.JSONField(default=dict, blank=True)
    guideline_version = models.PositiveIntegerField(null=True, blank=True)
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)
    review_state = models.CharField(max_length=16, choices=ReviewState.choices, default=ReviewState.NOT_NEEDED)
    # Exclusion, one state machine under one name: a message is *included* until flags reach the
    # project's threshold or a reviewer rejects it (flags_apply, review_submit -> message_exclude);
    # it is then *excluded*: left out of every export, its work closed, `excluded_reason` saying why.
    # Only an admin ends an exclusion (message_clear): the message is included again and
    # `cleared_at` remembers when, so flags given before then no longer count. "Flagged" on the
    # pages is the admins' list of excluded messages, whatever excluded them.
    excluded = models.BooleanField(default=False)
    excluded_reason = models.CharField(max_length=200, blank=True)
    cleared_at = models.DateTimeField(null=True, blank=True)
    split = models.CharField(max_length=8, choices=Split.choices, blank=True)
    # The digest of the normalised text its split was decided by, stored with the split so that an export
    # reads 16 bytes per remembered row, not its text.
    split_key = models.BinaryField(max_length=16, null=True, blank=True, editable=False)

    class Meta:
        indexes = [
            models.Index(fields=["project", "role", "created_at"]),
            models.Index(fields=["root"]),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(role__in=MessageRole.values), name="message_role_valid"),
            models.CheckConstraint(
                condition=Q(parent__isnull=False) | Q(role=MessageRole.USER), name="message_root_is_user"
            ),
            models.CheckConstraint(condition=SPLIT_VALID, name="message_split_valid"),
        ]

    def __str__(self):
        return f"{self.role} #{self.pk}: {self.text[:40]}"


class CandidateSetKind(models.TextChoices):
    RANKING = "ranking", "Ranking"
    COMPARE = "compare", "Blind A/B comparison"


class CandidateSet(TimeStamped):
    """The fixed replies (2 to 9) to one user message that a ranking or comparison is about."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="candidate_sets")
    parent = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="candidate_sets")
    kind = models.CharField(max_length=16, choices=CandidateSetKind.choices)
    # Ordered; for a comparison, [A, B] as shown.
    message_ids = ArrayField(models.BigIntegerField())
    origin = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(message_ids__len__gte=2, message_ids__len__lte=9), name="candidate_set_2_to_9"
            ),
            models.CheckConstraint(
                condition=~Q(kind=CandidateSetKind.COMPARE) | Q(message_ids__len=2), name="compare_set_has_two"
            ),
        ]


class PriorityHold(models.TextChoices):
    NONE = "", "Computed"
    PINNED = "pinned", "Pinned first by an admin"
    FROZEN = "frozen", "Frozen by an admin"


class WorkItem(TimeStamped):
    """Something that needs `needed` distinct annotators: the unit the queue hands out.

    `open_slots` is needed minus submitted minus live leases, kept on the row itself so that
    the locking query re-checks it after waiting for another transaction (Postgres re-evaluates
    a locked row's own columns, not subqueries over other tables).

    The queue hands out the highest `priority` first, oldest first among equals. It is computed
    (annotate.services.priority) from the sources in `priority_why`, unless an admin pinned or
    froze it (`priority_hold`); `signals` holds what the training side measured (the reward
    model's uncertainty, coverage of model versions), which annotate cannot compute itself.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="work_items")
    kind = models.CharField(max_length=16, choices=TaskKind.choices)
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    candidate_set = models.ForeignKey(
        CandidateSet, null=True, blank=True, on_delete=models.CASCADE, related_name="work_items"
    )
    needed = models.PositiveSmallIntegerField()
    done = models.PositiveSmallIntegerField(default=0)
    open_slots = models.SmallIntegerField()
    # Who may never get it: the authors of what it judges.
    excluded_user_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    # Who alone may get it, when an admin assigned it to named annotators (empty: anyone).
    assignee_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    closed_reason = models.CharField(max_length=200, blank=True)
    priority = models.FloatField(default=0.0)
    priority_why = models.JSONField(default=dict, blank=True, help_text="each source's value, weight and points")
    priority_boost = models.FloatField(default=0.0, help_text="added by an admin to the computed priority")
    priority_hold = models.CharField(max_length=16, choices=PriorityHold.choices, default=PriorityHold.NONE, blank=True)
    signals = models.JSONField(default=dict, blank=True, help_text="measured by training: reward-model uncertainty...")
    # Judgements counted when adaptive overlap last looked at this item's agreement: it looks
    # again only after another judgement came in.
    overlap_checked = models.PositiveSmallIntegerField(default=0)
    # A gold item (its known answer in GoldAnswer): on the row itself, so the one lease statement
    # tells gold from real work without a join. Gold needs every annotator once: GOLD_NEEDED slots.
    gold = models.BooleanField(default=False)

    class Meta:
        indexes = [
            # The lease's order: highest priority first, oldest first among equals.
            models.Index(
                models.F("project"), models.F("kind"), models.F("priority").desc(), models.F("created_at"),
                models.F("id"), condition=Q(open_slots__gt=0), name="workitem_open_by_priority",
            ),
            # The gold half of the lease: a project's few gold items of a kind.
            models.Index(fields=["project", "kind"], condition=Q(gold=True, open_slots__gt=0), name="workitem_gold_open"),
            # Adaptive overlap's probe: judged sets whose agreement nobody has looked at yet.
            models.Index(
                fields=["project"],
                condition=Q(done__gte=models.F("needed"), overlap_checked__lt=models.F("done")) & Q(done__gte=2),
                name="workitem_overlap_unchecked",
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(open_slots__gte=0), name="workitem_slots_not_negative"),
            models.CheckConstraint(condition=Q(done__lte=models.F("needed")), name="workitem_done_le_needed"),
            models.CheckConstraint(
                condition=Q(open_slots__lte=models.F("needed") - models.F("done")), name="workitem_slots_le_left"
            ),
            models.CheckConstraint(condition=Q(kind__in=TaskKind.values), name="workitem_kind_valid"),
            models.CheckConstraint(
                condition=Q(priority_hold__in=PriorityHold.values), name="workitem_priority_hold_valid"
            ),
        ]


# A gold item is answered by every annotator once, however many: as many slots as the column holds.
GOLD_NEEDED = 32767


class GoldSource(models.TextChoices):
    MARKED = "marked", "Marked by an admin"
    CONSENSUS = "consensus", "Promoted from the consensus"


class GoldAnswer(TimeStamped):
    """The known answer of a gold item, against which annotators' judgements of it are scored.

    By kind: ranking and compare `{"tiers": [[best ids], ...]}` or `{"all_bad": true}`; label
    `{"quality": 1-5 or null, "flags": [...]}`; review `{"accepted": true/false}`.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="gold_answers")
    item = models.OneToOneField(WorkItem, on_delete=models.CASCADE, related_name="gold_answer")
    answer = models.JSONField()
    source = models.CharField(max_length=16, choices=GoldSource.choices, default=GoldSource.MARKED)
    # How many judgements the item needed before it was gold, so that unmarking gives it back.
    needed_before = models.PositiveSmallIntegerField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    history = HistoricalRecords()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(source__in=GoldSource.values), name="goldanswer_source_valid"),
        ]


class GoldResume(TimeStamped):
    """An admin let a paused annotator work again: gold answers before it no longer count for pausing."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="gold_resumes")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    resumed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        indexes = [models.Index(fields=["project", "annotator", "created_at"])]


class TaskState(models.TextChoices):
    LEASED = "leased", "Leased"
    SUBMITTED = "submitted", "Submitted"
    EXPIRED = "expired", "Expired"
    SKIPPED = "skipped", "Skipped"
    WITHDRAWN = "withdrawn", "Withdrawn"


class SkipReason(models.TextChoices):
    """Why an annotator gave a task back: a short list (keys 1-5 on a task page), or typed words for `other`."""

    UNCLEAR = "unclear", "The task is unclear"
    EXPERTISE = "expertise", "It needs knowledge I do not have"
    UNSAFE = "unsafe", "I would rather not read or judge this"
    BROKEN = "broken", "The prompt or the replies are broken"
    OTHER = "other", "Another reason"


class Verdict(models.TextChoices):
    """A reviewer's word on a ranking or a label (annotate.services.corrections): an overruled one leaves the
    exports."""

    NONE = "", "Not reviewed"
    ACCEPTED = "accepted", "Accepted by a reviewer"
    OVERRULED = "overruled", "Overruled by a reviewer"


class Task(TimeStamped):
    """One assignment: an annotator holding (or having done) one work item, or a new prompt."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tasks")
    kind = models.CharField(max_length=16, choices=TaskKind.choices)
    # Null only for writing a new root prompt, which needs no item.
    item = models.ForeignKey(WorkItem, null=True, blank=True, on_delete=models.CASCADE, related_name="tasks")
    # No index of its own: the unique (annotator, item) index serves lookups by annotator.
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tasks", db_index=False
    )
    state = models.CharField(max_length=16, choices=TaskState.choices, default=TaskState.LEASED)
    lease_expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    submit_key = models.CharField(max_length=100, blank=True)
    guideline_version = models.PositiveIntegerField()
    # What a submit produced (message id, ranking id...), returned again to a replayed submit.
    result = models.JSONField(default=dict, blank=True)
    # A skipped task's reason (SkipReason, or empty: none given) and the annotator's own words, if any. Defaults in
    # the database: the lease statement inserts tasks in SQL of its own.
    skip_reason = models.CharField(max_length=16, choices=SkipReason.choices, blank=True, default="", db_default="")
    skip_note = models.CharField(max_length=300, blank=True, default="", db_default="")

    class Meta:
        indexes = [
            models.Index(fields=["project", "lease_expires_at"], condition=Q(state="leased"), name="task_leased"),
            models.Index(fields=["project", "finished_at"]),
        ]
        constraints = [
            # Never the same item twice to one person, whatever races happen above. Annotator
            # first: the queue's "not already mine" probe is (annotator, item), and leading with
            # the annotator keeps the planner on this index even before statistics exist.
            models.UniqueConstraint(fields=["annotator", "item"], name="task_item_once_per_annotator"),
            # One lease per annotator per project: taking a new one releases the old in the same
            # statement (annotate.services.queue), and this holds it whatever two requests race.
            models.UniqueConstraint(
                fields=["annotator", "project"], condition=Q(state="leased"), name="task_one_lease_per_annotator"
            ),
            models.CheckConstraint(condition=Q(state__in=TaskState.values), name="task_state_valid"),
            models.CheckConstraint(
                condition=Q(item__isnull=False) | Q(kind=TaskKind.PROMPT), name="task_item_except_new_prompt"
            ),
        ]

    def is_expired(self) -> bool:
        return self.state == TaskState.LEASED and self.lease_expires_at <= timezone.now()


class Ranking(TimeStamped):
    """One annotator's order of a candidate set, as tiers best first, or "all bad".

    A blind A/B vote is a ranking of a set of two: A better [[A], [B]], tie [[A, B]],
    both bad: all_bad.
    """

    candidate_set = models.ForeignKey(CandidateSet, on_delete=models.CASCADE, related_name="rankings")
    task = models.OneToOneField(Task, null=True, blank=True, on_delete=models.SET_NULL, related_name="ranking")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="rankings"
    )
    # Imported rankings: a pseudonymous identity per source user, and where they came from.
    external_annotator = models.CharField(max_length=200, blank=True)
    origin = models.JSONField(default=dict, blank=True)
    tiers = models.JSONField(default=list, help_text="[[best ids], [next ids], ...]; empty when all bad")
    all_bad = models.BooleanField(default=False)
    guideline_version = models.PositiveIntegerField(null=True, blank=True)
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)
    # A reviewer's verdict on it (Verdict), who gave it and why; database defaults, as the queue's SQL and the
    # importers write these rows themselves.
    verdict = models.CharField(max_length=16, choices=Verdict.choices, blank=True, default="", db_default="")
    verdict_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    verdict_comment = models.CharField(max_length=2000, blank=True, default="", db_default="")
    # Every change and withdrawal (annotate.services.corrections): who, when, before and after. A ranking written
    # by the queue's own SQL or an import has no record until it is first changed, which then records both.
    history = HistoricalRecords()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["candidate_set", "annotator"],
                condition=Q(annotator__isnull=False),
                name="ranking_once_per_annotator",
            ),
            models.CheckConstraint(
                condition=Q(annotator__isnull=False) | ~Q(external_annotator=""), name="ranking_has_an_author"
            ),
        ]


class Flag(models.TextChoices):
    TOXIC = "toxic", "Toxic"
    PERSONAL_DATA = "personal_data", "Personal data"
    SPAM = "spam", "Spam"
    OFF_TASK = "off_task", "Off task"


class Label(TimeStamped):
    """An annotator's quality score (1-5) and flags on one message."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="labels")
    task = models.OneToOneField(Task, null=True, blank=True, on_delete=models.SET_NULL, related_name="label")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="labels")
    quality = models.PositiveSmallIntegerField(null=True, blank=True)
    flags = ArrayField(models.CharField(max_length=32, choices=Flag.choices), default=list, blank=True)
    # Scores 1-5 on the project's rubrics, by rubric key (those the annotator gave).
    rubric_scores = models.JSONField(default=dict, blank=True)
    guideline_version = models.PositiveIntegerField(null=True, blank=True)
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)
    # A reviewer's verdict on it (Verdict), who gave it and why; database defaults, as the queue's SQL and the
    # importers write these rows themselves.
    verdict = models.CharField(max_length=16, choices=Verdict.choices, blank=True, default="", db_default="")
    verdict_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    verdict_comment = models.CharField(max_length=2000, blank=True, default="", db_default="")
    history = HistoricalRecords()  # as Ranking's

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "annotator"], name="label_once_per_annotator"),
            models.CheckConstraint(
                condition=Q(quality__isnull=True) | Q(quality__gte=1, quality__lte=5), name="label_quality_1_to_5"
            ),
        ]


class Review(TimeStamped):
    """A reviewer's verdict on a demonstration."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reviews")
    task = models.OneToOneField(Task, null=True, blank=True, on_delete=models.SET_NULL, related_name="review")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reviews")
    accepted = models.BooleanField()
    comment = models.TextField(blank=True)
    guideline_version = models.PositiveIntegerField(null=True, blank=True)
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)


class ContributorDeletion(TimeStamped):
    """One contributor's data deleted from a project (annotate.services.contributors): who, by whom, what went.

    For an imported author it is also a tombstone: later imports leave out what their pseudonym wrote, so
    importing the source again does not bring it back."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="contributor_deletions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    pseudonym = models.CharField(max_length=200, blank=True, help_text="an imported author's, as exports show it")
    counts = models.JSONField(default=dict, help_text="rows deleted, per kind")
    deleted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        indexes = [models.Index(fields=["project", "pseudonym"], condition=~Q(pseudonym=""), name="deletion_by_pseudonym")]


# ---------------------------------------------------------------------------------------------
# Imports


class ImportBatch(TimeStamped):
    """One imported file. Written only when the whole file went in (imports are all or nothing);
    its sha256 keeps the same file from going in twice."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="imports")
    format = models.CharField(max_length=32)
    filename = models.CharField(max_length=300, blank=True)
    sha256 = models.CharField(max_length=64)
    imported_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    counts = models.JSONField(default=dict)
    # The importer vouched for the file's replies: they are written accepted, as demonstrations a
    # reviewer passed (all but the losing side of an imported judgement), so SFT exports take them.
    trusted = models.BooleanField(default=False)
    # The licence the importer named for the file's content (a Hugging Face licence id); the dataset card names it
    # for this source. Empty: not said, "unknown" on the card.
    license = models.CharField(max_length=64, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "sha256"], name="import_file_once_per_project")]


class ImportJob(Job):
    """A file uploaded from the Import page or the API, imported by a worker (a 200 MB file takes minutes): what
    was asked, how far the worker has read, and the batch it wrote or why the file was refused (with its line).
    The upload waits in IMPORT_STORE until the worker has read it, and is deleted when the job ends."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_jobs")
    format = models.CharField(max_length=32)
    filename = models.CharField(max_length=300, blank=True)
    trusted = models.BooleanField(default=False)
    license = models.CharField(max_length=64, blank=True)
    sha256 = models.CharField(max_length=64)
    path = models.CharField(max_length=500, help_text="the stored upload, until the worker has read it")
    bytes_total = models.BigIntegerField(default=0)
    bytes_done = models.BigIntegerField(default=0)
    line = models.PositiveIntegerField(default=0, help_text="the line that refused the file (0: the whole file)")
    batch = models.ForeignKey(ImportBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["project", "-created_at", "-id"]


class CorpusText(TimeStamped):
    """A document of plain text for pretraining a base model from scratch."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="corpus")
    batch = models.ForeignKey(ImportBatch, on_delete=models.CASCADE, related_name="texts")
    text = models.TextField()
    split = models.CharField(max_length=8, choices=Split.choices, blank=True)
    # The digest of the normalised text its split was decided by, stored with the split so that an export
    # reads 16 bytes per remembered row, not its text.
    split_key = models.BinaryField(max_length=16, null=True, blank=True, editable=False)

    class Meta:
        constraints = [models.CheckConstraint(condition=SPLIT_VALID, name="corpustext_split_valid")]


# ---------------------------------------------------------------------------------------------
# Content screening (annotate.services.screening): personal data and harmful text, where text enters


class ScreenAction(models.TextChoices):
    ALLOW = "allow", "Record only"
    REDACT = "redact", "Redact in exports"
    HOLD = "hold", "Hold for review"
    BLOCK = "block", "Block"


# Strongest last: a text with several findings gets the strongest of their actions.
SCREEN_ACTION_ORDER = [ScreenAction.ALLOW, ScreenAction.REDACT, ScreenAction.HOLD, ScreenAction.BLOCK]


class ScreenCategory(models.TextChoices):
    PERSONAL_DATA = "personal_data", "Personal data"
    HARMFUL = "harmful", "Harmful text"


# Each kind of finding, the category it belongs to and what a project does with it by default, for text people
# wrote or imported ("human") and for text a model wrote ("model"). Personal data is redacted from exports
# (annotators still see it: they judge the text as written) and never shown from a model; harmful text people
# wrote is held for an admin, a model's is never shown. URLs are recorded only: most are not personal.
SCREEN_KINDS = {
    "email": (ScreenCategory.PERSONAL_DATA, {"human": ScreenAction.REDACT, "model": ScreenAction.BLOCK}),
    "phone": (ScreenCategory.PERSONAL_DATA, {"human": ScreenAction.REDACT, "model": ScreenAction.BLOCK}),
    "card": (ScreenCategory.PERSONAL_DATA, {"human": ScreenAction.REDACT, "model": ScreenAction.BLOCK}),
    "iban": (ScreenCategory.PERSONAL_DATA, {"human": ScreenAction.REDACT, "model": ScreenAction.BLOCK}),
    "ip": (ScreenCategory.PERSONAL_DATA, {"human": ScreenAction.REDACT, "model": ScreenAction.BLOCK}),
    "national_id": (ScreenCategory.PERSONAL_DATA, {"human": ScreenAction.REDACT, "model": ScreenAction.BLOCK}),
    "credential": (ScreenCategory.PERSONAL_DATA, {"human": ScreenAction.HOLD, "model": ScreenAction.BLOCK}),
    "url": (ScreenCategory.PERSONAL_DATA, {"human": ScreenAction.ALLOW, "model": ScreenAction.ALLOW}),
    "word": (ScreenCategory.HARMFUL, {"human": ScreenAction.HOLD, "model": ScreenAction.BLOCK}),
    "classifier": (ScreenCategory.HARMFUL, {"human": ScreenAction.HOLD, "model": ScreenAction.BLOCK}),
}
SCREEN_SOURCES = ("human", "model")


class ScreenSettings(TimeStamped):
    """What a project's screen looks for and does with each kind of finding (made on first use, off)."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="screen")
    enabled = models.BooleanField(default=False)
    # {"human": {kind: action}, "model": {kind: action}}; a kind not named takes SCREEN_KINDS' default.
    actions = models.JSONField(default=dict, blank=True)
    words = ArrayField(models.CharField(max_length=200), default=list, blank=True,
                       help_text="words and phrases that make a text harmful, matched whole and ignoring case")
    classifier_min_flags = models.PositiveIntegerField(
        default=200, help_text="flagged messages a project needs before its screen classifier trains"
    )
    history = HistoricalRecords()

    def action_for(self, kind: str, source: str) -> str:
        """Return what this project does with a finding of `kind` in text from `source` (human or model)."""
        given = (self.actions or {}).get(source, {})
        return given.get(kind) or SCREEN_KINDS[kind][1][source]

    def all_actions(self) -> dict[str, dict[str, str]]:
        return {source: {kind: self.action_for(kind, source) for kind in SCREEN_KINDS} for source in SCREEN_SOURCES}


class ScreenWhere(models.TextChoices):
    IMPORT = "import", "Import"
    SUBMIT = "submit", "Annotator's submit"
    GENERATION = "generation", "Generated candidate"
    CHAT = "chat", "Chat reply"
    BACKFILL = "backfill", "Backfill of stored text"


class ScreenFinding(TimeStamped):
    """One thing the screen found in one text: what, where in it (characters start to end), by which detector
    and version, and what was done. About a stored message or corpus text, or (a chat reply, never stored as a
    message) the text itself, kept for admins. A cleared finding stays: screening the text again finds it
    cleared (the unique span), so a false positive an admin cleared never comes back."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="screen_findings")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.CASCADE, related_name="screen_findings")
    corpus_text = models.ForeignKey(CorpusText, null=True, blank=True, on_delete=models.CASCADE,
                                    related_name="screen_findings")
    # A chat reply the screen stopped: the reply as the model wrote it (admins only), who was chatting and with
    # which version (training's ModelVersion id: annotate does not know training's tables).
    text = models.TextField(blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    model_version_id = models.BigIntegerField(null=True, blank=True)
    where = models.CharField(max_length=16, choices=ScreenWhere.choices)
    kind = models.CharField(max_length=32)
    category = models.CharField(max_length=16, choices=ScreenCategory.choices)
    start = models.PositiveIntegerField()
    end = models.PositiveIntegerField()
    detector = models.CharField(max_length=64)
    detector_version = models.CharField(max_length=64)
    score = models.FloatField(null=True, blank=True, help_text="a classifier's probability")
    action = models.CharField(max_length=16, choices=ScreenAction.choices)
    cleared_at = models.DateTimeField(null=True, blank=True)
    cleared_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        indexes = [
            models.Index(fields=["project", "kind"]),
            # Exports read a project's live redactions and holds in one query.
            models.Index(fields=["project", "action"], condition=Q(cleared_at__isnull=True), name="finding_live"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["message", "detector", "kind", "start", "end"],
                                    condition=Q(message__isnull=False), name="finding_once_per_message_span"),
            models.UniqueConstraint(fields=["corpus_text", "detector", "kind", "start", "end"],
                                    condition=Q(corpus_text__isnull=False), name="finding_once_per_corpus_span"),
            models.CheckConstraint(condition=Q(end__gt=models.F("start")), name="finding_span_not_empty"),
            models.CheckConstraint(condition=Q(action__in=ScreenAction.values), name="finding_action_valid"),
            models.CheckConstraint(condition=Q(where__in=ScreenWhere.values), name="finding_where_valid"),
        ]
