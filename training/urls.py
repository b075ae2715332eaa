from django.urls import path

from training import views

app_name = "training"

urlpatterns = [
    path("projects/<int:project_id>/exports/", views.exports_page, name="exports"),
    path(
        "projects/<int:project_id>/exports/<int:snapshot_id>/files/<str:name>",
        views.export_file,
        name="export-file",
    ),
    path("projects/<int:project_id>/training/", views.runs_page, name="runs"),
    path("runs/<int:run_id>/", views.run_page, name="run"),
    path("runs/<int:run_id>/points.json", views.run_points, name="run-points"),
    path("runs/<int:run_id>/cancel/", views.run_cancel, name="run-cancel"),
    path("runs/<int:run_id>/resume/", views.run_resume, name="run-resume"),
    path("runs/<int:run_id>/retry/", views.run_retry, name="run-retry"),
    path("projects/<int:project_id>/models/", views.models_page, name="models"),
    path("projects/<int:project_id>/models/deploy/", views.deployment_create, name="deployment-create"),
    path("projects/<int:project_id>/models/undeploy/", views.deployment_end, name="deployment-end"),
    path("projects/<int:project_id>/models/rollback/", views.deployment_rollback, name="deployment-rollback"),
    path("projects/<int:project_id>/models/generate/", views.generation_create, name="generation-create"),
    path("projects/<int:project_id>/models/arena/", views.arena_create, name="arena-create"),
    path("projects/<int:project_id>/models/retry/", views.generation_retry, name="generation-retry"),
    path("projects/<int:project_id>/models/<int:version_id>/", views.model_version_page, name="model-version"),
    path("projects/<int:project_id>/models/<int:version_id>/adapter.zip", views.model_adapter, name="model-adapter"),
    path("projects/<int:project_id>/chat/", views.chat_page, name="chat"),
    path("projects/<int:project_id>/screen/", views.screen_page, name="screen"),
    path("projects/<int:project_id>/screen/backfill/", views.screen_backfill, name="screen-backfill"),
    path("projects/<int:project_id>/screen/classifier/", views.screen_classifier, name="screen-classifier"),
    path("projects/<int:project_id>/screen/jobs/<int:job_id>/cancel/", views.screen_job_cancel, name="screen-job-cancel"),
    path("base-models/", views.base_models_page, name="base-models"),
    path("base-models/conversions/<int:conversion_id>/cancel/", views.base_conversion_cancel,
         name="base-conversion-cancel"),
]
