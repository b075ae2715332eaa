from django.conf import settings
from django.db import models
from django.utils import timezone

from annotate.models import Project
from platform_common.jobs import Job, JobStatus
from platform_common.models import TimeStamped
from simple_history.models import HistoricalRecords


class SnapshotKind(models.TextChoices):
    SFT = "sft", "SFT conversations"
    PREFERENCE = "preference", "Preference pairs"
    UNPAIRED = "unpaired", "Unpaired judgements"
    # The same demonstrations as SFT, split into the conversation before the reply and the reply.
    SFT_COMPLETION = "sft_completion", "SFT prompt-completion pairs"
    # The same pairs as preference, each side the whole conversation (TRL's implicit prompt).
    IMPLICIT_PAIRS = "implicit_pairs", "Preference pairs, implicit prompt"
    PROMPTS = "prompts", "Prompts for RL"
    PRETRAINING = "pretraining", "Pretraining text"
    # Flagged and unflagged messages as {"text", "label"} rows: what the screen classifier trains on.
    FLAGS = "flags", "Flags for the screen classifier"


class DatasetSnapshot(TimeStamped):
    """An immutable, versioned export of a project's data in one of TRL's formats.

    Its files live under the snapshot store; `files` lists each with its split, row count,
    size and sha256, so a training run can check it reads exactly what was exported.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="snapshots")
    kind = models.CharField(max_length=16, choices=SnapshotKind.choices)
    version = models.PositiveIntegerField()
    filters = models.JSONField(default=dict, blank=True)
    rows = models.JSONField(default=dict, help_text="rows per split")
    files = models.JSONField(default=list)
    folder = models.CharField(max_length=300, help_text="relative to the snapshot store")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "kind", "version"], name="snapshot_version_once"),
        ]
        ordering = ["project", "kind", "-version"]

    def __str__(self):
        return f"{self.project} {self.kind} v{self.version}"


class ModelKind(models.TextChoices):
    BASE = "base", "Base model"
    SFT = "sft", "SFT model"
    REWARD = "reward", "Reward model"
    POLICY = "policy", "RL policy"
    # A sequence classifier trained on the project's flags, that the content screen may use.
    SCREEN = "screen", "Screen classifier"


class ModelVersion(TimeStamped):
    """A registered model: a complete directory under the model store, never a partial one.

    It is created only after its training stage has written the whole directory, so a failed
    or cancelled run leaves no version behind.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    kind = models.CharField(max_length=16, choices=ModelKind.choices)
    version = models.PositiveIntegerField()
    folder = models.CharField(max_length=300, help_text="relative to the model store")
    run = models.ForeignKey("TrainingRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="versions")
    # What it was trained from (base for SFT, SFT for reward and policy) and, for a policy, with.
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    reward_model = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    snapshot = models.ForeignKey(DatasetSnapshot, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    algorithm = models.CharField(max_length=16, blank=True, help_text="for a policy, the stage that trained it")
    metrics = models.JSONField(default=dict, blank=True, help_text="evaluation on the held-out split")
    config = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "kind", "version"], name="model_version_once"),
        ]
        ordering = ["project", "kind", "-version"]

    @property
    def name(self) -> str:
        return f"{self.kind}-v{self.version}"

    def __str__(self):
        return f"{self.project} {self.name}"


# A round's states are every job's (platform_common.jobs): the name stays for the code that says "round".
RunStatus = JobStatus


FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


def recipe_choices():
    """A round's recipes, from the stage registry (training/trainers/stages.py): a recipe registered
    there needs no migration."""
    from training.trainers.stages import RECIPES, UNAVAILABLE

    return [(r.name, r.label) for r in RECIPES.values()] + [(name, name) for name in UNAVAILABLE]


def stage_choices():
    from training.trainers.stages import STAGES

    return [(s.name, s.label) for s in STAGES.values()]


class TrainingRun(TimeStamped):
    """One training round: its stages run in order in a worker, each writing a model version."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_runs")
    number = models.PositiveIntegerField(help_text="the project's round number")
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    preset = models.CharField(max_length=16, default="tiny")
    # The round's recipe (the name stays from when a round chose only its RL algorithm).
    algorithm = models.CharField(max_length=16, choices=recipe_choices)
    # Per stage overrides of the preset, as given (validated when the run was created).
    config = models.JSONField(default=dict, blank=True)
    base_source = models.CharField(max_length=500, blank=True, help_text="a local model directory; empty: from scratch")
    processes = models.PositiveSmallIntegerField(default=1, help_text="processes per stage (accelerate launch)")
    seed = models.IntegerField(default=0)
    error = models.TextField(blank=True)
    # False once the worker refused the round for its data or settings: resuming it would be refused the same way
    # (retry it with other settings, or once there is more data).
    resumable = models.BooleanField(default=True)
    cancel_requested = models.BooleanField(default=False)
    # Written by the worker every few seconds; a running run whose heartbeat stops is lost.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="host and pid of the worker running it")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="run_number_once"),
            models.CheckConstraint(condition=models.Q(status__in=RunStatus.values), name="run_status_valid"),
        ]
        ordering = ["project", "-number"]

    def __str__(self):
        return f"{self.project} round {self.number}"

    def is_finished(self) -> bool:
        return self.status in FINISHED


class StageStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    # The round failed before it came to this stage; resuming the round runs it.
    NOT_RUN = "not_run", "Not run"


class RunStage(TimeStamped):
    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="stages")
    order = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=16, choices=stage_choices)
    status = models.CharField(max_length=16, choices=StageStatus.choices, default=StageStatus.PENDING)
    snapshot = models.ForeignKey(DatasetSnapshot, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    step = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Set when a resumed stage should continue from its last checkpoint.
    resume = models.BooleanField(default=False)
    last_checkpoint = models.CharField(max_length=500, blank=True)
    model_version = models.OneToOneField(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="stage")
    metrics = models.JSONField(default=dict, blank=True, help_text="latest training metrics")
    error = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "order"], name="stage_order_once")]
        ordering = ["run", "order"]

    def __str__(self):
        return f"{self.run} {self.name}"


class MetricPoint(models.Model):
    """Training metrics at one step of a stage, as the trainer reported them."""

    stage = models.ForeignKey(RunStage, on_delete=models.CASCADE, related_name="points")
    step = models.PositiveIntegerField()
    values = models.JSONField()
    # When the trainer reported it (its own clock), not when the worker wrote it down.
    reported_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["stage", "step"])]
        ordering = ["stage", "step", "id"]


class Backend(models.TextChoices):
    TRANSFORMERS = "transformers", "Local transformers"
    OPENAI = "openai", "OpenAI-compatible server"


class Deployment(TimeStamped):
    """A model version serving a project: the source of its candidate replies and of chat.

    Several active deployments share the K replies of each ranking, so rankings compare versions.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="deployments")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="deployments")
    backend = models.CharField(max_length=16, choices=Backend.choices, default=Backend.TRANSFORMERS)
    url = models.CharField(max_length=500, blank=True, help_text="the OpenAI-compatible server (openai backend)")
    served_model = models.CharField(max_length=300, blank=True, help_text="the model's name at that server")
    sampling = models.JSONField(default=dict, help_text="temperature, top_p, max_new_tokens, seed")
    share = models.PositiveSmallIntegerField(default=1, help_text="weight in each ranking's K replies")
    is_active = models.BooleanField(default=True)
    deployed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    ended_at = models.DateTimeField(null=True, blank=True)
    # The project's audit log (annotate.selectors.audit) shows who deployed, changed and ended what.
    history = HistoricalRecords()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "model_version"], condition=models.Q(is_active=True), name="deployment_active_once"
            ),
        ]
        ordering = ["project", "-created_at"]

    def __str__(self):
        return f"{self.model_version} ({self.backend})"


class GenerationKind(models.TextChoices):
    CANDIDATES = "candidates", "Candidates for ranking"
    ARENA = "arena", "Arena comparisons"


class GenerationJob(Job):
    """One batch of generation: replies for prompts that need rankings, or arena pairs."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="generation_jobs")
    kind = models.CharField(max_length=16, choices=GenerationKind.choices, default=GenerationKind.CANDIDATES)
    max_prompts = models.PositiveIntegerField(default=100)
    # Arena: the two versions to compare.
    versions = models.ManyToManyField(ModelVersion, blank=True, related_name="+")
    prompts_done = models.PositiveIntegerField(default=0)
    replies_written = models.PositiveIntegerField(default=0)
    # Replies the content screen blocked: not written, their findings kept (where=generation) for admins.
    replies_screened = models.PositiveIntegerField(default=0)
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["project", "-created_at"]


class ExportJob(Job):
    """One export of a snapshot in a worker, as an admin asked for it: what was asked, and the snapshot it made
    or why it failed (a big project's export takes minutes; until it ends, this row is all there is to show)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="export_jobs")
    kind = models.CharField(max_length=16, choices=SnapshotKind.choices)
    # The export's other settings as given (demonstrations, filters, parquet), checked when it was asked for.
    options = models.JSONField(default=dict, blank=True)
    snapshot = models.ForeignKey(DatasetSnapshot, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["project", "-created_at", "-id"]


class GeneratedReply(models.Model):
    """Which model version wrote a reply in a conversation tree, with which settings."""

    message = models.OneToOneField("annotate.Message", on_delete=models.CASCADE, related_name="generated")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="replies")
    deployment = models.ForeignKey(Deployment, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    job = models.ForeignKey(GenerationJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="replies")
    sampling = models.JSONField(default=dict)
    backend = models.JSONField(default=dict)


BASE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


class BaseModel(TimeStamped):
    """A pretrained base adopted once per installation, which any project's round may start from.

    `folder` is a complete Hugging Face model directory under one of settings.BASE_MODEL_ROOTS;
    `facts` records what it is and where it came from (architecture, parameters, context, dtype,
    source file or package, quantisation of a converted GGUF). A file is registered once, whatever
    the name: `source_sha256` is unique where set.
    """

    name = models.CharField(max_length=100, unique=True, help_text="letters, digits, . _ -; a round names it")
    folder = models.CharField(max_length=500, help_text="absolute path, under one of BASE_MODEL_ROOTS")
    facts = models.JSONField(default=dict)
    source_sha256 = models.CharField(max_length=64, blank=True, help_text="of the file it was converted from")
    licence = models.TextField(blank=True, help_text="the licence text shipped with it, if any")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(name__regex=BASE_NAME_PATTERN), name="base_model_name_valid"),
            models.UniqueConstraint(fields=["source_sha256"], condition=~models.Q(source_sha256=""),
                                    name="base_model_file_once"),
        ]
        ordering = ["name"]

    def __str__(self):
        return self.name


class BaseConversion(TimeStamped):
    """One conversion of a GGUF file into a base model, as a worker runs it (see services/bases.py).

    `progress` lists the converter's steps as they came, each with the seconds since the start;
    the conversion is cancelled by setting `cancel_requested`, and a running one whose heartbeat
    stops is failed by the reaper (worker lost), as a training round is.
    """

    name = models.CharField(max_length=100, help_text="the base model's name once registered")
    gguf_path = models.CharField(max_length=500, help_text="the real path of the .gguf file")
    package = models.CharField(max_length=200, blank=True, help_text="the installed package that ships it, if named so")
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    progress = models.JSONField(default=list, blank=True, help_text='[{"seconds": s, "step": text}, ...]')
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="host and pid of the worker running it")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    base = models.ForeignKey(BaseModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="conversions")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"conversion {self.id} of {self.name}"

    def is_finished(self) -> bool:
        return self.status in FINISHED


class ScreenJob(Job):
    """Screening what a project has stored (its messages and corpus texts), when its screen is switched on or an
    admin asks: the findings it records are the same as screening at entry would have."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="screen_jobs")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    texts_done = models.PositiveIntegerField(default=0)
    texts_total = models.PositiveIntegerField(default=0)
    counts = models.JSONField(default=dict, blank=True, help_text="findings recorded, per kind")

    class Meta:
        ordering = ["project", "-created_at", "-id"]


class ScreenClassifier(TimeStamped):
    """The screen classifier version an admin chose for a project's screen, and the probability above which it
    calls a text harmful."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="screen_classifier")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    threshold = models.FloatField(default=0.5)
    chosen_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    history = HistoricalRecords()

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(threshold__gt=0, threshold__lt=1),
                                              name="screen_classifier_threshold_0_to_1")]
