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
    path("runs/<int:run_id>/curves.svg", views.run_curves, name="run-curves"),
    path("runs/<int:run_id>/<str:action>/", views.run_action, name="run-action"),
    path("projects/<int:project_id>/models/", views.models_page, name="models"),
    path("projects/<int:project_id>/models/<str:action>/", views.model_action, name="model-action"),
    path("projects/<int:project_id>/chat/", views.chat_page, name="chat"),
]
