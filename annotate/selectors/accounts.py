"""Reads: every lookup a request makes is scoped to the asking user's projects."""

from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, QuerySet
from django.http import Http404
from django.utils import timezone

from annotate.models import ROLE_RANK, Invite, Membership, Project, ProjectSettings, Role, plausible_invite_token
from platform_common.raw_sql import columns, fetch_one


def projects_for_user(*, user) -> QuerySet[Project]:
    """Return the projects the user is an active member of."""
    if not user.is_authenticated or not user.is_active:
        return Project.objects.none()
    return Project.objects.filter(memberships__user=user, memberships__is_active=True)


MEMBERSHIP_IN_PROJECT = f"""
SELECT {columns(Membership, "m")}, {columns(Project, "p")}, {columns(ProjectSettings, "s")}
FROM annotate_membership m
JOIN annotate_project p ON p.id = m.project_id
JOIN annotate_projectsettings s ON s.project_id = m.project_id
WHERE m.user_id = %s AND m.project_id = %s AND m.is_active
"""


def membership_for(*, user, project_id) -> Membership:
    """Return the user's active membership in the project, or 404 as if it did not exist."""
    found = None
    if user.is_authenticated and user.is_active:
        # On every request to a project (the queue's next task first): one hand-written query, as
        # membership_for_task (platform_common/raw_sql.py says why).
        found = fetch_one(MEMBERSHIP_IN_PROJECT, [user.id, project_id], [Membership, Project, ProjectSettings])
    if found is None:
        # An outsider is told the project does not exist, not that it is forbidden.
        raise Http404("no such project")
    membership, project, settings = found
    project.settings = settings
    membership.project = project
    return membership


def project_for_member(*, user, project_id, role: str = Role.ANNOTATOR) -> Project:
    """Return the project if the user is a member with at least `role`.

    Non-members get 404 (they may not learn the project exists); members whose role is too
    low get 403 naming the role they need.
    """
    return membership_with_role(user=user, project_id=project_id, role=role).project


def membership_with_role(*, user, project_id, role: str) -> Membership:
    """Return the user's membership if its role is at least `role` (404 outsiders, 403 too low)."""
    membership = membership_for(user=user, project_id=project_id)
    if ROLE_RANK[membership.role] < ROLE_RANK[role]:
        raise PermissionDenied(f"this needs the {role} role in the project; you are {membership.role}")
    return membership


MEMBERSHIP_FOR_TASK = f"""
SELECT {columns(Membership, "m")}, {columns(Project, "p")}, {columns(ProjectSettings, "s")}
FROM annotate_task t
JOIN annotate_membership m ON m.project_id = t.project_id AND m.user_id = %s AND m.is_active
JOIN annotate_project p ON p.id = t.project_id
JOIN annotate_projectsettings s ON s.project_id = t.project_id
WHERE t.id = %s
"""


def membership_for_task(*, user, task_id) -> Membership:
    """Return the user's active membership in the project of the task, or 404.

    On every submit, so written as one query (see platform_common/raw_sql.py)."""
    found = None
    if user.is_authenticated and user.is_active:
        found = fetch_one(MEMBERSHIP_FOR_TASK, [user.id, task_id], [Membership, Project, ProjectSettings])
    if found is None:
        raise Http404("no such task")
    membership, project, settings = found
    project.settings = settings
    membership.project = project
    return membership


def members_of(*, project) -> QuerySet[Membership]:
    return Membership.objects.filter(project=project).select_related("user").order_by("user__username")


def invite_creator_is_admin() -> Exists:
    """Return the condition, on Invite rows, that whoever made the invite is still an active admin
    of its project: an invite dies with its creator's role."""
    return Exists(
        Membership.objects.filter(
            project=OuterRef("project"), user=OuterRef("created_by"), role=Role.ADMIN, is_active=True,
            user__is_active=True,
        )
    )


def invites_open(*, project) -> QuerySet[Invite]:
    """Return the project's invites that can still be used, newest first, with who made each."""
    return (
        Invite.objects.filter(
            invite_creator_is_admin(),
            project=project, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now(),
        )
        .select_related("created_by")
        .order_by("-created_at", "-id")
    )


def invite_by_token(*, token: str) -> Invite:
    invite = None
    if plausible_invite_token(token):
        invite = Invite.objects.select_related("project").filter(token=token).first()
    if invite is None:
        raise Http404("this invite link is not valid")
    return invite
