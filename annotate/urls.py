from django.urls import path

from annotate import views

app_name = "annotate"

urlpatterns = [
    path("projects/<int:project_id>/", views.project_page, name="project"),
    path("invite/<str:token>/", views.invite_page, name="invite"),
]
