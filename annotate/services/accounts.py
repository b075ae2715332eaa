"""Writes for projects, members, invites and accounts. Every function is atomic."""

import re
from contextlib import contextmanager
from datetime import timedelta
from types import SimpleNamespace

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.contrib.sessions.models import Session
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token
from simple_history.models import HistoricalRecords

from annotate.models import (
    Invite, Membership, Project, ProjectSettings, Role, ScreenSettings, TaskKind, plausible_invite_token,
)
from annotate.selectors.accounts import invite_creator_is_admin
from annotate.services import tree

User = get_user_model()


@contextmanager
def audit_actor(user):
    """Log `user` as who made the audited changes made inside (project history, memberships, invites...).

    django-simple-history takes who from the request (its middleware); a command or a worker has none, so a
    service that is told who acts says so itself.
    """
    context = HistoricalRecords.context
    before = getattr(context, "request", None)
    if user is not None:
        context.request = SimpleNamespace(user=user)
    try:
        yield
    finally:
        if before is not None:
            context.request = before
        elif hasattr(context, "request"):
            del context.request


@transaction.atomic
def project_create(*, name: str, created_by, description: str = "", guidelines: str = "") -> Project:
    """Create a project and make its creator its admin. Only staff may create projects."""
    if not created_by.is_staff:
        raise PermissionDenied("only site staff can create projects")
    name = name.strip()
    if not name:
        raise ValidationError({"name": "a project needs a name"})
    with audit_actor(created_by):
        project = Project.objects.create(
            name=name, description=description, guidelines=guidelines, created_by=created_by
        )
        ProjectSettings.objects.create(project=project)
        ScreenSettings.objects.create(project=project)
        Membership.objects.create(project=project, user=created_by, role=Role.ADMIN)
    return project


@transaction.atomic
def project_update_guidelines(*, project: Project, guidelines: str) -> Project:
    """Replace the guidelines; judgements made from now on record the new version."""
    # Lock the row: two admins saving at once must get two versions, not one.
    locked = Project.objects.select_for_update().get(pk=project.pk)
    if guidelines != locked.guidelines:
        locked.guidelines = guidelines
        locked.guideline_version += 1
        locked.save(update_fields=["guidelines", "guideline_version", "updated_at"])
    project.guidelines, project.guideline_version = locked.guidelines, locked.guideline_version
    return project


@transaction.atomic
def membership_set(*, project: Project, user, role: str) -> Membership:
    """Make the user an active member of the project with the role."""
    if role not in Role.values:
        raise ValidationError({"role": f"role must be one of {', '.join(Role.values)}, not {role!r}"})
    admins = _lock_admins(project)
    membership, _ = Membership.objects.select_for_update().get_or_create(
        project=project, user=user, defaults={"role": role}
    )
    if membership.role != role or not membership.is_active:
        _refuse_removing_last_admin(membership, new_role=role, admins=admins)
        membership.role = role
        membership.is_active = True
        membership.save(update_fields=["role", "is_active", "updated_at"])
    return membership


@transaction.atomic
def membership_remove(*, project: Project, user) -> Membership:
    """Take the user out of the project; what they did stays, attributed to them."""
    admins = _lock_admins(project)
    membership = Membership.objects.select_for_update().filter(project=project, user=user).first()
    if membership is None:
        raise ValidationError({"user": "that user is not a member of this project"})
    _refuse_removing_last_admin(membership, new_role=None, admins=admins)
    membership.is_active = False
    membership.save(update_fields=["is_active", "updated_at"])
    return membership


def _lock_admins(project: Project) -> list[int]:
    """Lock the project's admin rows, always in id order and before any other membership row:
    two admins demoting each other at once then wait for each other instead of deadlocking."""
    return list(
        Membership.objects.select_for_update()
        .filter(project=project, role=Role.ADMIN, is_active=True)
        .order_by("id")
        .values_list("id", flat=True)
    )


def _refuse_removing_last_admin(membership: Membership, *, new_role, admins: list[int]) -> None:
    if membership.role != Role.ADMIN or new_role == Role.ADMIN or not membership.is_active:
        return
    if admins == [membership.id]:
        raise ValidationError({"role": "a project must keep at least one admin"})


@transaction.atomic
def invite_create(*, project: Project, role: str, created_by, note: str = "", days: int | None = None) -> Invite:
    """Make a single-use link to the project with the role, lasting `days` (INVITE_DAYS by default)."""
    days = settings.INVITE_DAYS if days is None else days
    if role not in Role.values:
        raise ValidationError({"role": f"role must be one of {', '.join(Role.values)}, not {role!r}"})
    if not 1 <= days <= 365:
        raise ValidationError({"days": "an invite lasts from 1 to 365 days"})
    with audit_actor(created_by):
        return Invite.objects.create(
            project=project,
            role=role,
            note=note,
            created_by=created_by,
            expires_at=timezone.now() + timedelta(days=days),
        )


@transaction.atomic
def invite_revoke(*, invite: Invite) -> Invite:
    if invite.accepted_at is None and invite.revoked_at is None:
        invite.revoked_at = timezone.now()
        invite.save(update_fields=["revoked_at", "updated_at"])
    return invite


def invite_problem(invite: Invite) -> str | None:
    """Return why the invite cannot be used, or None if it can."""
    if invite.revoked_at is not None:
        return "this invite was revoked"
    if invite.accepted_at is not None:
        return "this invite has already been used"
    if invite.expires_at <= timezone.now():
        return "this invite has expired"
    # An invite carries its creator's authority: an admin removed or demoted (or deactivated) must not
    # come back, or let anyone in, through a link made before.
    if not Invite.objects.filter(pk=invite.pk).filter(invite_creator_is_admin()).exists():
        return "the admin who made this invite is no longer an admin of the project"
    return None


@transaction.atomic
def invite_accept(*, token: str, user) -> Membership:
    """Use the invite: the user joins its project with its role. Single use."""
    # Lock the invite: two people opening the same link at once must not both get in.
    invite = (
        Invite.objects.select_for_update().select_related("project").filter(token=token).first()
        if plausible_invite_token(token)
        else None
    )
    if invite is None:
        raise ValidationError({"token": "this invite link is not valid"})
    problem = invite_problem(invite)
    if problem:
        raise ValidationError({"token": problem})
    existing = Membership.objects.filter(project=invite.project, user=user, is_active=True).first()
    role = invite.role
    if existing and existing.has_role(role):
        role = existing.role  # an invite never lowers a role someone already has
    membership = membership_set(project=invite.project, user=user, role=role)
    invite.accepted_by = user
    invite.accepted_at = timezone.now()
    invite.save(update_fields=["accepted_by", "accepted_at", "updated_at"])
    return membership


@transaction.atomic
def user_register_with_invite(*, token: str, username: str, password: str, email: str = ""):
    """Create an account through an invite link and join the invite's project."""
    username = username.strip()
    if not username:
        raise ValidationError({"username": "choose a username"})
    try:
        User.username_validator(username)
    except ValidationError as error:
        raise ValidationError({"username": error.messages}) from None
    if User.objects.filter(username__iexact=username).exists():
        raise ValidationError({"username": "that username is taken"})
    user = User(username=username, email=email.strip())
    validate_password(password, user)
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:
        raise ValidationError({"username": "that username is taken"}) from None
    invite_accept(token=token, user=user)
    return user


@transaction.atomic
def user_deactivate(*, user, by):
    """Stop the account: it can no longer log in, its API tokens and sessions end."""
    if not by.is_staff:
        raise PermissionDenied("only site staff can deactivate accounts")
    if user.pk == by.pk:
        raise ValidationError({"user": "you cannot deactivate your own account"})
    user.is_active = False
    user.save(update_fields=["is_active"])
    Token.objects.filter(user=user).delete()
    _end_sessions(user)
    return user


@transaction.atomic
def user_password_changed(*, user, keep_session_key: str | None = None) -> None:
    """End what the old password opened: the user's API tokens and their sessions but the one that
    changed it (a stolen token or session must not outlive the change)."""
    Token.objects.filter(user=user).delete()
    _end_sessions(user, keep=keep_session_key)


class PasswordChangeRevokesTokens:
    """Revoke a user's API tokens whenever their password is changed, by whatever path.

    Listed in AUTH_PASSWORD_VALIDATORS for Django's password_changed() hook, which User.save() calls after
    every set_password(): the password page, Django admin's change form, `manage.py changepassword`,
    createadmin. It accepts every password; its help text tells people what a change does.
    """

    def validate(self, password, user=None) -> None:
        return None

    def password_changed(self, password, user=None) -> None:
        if user is not None and user.pk is not None:
            Token.objects.filter(user=user).delete()

    def get_help_text(self) -> str:
        return "A new password revokes the account's API tokens and ends its other sessions."


def _end_sessions(user, *, keep: str | None = None) -> None:
    # Sessions store the user id inside their encoded data, so each is decoded to find theirs.
    for session in Session.objects.filter(expire_date__gt=timezone.now()).exclude(session_key=keep).iterator():
        if str(session.get_decoded().get("_auth_user_id")) == str(user.pk):
            session.delete()


@transaction.atomic
def token_create(*, user) -> Token:
    """Return the user's API token, making a new one if they have none (or revoked theirs)."""
    token, _ = Token.objects.get_or_create(user=user)
    return token


@transaction.atomic
def token_revoke(*, user) -> bool:
    deleted, _ = Token.objects.filter(user=user).delete()
    return bool(deleted)


RUBRICS_MAX = 8
RUBRIC_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}")


def rubrics_clean(rubrics) -> list[dict]:
    """The project's rubrics in their stored form, or a refusal naming what is wrong: a list of at most
    RUBRICS_MAX scales, each a distinct `key` (lowercase letters, digits, _), a `label` and an optional `help`."""
    if not isinstance(rubrics, list) or len(rubrics) > RUBRICS_MAX:
        raise ValidationError({"rubrics": f"a list of at most {RUBRICS_MAX} rubrics"})
    cleaned, keys = [], set()
    for number, rubric in enumerate(rubrics, 1):
        if not isinstance(rubric, dict) or not isinstance(rubric.get("key"), str) or not RUBRIC_KEY.fullmatch(rubric["key"]):
            raise ValidationError({"rubrics": f"rubric {number}: a `key` of lowercase letters, digits and _ (helpful)"})
        label, help_text = rubric.get("label") or rubric["key"], rubric.get("help") or ""
        if not isinstance(label, str) or not isinstance(help_text, str) or len(label) > 80 or len(help_text) > 300:
            raise ValidationError({"rubrics": f"rubric {number}: `label` (up to 80 characters) and `help` (300) are text"})
        if rubric["key"] in keys:
            raise ValidationError({"rubrics": f"rubric {number}: the key {rubric['key']!r} is used twice"})
        keys.add(rubric["key"])
        cleaned.append({"key": rubric["key"], "label": label.strip(), "help": help_text.strip()})
    return cleaned


@transaction.atomic
def project_settings_update(*, project: Project, **changes) -> ProjectSettings:
    """Change how the project hands out work; items already made keep their K and overlap."""
    if "rubrics" in changes:
        changes["rubrics"] = rubrics_clean(changes["rubrics"])
    settings = ProjectSettings.objects.select_for_update().get(project=project)
    for field, value in changes.items():
        setattr(settings, field, value)
    if "task_mix" in changes and not any(weight > 0 for weight in settings.weights().values()):
        raise ValidationError({"task_mix": "at least one task kind needs a weight above 0"})
    settings.save()
    project.settings = settings  # callers holding the project see the new settings
    if settings.weights()[TaskKind.EDIT] > 0:
        tree.edit_items_backfill(project=project)  # the replies stored before edits were handed out
    return settings
