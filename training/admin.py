from django.contrib import admin

from training.models import DatasetSnapshot, ModelVersion, RunStage, TrainingRun


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
