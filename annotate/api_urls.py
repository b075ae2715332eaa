from django.urls import path

from annotate import apis

urlpatterns = [
    path("auth/token/", apis.TokenCreateApi.as_view(), name="api-token-create"),
    path("auth/token/revoke/", apis.TokenRevokeApi.as_view(), name="api-token-revoke"),
    path("me/", apis.MeApi.as_view(), name="api-me"),
    path("projects/", apis.ProjectListApi.as_view(), name="api-project-list"),
    path("projects/create/", apis.ProjectCreateApi.as_view(), name="api-project-create"),
    path("projects/<int:project_id>/", apis.ProjectDetailApi.as_view(), name="api-project-detail"),
    path(
        "projects/<int:project_id>/guidelines/",
        apis.ProjectGuidelinesUpdateApi.as_view(),
        name="api-project-guidelines",
    ),
    path("projects/<int:project_id>/members/", apis.MemberListApi.as_view(), name="api-member-list"),
    path(
        "projects/<int:project_id>/members/<int:user_id>/",
        apis.MemberUpdateApi.as_view(),
        name="api-member-update",
    ),
    path("projects/<int:project_id>/invites/", apis.InviteCreateApi.as_view(), name="api-invite-create"),
    path("invites/<str:token>/accept/", apis.InviteAcceptApi.as_view(), name="api-invite-accept"),
    path("users/<int:user_id>/deactivate/", apis.UserDeactivateApi.as_view(), name="api-user-deactivate"),
]
