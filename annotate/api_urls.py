from django.urls import path

from annotate.apis import accounts as apis
from annotate.apis import audit as audit_apis
from annotate.apis import contributors as contributor_apis
from annotate.apis import corrections as correction_apis
from annotate.apis import gold as gold_apis
from annotate.apis import imports as import_apis
from annotate.apis import screening as screening_apis
from annotate.apis import stats as stats_apis
from annotate.apis import tasks as task_apis

urlpatterns = [
    path("auth/token/", apis.TokenCreateApi.as_view(), name="api-token-create"),
    path("auth/token/revoke/", apis.TokenRevokeApi.as_view(), name="api-token-revoke"),
    path("me/", apis.MeApi.as_view(), name="api-me"),
    path("projects/", apis.ProjectListApi.as_view(), name="api-project-list"),
    path("projects/create/", apis.ProjectCreateApi.as_view(), name="api-project-create"),
    path("projects/<int:project_id>/", apis.ProjectDetailApi.as_view(), name="api-project-detail"),
    path("projects/<int:project_id>/guidelines/versions/", apis.GuidelineVersionsApi.as_view(),
         name="api-guideline-versions"),
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
    path("projects/<int:project_id>/invites/open/", apis.InviteListApi.as_view(), name="api-invite-list"),
    path(
        "projects/<int:project_id>/invites/<int:invite_id>/revoke/",
        apis.InviteRevokeApi.as_view(),
        name="api-invite-revoke",
    ),
    path("invites/<str:token>/accept/", apis.InviteAcceptApi.as_view(), name="api-invite-accept"),
    path("users/<int:user_id>/deactivate/", apis.UserDeactivateApi.as_view(), name="api-user-deactivate"),
    path("projects/<int:project_id>/audit/", audit_apis.ProjectAuditListApi.as_view(), name="api-project-audit"),
    path("audit/", audit_apis.AuditListApi.as_view(), name="api-audit"),
    path("projects/<int:project_id>/screen/findings/", screening_apis.ScreenFindingListApi.as_view(),
         name="api-screen-findings"),
    path("projects/<int:project_id>/screen/findings/<int:finding_id>/clear/", screening_apis.ScreenFindingClearApi.as_view(),
         name="api-screen-finding-clear"),
]

urlpatterns += [
    path("projects/<int:project_id>/settings/", stats_apis.ProjectSettingsApi.as_view(), name="api-project-settings"),
    path("projects/<int:project_id>/tasks/next/", task_apis.TaskNextApi.as_view(), name="api-task-next"),
    path("projects/<int:project_id>/tasks/mine/", task_apis.MyTaskListApi.as_view(), name="api-task-mine"),
    path("projects/<int:project_id>/counts/mine/", stats_apis.MyCountsApi.as_view(), name="api-counts-mine"),
    path("tasks/<int:task_id>/", task_apis.TaskDetailApi.as_view(), name="api-task-detail"),
    path("tasks/<int:task_id>/submit/", task_apis.TaskSubmitApi.as_view(), name="api-task-submit"),
    path("tasks/<int:task_id>/skip/", task_apis.TaskSkipApi.as_view(), name="api-task-skip"),
    path(
        "projects/<int:project_id>/messages/<int:message_id>/labels/",
        task_apis.MessageLabelApi.as_view(),
        name="api-message-label",
    ),
    path(
        "projects/<int:project_id>/messages/<int:message_id>/clear/",
        task_apis.MessageClearApi.as_view(),
        name="api-message-clear",
    ),
    path("projects/<int:project_id>/trees/<int:root_id>/", task_apis.TreeApi.as_view(), name="api-tree"),
    path("projects/<int:project_id>/messages/<int:message_id>/trail/", correction_apis.MessageTrailApi.as_view(),
         name="api-message-trail"),
    path("rankings/<int:ranking_id>/", correction_apis.RankingCorrectApi.as_view(), name="api-ranking-correct"),
    path("rankings/<int:ranking_id>/withdraw/", correction_apis.RankingWithdrawApi.as_view(), name="api-ranking-withdraw"),
    path("labels/<int:label_id>/", correction_apis.LabelCorrectApi.as_view(), name="api-label-correct"),
    path("labels/<int:label_id>/withdraw/", correction_apis.LabelWithdrawApi.as_view(), name="api-label-withdraw"),
    path("rankings/<int:judgement_id>/review/", correction_apis.RankingReviewApi.as_view(), name="api-ranking-review"),
    path("labels/<int:judgement_id>/review/", correction_apis.LabelReviewApi.as_view(), name="api-label-review"),
    path(
        "projects/<int:project_id>/candidate-sets/",
        task_apis.CandidateSetCreateApi.as_view(),
        name="api-candidate-set-create",
    ),
    path(
        "projects/<int:project_id>/candidate-sets/<int:set_id>/consensus/",
        stats_apis.ConsensusApi.as_view(),
        name="api-consensus",
    ),
    path("projects/<int:project_id>/agreement/", stats_apis.AgreementApi.as_view(), name="api-agreement"),
    path("projects/<int:project_id>/stats/", stats_apis.ProjectStatsApi.as_view(), name="api-project-stats"),
    path("projects/<int:project_id>/imports/", import_apis.ImportCreateApi.as_view(), name="api-import-create"),
    path("projects/<int:project_id>/imports/list/", import_apis.ImportListApi.as_view(), name="api-import-list"),
    path("projects/<int:project_id>/imports/jobs/", import_apis.ImportJobListApi.as_view(), name="api-import-jobs"),
    path("projects/<int:project_id>/imports/jobs/<int:job_id>/", import_apis.ImportJobDetailApi.as_view(),
         name="api-import-job"),
    path(
        "projects/<int:project_id>/contributors/delete/",
        contributor_apis.ContributorDeleteApi.as_view(),
        name="api-contributor-delete",
    ),
    path("projects/<int:project_id>/queue/", task_apis.WorkItemPriorityListApi.as_view(), name="api-queue-order"),
    path("projects/<int:project_id>/queue/assign/", task_apis.WorkItemAssignApi.as_view(), name="api-queue-assign"),
    path("projects/<int:project_id>/queue/pin/", task_apis.WorkItemPinApi.as_view(), name="api-queue-pin"),
    path("projects/<int:project_id>/queue/boost/", task_apis.WorkItemBoostApi.as_view(), name="api-queue-boost"),
    path("projects/<int:project_id>/queue/freeze/", task_apis.WorkItemFreezeApi.as_view(), name="api-queue-freeze"),
    path("projects/<int:project_id>/queue/release/", task_apis.WorkItemReleaseApi.as_view(), name="api-queue-release"),
    path("projects/<int:project_id>/gold/", gold_apis.GoldItemListApi.as_view(), name="api-gold-list"),
    path("projects/<int:project_id>/gold/mark/", gold_apis.GoldMarkApi.as_view(), name="api-gold-mark"),
    path("projects/<int:project_id>/gold/promote/", gold_apis.GoldPromoteApi.as_view(), name="api-gold-promote"),
    path("projects/<int:project_id>/gold/unmark/", gold_apis.GoldUnmarkApi.as_view(), name="api-gold-unmark"),
    path("projects/<int:project_id>/gold/resume/", gold_apis.GoldResumeApi.as_view(), name="api-gold-resume"),
    path("projects/<int:project_id>/gold/mine/", gold_apis.MyGoldApi.as_view(), name="api-gold-mine"),
]
