from django.urls import path

from training import apis

urlpatterns = [
    path("projects/<int:project_id>/snapshots/", apis.SnapshotListApi.as_view(), name="api-snapshot-list"),
    path("projects/<int:project_id>/snapshots/export/", apis.SnapshotExportApi.as_view(), name="api-snapshot-export"),
    path(
        "projects/<int:project_id>/snapshots/<int:snapshot_id>/files/<str:name>",
        apis.SnapshotFileApi.as_view(),
        name="api-snapshot-file",
    ),
]
