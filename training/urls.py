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
]
