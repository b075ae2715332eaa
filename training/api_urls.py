from django.urls import path

from training import apis

urlpatterns = [
    path("projects/<int:project_id>/snapshots/", apis.SnapshotListApi.as_view(), name="api-snapshot-list"),
    path("projects/<int:project_id>/snapshots/export/", apis.SnapshotExportApi.as_view(), name="api-snapshot-export"),
    path("projects/<int:project_id>/exports/", apis.ExportJobListApi.as_view(), name="api-export-list"),
    path("projects/<int:project_id>/exports/<int:job_id>/", apis.ExportJobDetailApi.as_view(), name="api-export-detail"),
    path(
        "projects/<int:project_id>/snapshots/<int:snapshot_id>/files/<str:name>",
        apis.SnapshotFileApi.as_view(),
        name="api-snapshot-file",
    ),
    path("projects/<int:project_id>/runs/", apis.RunListApi.as_view(), name="api-run-list"),
    path("projects/<int:project_id>/runs/create/", apis.RunCreateApi.as_view(), name="api-run-create"),
    path("runs/<int:run_id>/", apis.RunDetailApi.as_view(), name="api-run-detail"),
    path("runs/<int:run_id>/metrics/", apis.RunMetricsApi.as_view(), name="api-run-metrics"),
    path("runs/<int:run_id>/cancel/", apis.RunCancelApi.as_view(), name="api-run-cancel"),
    path("runs/<int:run_id>/resume/", apis.RunResumeApi.as_view(), name="api-run-resume"),
    path("runs/<int:run_id>/retry/", apis.RunRetryApi.as_view(), name="api-run-retry"),
    path("projects/<int:project_id>/models/", apis.ModelVersionListApi.as_view(), name="api-model-list"),
    path(
        "projects/<int:project_id>/models/<int:version_id>/adapter/",
        apis.ModelAdapterApi.as_view(),
        name="api-model-adapter",
    ),
    path("base-models/", apis.BaseModelListApi.as_view(), name="api-base-model-list"),
    path("base-models/conversions/", apis.BaseConversionListApi.as_view(), name="api-base-conversion-list"),
    path("base-models/conversions/create/", apis.BaseConversionCreateApi.as_view(), name="api-base-conversion-create"),
    path(
        "base-models/conversions/<int:conversion_id>/",
        apis.BaseConversionDetailApi.as_view(),
        name="api-base-conversion-detail",
    ),
    path(
        "base-models/conversions/<int:conversion_id>/cancel/",
        apis.BaseConversionCancelApi.as_view(),
        name="api-base-conversion-cancel",
    ),
]

urlpatterns += [
    path("projects/<int:project_id>/deployments/", apis.DeploymentListApi.as_view(), name="api-deployment-list"),
    path("projects/<int:project_id>/deployments/create/", apis.DeploymentCreateApi.as_view(), name="api-deployment-create"),
    path("projects/<int:project_id>/deployments/rollback/", apis.DeploymentRollbackApi.as_view(), name="api-deployment-rollback"),
    path(
        "projects/<int:project_id>/deployments/<int:deployment_id>/end/",
        apis.DeploymentEndApi.as_view(),
        name="api-deployment-end",
    ),
    path("projects/<int:project_id>/generation/", apis.GenerationJobListApi.as_view(), name="api-generation-list"),
    path("projects/<int:project_id>/generation/create/", apis.GenerationJobCreateApi.as_view(), name="api-generation-create"),
    path(
        "projects/<int:project_id>/generation/<int:job_id>/cancel/",
        apis.GenerationJobCancelApi.as_view(),
        name="api-generation-cancel",
    ),
    path(
        "projects/<int:project_id>/generation/<int:job_id>/retry/",
        apis.GenerationJobRetryApi.as_view(),
        name="api-generation-retry",
    ),
    path("projects/<int:project_id>/leaderboard/", apis.LeaderboardApi.as_view(), name="api-leaderboard"),
    path("projects/<int:project_id>/chat/reply/", apis.ChatReplyApi.as_view(), name="api-chat-reply"),
    path("projects/<int:project_id>/chat/prompt/", apis.ChatToPromptApi.as_view(), name="api-chat-prompt"),
    path("projects/<int:project_id>/dump/", apis.ProjectDumpApi.as_view(), name="api-project-dump"),
]

urlpatterns += [
    path("projects/<int:project_id>/screen/", apis.ScreenSettingsApi.as_view(), name="api-screen"),
    path("projects/<int:project_id>/screen/backfill/", apis.ScreenBackfillApi.as_view(), name="api-screen-backfill"),
    path("projects/<int:project_id>/screen/jobs/", apis.ScreenJobListApi.as_view(), name="api-screen-job-list"),
    path("projects/<int:project_id>/screen/jobs/<int:job_id>/", apis.ScreenJobDetailApi.as_view(),
         name="api-screen-job-detail"),
    path("projects/<int:project_id>/screen/jobs/<int:job_id>/cancel/", apis.ScreenJobCancelApi.as_view(),
         name="api-screen-job-cancel"),
]
