from django.conf import settings
from django.db import models

from annotate.models import Project, TimeStamped


class SnapshotKind(models.TextChoices):
    SFT = "sft", "SFT conversations"
    PREFERENCE = "preference", "Preference pairs"
    PROMPTS = "prompts", "Prompts for RL"
    PRETRAINING = "pretraining", "Pretraining text"


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
