from django.contrib import admin, messages

from training.models import DatasetSnapshot, ModelVersion, RunStage, TrainingRun
from training.services.snapshots import snapshot_verify


class RunStageInline(admin.TabularInline):
    model = RunStage
    extra = 0
    fields = ["order", "name", "status", "step", "total", "snapshot", "model_version", "error"]
    readonly_fields = fields


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ["project", "number", "status", "preset", "algorithm", "created_at", "finished_at"]
    list_filter = ["status", "algorithm"]
    readonly_fields = ["heartbeat_at", "worker", "started_at", "finished_at", "error"]
    inlines = [RunStageInline]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["project", "kind", "version", "algorithm", "run", "created_at"]
    list_filter = ["kind"]
    readonly_fields = ["folder", "metrics", "config"]


@admin.register(DatasetSnapshot)
class DatasetSnapshotAdmin(admin.ModelAdmin):
    list_display = ["project", "kind", "version", "created_at"]
    list_filter = ["kind"]
    readonly_fields = ["rows", "files", "filters", "folder"]
    actions = ["verify_files"]

    @admin.action(description="Verify the files (sha256) of the selected snapshots")
    def verify_files(self, request, queryset):
        """Check each selected snapshot's files as manage.py snapshot_verify does, one message per snapshot."""
        for snapshot in queryset.select_related("project").order_by("project_id", "kind", "version"):
            problems = snapshot_verify(snapshot=snapshot)
            if problems:
                self.message_user(request, f"{snapshot}: {'; '.join(problems)}", messages.ERROR)
            else:
                self.message_user(request, f"{snapshot}: all {len(snapshot.files)} files match", messages.SUCCESS)
