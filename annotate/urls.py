from django.urls import path

from annotate import views

app_name = "annotate"

urlpatterns = [
    path("projects/new/", views.project_create, name="project-create"),
    path("projects/<int:project_id>/", views.project_page, name="project"),
    path("projects/<int:project_id>/work/", views.work_start, name="work"),
    path("projects/<int:project_id>/history/", views.history_page, name="history"),
    path("projects/<int:project_id>/guidelines/", views.guidelines_page, name="guidelines"),
    path("projects/<int:project_id>/messages/<int:message_id>/", views.message_page, name="message"),
    path("projects/<int:project_id>/<str:kind>s/<int:judgement_id>/withdraw/", views.judgement_withdraw,
         name="judgement-withdraw"),
    path("projects/<int:project_id>/<str:kind>s/<int:judgement_id>/review/", views.judgement_review,
         name="judgement-review"),
    path("projects/<int:project_id>/messages/<int:message_id>/flag/", views.message_flag, name="message-flag"),
    path("tasks/<int:task_id>/", views.task_page, name="task"),
    path("tasks/<int:task_id>/submit/", views.task_submit, name="task-submit"),
    path("tasks/<int:task_id>/skip/", views.task_skip, name="task-skip"),
    path("projects/<int:project_id>/admin/", views.admin_settings, name="admin-settings"),
    path("projects/<int:project_id>/admin/settings/", views.settings_update, name="settings-update"),
    path("projects/<int:project_id>/admin/guidelines/", views.guidelines_update, name="guidelines-update"),
    path("projects/<int:project_id>/admin/members/", views.admin_members, name="admin-members"),
    path("projects/<int:project_id>/admin/members/invite/", views.member_invite, name="member-invite"),
    path("projects/<int:project_id>/admin/members/role/", views.member_role_set, name="member-role-set"),
    path("projects/<int:project_id>/admin/members/remove/", views.member_remove, name="member-remove"),
    path("projects/<int:project_id>/admin/members/revoke/", views.invite_revoke, name="invite-revoke"),
    path("projects/<int:project_id>/admin/progress/", views.admin_progress, name="admin-progress"),
    path("projects/<int:project_id>/admin/progress/<str:name>.svg", views.admin_plot, name="admin-plot"),
    path("projects/<int:project_id>/admin/progress/throughput.csv", views.admin_throughput_csv,
         name="admin-throughput-csv"),
    path("projects/<int:project_id>/admin/imports/", views.admin_imports, name="admin-imports"),
    path("projects/<int:project_id>/admin/flagged/", views.admin_excluded, name="admin-excluded"),
    path("invite/<str:token>/", views.invite_page, name="invite"),
]
