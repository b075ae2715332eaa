"""Pages: annotators' home, task and history pages; project admins' settings, members, progress,
imports and flagged content. Views parse the request, call a selector or service, render.

Every page finds its project through annotate.selectors.accounts: outsiders get 404, members
whose role is too low 403. Task pages post plain forms (the page's JavaScript only adds keyboard
shortcuts, drafts and the drag-and-drop ranking), and a submit answers with the next task.
"""

import csv
import uuid
from datetime import timedelta

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from annotate import forms, plots
from annotate.importers import ImportRefused
from annotate.kinds import KINDS
from annotate.models import Flag, Invite, Label, Message, Ranking, Role, ScreenFinding, SkipReason, TaskKind, TaskState
from annotate.selectors import accounts as account_selectors
from annotate.selectors import gold as gold_selectors
from annotate.selectors import history as history_selectors
from annotate.selectors import corrections as correction_selectors
from annotate.selectors import guidelines as guideline_selectors
from annotate.selectors import progress as progress_selectors
from annotate.selectors import screening as screening_selectors
from annotate.selectors import stats as stat_selectors
from annotate.selectors import tasks as task_selectors
from annotate.selectors import work as work_selectors
from annotate.services import accounts as account_services
from annotate.services import corrections, imports, queue, screening, submits
from platform_common.errors import Conflict, NotYours
from platform_common.serializers import whole_number

# ---------------------------------------------------------------------------------------------
# Helpers


def _int(value) -> int | None:
    """A posted id, or None (which matches nothing) when it is not a number."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _errors(error: ValidationError) -> dict[str, list[str]]:
    return error.message_dict if hasattr(error, "error_dict") else {"__all__": error.messages}


def _error_text(error: ValidationError) -> str:
    return "; ".join(message for messages_ in _errors(error).values() for message in messages_)


def _drafts_done(request) -> list[int]:
    """Return (and forget) the tasks submitted or skipped since the last page: the browser
    deletes their saved drafts. Kept until the server confirmed, so a lost connection never
    loses what was typed."""
    return request.session.pop("drafts_done", [])


def _remember_done(request, task_id: int) -> None:
    request.session["drafts_done"] = [*request.session.get("drafts_done", [])[-20:], task_id]


def _work_kind(request, project_id) -> str | None:
    """The kind the annotator chose to work on in this project, or None for the project's mix."""
    return request.session.get("work_kind", {}).get(str(project_id))


def _next_task(request, membership):
    """Lease the annotator's next task and show it, or go home when nothing is waiting."""
    project = membership.project
    kind = _work_kind(request, project.id)
    try:
        task = queue.task_next(project=project, annotator=request.user, role=membership.role, kind=kind)
    except ValidationError as error:  # the chosen kind was turned off meanwhile
        request.session.setdefault("work_kind", {}).pop(str(project.id), None)
        request.session.modified = True
        messages.warning(request, _error_text(error))
        return redirect("annotate:project", project_id=project.id)
    if task is None:
        paused = gold_selectors.gold_standing(project=project, annotator=request.user).paused_reason
        what = f"{TaskKind(kind).label.lower()} tasks" if kind else "tasks"
        messages.info(request, paused or f"No more {what} are waiting for you right now. Thank you! Check back later.")
        return redirect("annotate:project", project_id=project.id)
    return redirect("annotate:task", task_id=task.id)


# ---------------------------------------------------------------------------------------------
# Home and projects


@login_required
def home(request):
    projects = account_selectors.projects_for_user(user=request.user).order_by("name")
    form = forms.ProjectCreateForm() if request.user.is_staff else None
    return render(request, "annotate/home.html", {"projects": projects, "form": form})


@login_required
@require_POST
def project_create(request):
    form = forms.ProjectCreateForm(request.POST)
    if form.is_valid():
        try:
            project = account_services.project_create(created_by=request.user, **form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, _error_text(error))
        else:
            messages.success(request, f"Project {project.name} created. Write its guidelines and invite people.")
            return redirect("annotate:admin-settings", project_id=project.id)
    projects = account_selectors.projects_for_user(user=request.user).order_by("name")
    return render(request, "annotate/home.html", {"projects": projects, "form": form}, status=400)


@login_required
def project_page(request, project_id):
    membership = account_selectors.membership_for(user=request.user, project_id=project_id)
    project = membership.project
    return render(
        request,
        "annotate/project.html",
        {
            "project": project,
            "membership": membership,
            "waiting": work_selectors.waiting_for(membership=membership),
            "counts": stat_selectors.annotator_counts(project=project, annotator=request.user),
            "held": work_selectors.held_task(membership=membership),
            "work_kind": _work_kind(request, project.id),
            "drafts_done": _drafts_done(request),
            "gold": gold_selectors.gold_standing(project=project, annotator=request.user),
            "gold_days": gold_selectors.gold_days_of(project=project, annotator=request.user)[:7],
        },
    )


@login_required
@require_POST
def work_start(request, project_id):
    """Start (or go on) working: the project's mix of kinds, or only the kind chosen."""
    membership = account_selectors.membership_for(user=request.user, project_id=project_id)
    kind = request.POST.get("kind") or None
    if kind is not None and kind not in TaskKind.values:
        kind = None
    chosen = request.session.setdefault("work_kind", {})
    chosen[str(project_id)] = kind
    request.session.modified = True
    return _next_task(request, membership)


# ---------------------------------------------------------------------------------------------
# Tasks


@login_required
def task_page(request, task_id):
    task, membership = work_selectors.task_for_annotator(user=request.user, task_id=task_id)
    if task.state != TaskState.LEASED or task.is_expired():
        return _render_closed(request, task, membership)
    return _render_task(request, task, membership)


def _render_task(request, task, membership, *, errors=None, values=None, status=200):
    payload = task_selectors.task_payload(task)
    conversation = payload["conversation"]
    context = {
        "task": task,
        "project": membership.project,
        "membership": membership,
        "conversation": conversation,
        # The turn the task is about (a label or review's message), shown apart from the rest.
        "context_turns": conversation[:-1] if task.kind in (TaskKind.LABEL, TaskKind.REVIEW, TaskKind.EDIT) else conversation,
        "target": conversation[-1] if conversation else None,
        "candidates": payload["candidates"],
        "kind_label": TaskKind(task.kind).label,
        "work_kind": _work_kind(request, task.project_id),
        # A fresh idempotency key per page: a double click or a resent form writes once.
        "submit_key": uuid.uuid4().hex,
        # The page counts down from this rather than from the lease's time of day, so a browser
        # whose clock is off still warns before the lease ends.
        "lease_seconds_left": max(0, int((task.lease_expires_at - timezone.now()).total_seconds())),
        "errors": errors or {},
        "values": values or {},
        "checked_flags": values.getlist("flags") if values else [],
        "flags": Flag.choices,
        "flag_keys": FLAG_KEYS,
        "qualities": QUALITIES,
        "skip_reasons": SkipReason.choices,
        "rubrics": [{**rubric, "given": (values.get(f"rubric_{rubric['key']}") if values else "")}
                    for rubric in membership.project.settings.rubrics] if task.kind == TaskKind.LABEL else [],
        "drafts_done": _drafts_done(request),
    }
    return render(request, KINDS[task.kind].template, context, status=status)


FLAG_KEYS = {"toxic": "t", "personal_data": "p", "spam": "m", "off_task": "o"}
QUALITIES = [(5, "Excellent"), (4, "Good"), (3, "Acceptable"), (2, "Poor"), (1, "Unusable")]


def _render_closed(request, task, membership, *, text="", status=200):
    done = _drafts_done(request)
    if task.state in (TaskState.SUBMITTED, TaskState.SKIPPED):
        done.append(task.id)  # the server has it (a reply lost on the way back, say): no draft needed
    return render(
        request,
        "annotate/task_closed.html",
        {
            "task": task,
            "project": membership.project,
            "membership": membership,
            "kind_label": TaskKind(task.kind).label,
            "expired": task.state == TaskState.EXPIRED or task.is_expired(),
            "work_kind": _work_kind(request, task.project_id),
            "text": text,
            "drafts_done": done,
        },
        status=status,
    )


def _submitted_payload(kind: str, post) -> dict:
    """Turn the task form into what submits.task_submit takes for the kind (annotate.kinds)."""
    if kind not in KINDS:
        raise ValidationError({"kind": f"unknown task kind {kind}"})
    return KINDS[kind].form(post)


@login_required
@require_POST
def task_submit(request, task_id):
    task, membership = work_selectors.task_for_annotator(user=request.user, task_id=task_id)
    # Time on task: from the lease to this submit, as the server saw it.
    spent = int((timezone.now() - task.created_at).total_seconds() * 1000)
    try:
        payload = _submitted_payload(task.kind, request.POST)
        submits.task_submit(
            task_id=task.id,
            annotator=request.user,
            submit_key=request.POST.get("submit_key", ""),
            payload=payload,
            time_spent_ms=max(0, min(spent, submits.MAX_TIME_SPENT_MS)),
        )
    except NotYours:
        raise Http404("no such task") from None
    except Conflict as error:
        task.refresh_from_db()
        messages.warning(request, _error_text(error).capitalize() + ".")
        return _render_closed(request, task, membership, text=request.POST.get("text", ""), status=409)
    except ValidationError as error:
        return _render_task(request, task, membership, errors=_errors(error), values=request.POST, status=400)
    _remember_done(request, task.id)
    return _next_task(request, membership)


@login_required
@require_POST
def task_skip(request, task_id):
    task, membership = work_selectors.task_for_annotator(user=request.user, task_id=task_id)
    try:
        queue.task_skip(task=task, annotator=request.user, reason=request.POST.get("reason", ""),
                        note=request.POST.get("note", ""))
    except ValidationError as error:  # Conflict too: already skipped or submitted elsewhere
        messages.warning(request, _error_text(error).capitalize() + ".")
        if not isinstance(error, Conflict):
            return redirect("annotate:task", task_id=task.id)
    else:
        messages.info(request, "Skipped. You will not get that one again.")
    _remember_done(request, task.id)
    return _next_task(request, membership)


@login_required
@require_POST
def message_flag(request, project_id, message_id):
    """Flag a reply seen on a task page (outside the queue), then go back to the task."""
    project = account_selectors.project_for_member(user=request.user, project_id=project_id)
    message = get_object_or_404(Message, pk=message_id, project=project)
    try:
        submits.label_submit(message=message, annotator=request.user, flags=request.POST.getlist("flags"))
    except ValidationError as error:
        messages.error(request, _error_text(error).capitalize() + ".")
    else:
        messages.success(request, "Thank you. The reply is flagged and kept out of training data until an admin looks at it.")
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        back = reverse("annotate:project", args=[project.id])
    return redirect(back)


@login_required
def history_page(request, project_id):
    membership = account_selectors.membership_for(user=request.user, project_id=project_id)
    page, entries = history_selectors.history_page(
        project=membership.project, annotator=request.user, page_number=request.GET.get("page")
    )
    return render(
        request,
        "annotate/history.html",
        {"project": membership.project, "membership": membership, "page": page, "entries": entries},
    )


@login_required
@require_POST
def judgement_withdraw(request, project_id, kind, judgement_id):
    """Withdraw one's own ranking or label within the project's correction window (from My history), or
    anyone's as a project admin (from a message's page)."""
    membership = account_selectors.membership_for(user=request.user, project_id=project_id)
    if kind == "ranking":
        judgement = get_object_or_404(Ranking, pk=judgement_id, candidate_set__project=membership.project)
        withdraw = corrections.ranking_withdraw
    elif kind == "label":
        judgement = get_object_or_404(Label, pk=judgement_id, message__project=membership.project)
        withdraw = corrections.label_withdraw
    else:
        raise Http404("no such kind of judgement")
    try:
        withdraw(**{kind: judgement}, by=request.user)
    except PermissionDenied as refused:
        messages.warning(request, f"{refused}".capitalize() + ".")
    else:
        messages.success(request, f"Your {kind} is withdrawn: it leaves the data, and the item goes to someone else."
                         if judgement.annotator_id == request.user.id else f"The {kind} is withdrawn.")
    back = request.POST.get("next", "")
    return redirect(back if back.startswith(f"/projects/{project_id}/") else reverse("annotate:history", args=[project_id]))


@login_required
@require_POST
def judgement_review(request, project_id, kind, judgement_id):
    """A reviewer accepts or overrules a ranking or a label from the message's page."""
    membership = account_selectors.membership_with_role(user=request.user, project_id=project_id, role=Role.REVIEWER)
    model = {"ranking": Ranking, "label": Label}.get(kind)
    if model is None:
        raise Http404("no such kind of judgement")
    scope = {"candidate_set__project": membership.project} if model is Ranking else {"message__project": membership.project}
    judgement = get_object_or_404(model, pk=judgement_id, **scope)
    try:
        corrections.judgement_review(judgement=judgement, by=request.user, accepted=request.POST.get("decision") == "accept",
                                     comment=request.POST.get("comment", ""))
    except (PermissionDenied, ValidationError) as refused:
        text = _error_text(refused) if isinstance(refused, ValidationError) else str(refused)
        messages.warning(request, text.capitalize() + ".")
    else:
        messages.success(request, f"The {kind} is {'accepted' if request.POST.get('decision') == 'accept' else 'overruled: it leaves the exports'}.")
    back = request.POST.get("next", "")
    return redirect(back if back.startswith(f"/projects/{project_id}/") else reverse("annotate:project", args=[project_id]))


@login_required
def message_page(request, project_id, message_id):
    """One message for reviewers and admins: the conversation to it, the labels on it and the rankings of the
    sets it is in as they are now, and the trail of every change and withdrawal of them."""
    membership = account_selectors.membership_with_role(user=request.user, project_id=project_id, role=Role.REVIEWER)
    message = get_object_or_404(Message, pk=message_id, project=membership.project)
    path = [message]
    while path[0].parent_id:
        path.insert(0, Message.objects.get(pk=path[0].parent_id))
    return render(request, "annotate/message.html", {
        "project": membership.project, "membership": membership, "message": message, "path": path,
        "labels": Label.objects.filter(message=message).select_related("annotator").order_by("created_at"),
        "rankings": Ranking.objects.filter(candidate_set__message_ids__contains=[message.id])
        .select_related("annotator").order_by("created_at"),
        "trail": correction_selectors.message_trail(message=message),
        "is_admin": membership.has_role(Role.ADMIN),
    })


@login_required
def guidelines_page(request, project_id):
    """Every version of the guidelines (members), and what changed between two of them (?from=&to=; by default
    the current version against the one before it)."""
    membership = account_selectors.membership_for(user=request.user, project_id=project_id)
    project = membership.project
    versions = guideline_selectors.guideline_versions(project=project)
    numbers = [version["version"] for version in versions]
    old = request.GET.get("from") or (str(numbers[1]) if len(numbers) > 1 else "")
    new = request.GET.get("to") or str(numbers[0])
    diff, problem = None, None
    if old:
        try:
            if not (whole_number(old) and whole_number(new)):
                raise ValidationError({"from": "choose two version numbers"})
            diff = guideline_selectors.guideline_diff(project=project, old=int(old), new=int(new), versions=versions)
        except ValidationError as error:
            problem = _error_text(error)
    return render(request, "annotate/guidelines.html", {
        "project": project, "membership": membership, "versions": versions, "diff": diff, "problem": problem,
        "old": old, "new": new,
    }, status=400 if problem else 200)


# ---------------------------------------------------------------------------------------------
# Admin pages


def _admin_project(request, project_id):
    return account_selectors.membership_with_role(user=request.user, project_id=project_id, role=Role.ADMIN)


def _settings_page(request, membership, *, settings_form=None, guidelines_form=None, status=200):
    """Render the settings page: a form just posted as it came back, the other as saved."""
    project = membership.project
    if settings_form is None:
        settings_form = forms.SettingsForm(initial=forms.SettingsForm.initial_from(project.settings))
    if guidelines_form is None:
        guidelines_form = forms.GuidelinesForm(initial={"guidelines": project.guidelines})
    return render(
        request,
        "annotate/admin_settings.html",
        {
            "project": project,
            "membership": membership,
            "settings_form": settings_form,
            "guidelines_form": guidelines_form,
            "tab": "admin-settings",  # also when a refused post renders it from its own URL
        },
        status=status,
    )


@login_required
def admin_settings(request, project_id):
    """The queue settings and the guidelines, each saved by its own view.

    A post here (the page's forms before they had URLs of their own) goes to the view its
    `form` field names.
    """
    membership = _admin_project(request, project_id)
    if request.method == "POST":
        view = SETTINGS_FORMS.get(request.POST.get("form"))
        if view is None:
            return HttpResponse("unknown form", status=400)
        return view(request, project_id)
    return _settings_page(request, membership)


@login_required
@require_POST
def settings_update(request, project_id):
    membership = _admin_project(request, project_id)
    form = forms.SettingsForm(request.POST)
    if form.is_valid():
        try:
            account_services.project_settings_update(project=membership.project, **form.changes())
        except ValidationError as error:
            form.add_error(None, _error_text(error))
        else:
            messages.success(request, "Queue settings saved. Items already made keep their K and overlap.")
            return redirect("annotate:admin-settings", project_id=project_id)
    return _settings_page(request, membership, settings_form=form, status=400)


@login_required
@require_POST
def guidelines_update(request, project_id):
    membership = _admin_project(request, project_id)
    form = forms.GuidelinesForm(request.POST)
    if not form.is_valid():
        return _settings_page(request, membership, guidelines_form=form, status=400)
    before = membership.project.guideline_version
    project = account_services.project_update_guidelines(project=membership.project, guidelines=form.cleaned_data["guidelines"])
    if project.guideline_version != before:
        messages.success(request, f"Guidelines saved as version {project.guideline_version}.")
    else:
        messages.info(request, "The guidelines did not change.")
    return redirect("annotate:admin-settings", project_id=project.id)


SETTINGS_FORMS = {"settings": settings_update, "guidelines": guidelines_update}


def _members_page(request, membership, *, invite_form=None, status=200):
    project = membership.project
    return render(
        request,
        "annotate/admin_members.html",
        {
            "project": project,
            "membership": membership,
            "members": account_selectors.members_of(project=project),
            "invites": account_selectors.invites_open(project=project),
            "invite_form": forms.InviteForm() if invite_form is None else invite_form,
            "roles": Role.choices,
            "tab": "admin-members",  # also when a refused post renders it from its own URL
        },
        status=status,
    )


def _members_refused(request, membership, error: ValidationError, *, invite_form=None):
    messages.error(request, _error_text(error).capitalize() + ".")
    return _members_page(request, membership, invite_form=invite_form, status=400)


@login_required
def admin_members(request, project_id):
    """The members and open invites; each change is posted to its own view.

    A post here (the page's forms before they had URLs of their own) goes to the view its
    `action` field names.
    """
    membership = _admin_project(request, project_id)
    if request.method == "POST":
        view = MEMBER_ACTIONS.get(request.POST.get("action"))
        if view is None:
            return _members_refused(request, membership, ValidationError("unknown action"))
        return view(request, project_id)
    return _members_page(request, membership)


@login_required
@require_POST
def member_invite(request, project_id):
    membership = _admin_project(request, project_id)
    form = forms.InviteForm(request.POST)
    if not form.is_valid():
        return _members_refused(request, membership, ValidationError("check the invite's fields"), invite_form=form)
    try:
        invite = account_services.invite_create(project=membership.project, created_by=request.user, **form.cleaned_data)
    except ValidationError as error:
        return _members_refused(request, membership, error, invite_form=form)
    link = request.build_absolute_uri(reverse("annotate:invite", args=[invite.token]))
    messages.success(request, f"Invite link for a new {invite.get_role_display().lower()}: {link}")
    return redirect("annotate:admin-members", project_id=project_id)


def _member(request, project):
    """The member the form names (removed ones too: they can be added back), or 404."""
    return get_object_or_404(account_selectors.members_of(project=project), user_id=_int(request.POST.get("user_id")))


@login_required
@require_POST
def member_role_set(request, project_id):
    membership = _admin_project(request, project_id)
    member = _member(request, membership.project)
    try:
        account_services.membership_set(project=membership.project, user=member.user, role=request.POST.get("role", ""))
    except ValidationError as error:
        return _members_refused(request, membership, error)
    messages.success(request, f"{member.user.username} is now {request.POST['role']}.")
    return redirect("annotate:admin-members", project_id=project_id)


@login_required
@require_POST
def member_remove(request, project_id):
    membership = _admin_project(request, project_id)
    member = _member(request, membership.project)
    try:
        account_services.membership_remove(project=membership.project, user=member.user)
    except ValidationError as error:
        return _members_refused(request, membership, error)
    messages.success(request, f"{member.user.username} was removed from the project; their work stays.")
    return redirect("annotate:admin-members", project_id=project_id)


@login_required
@require_POST
def invite_revoke(request, project_id):
    membership = _admin_project(request, project_id)
    invite = get_object_or_404(Invite, pk=_int(request.POST.get("invite_id")), project=membership.project)
    try:
        account_services.invite_revoke(invite=invite)
    except ValidationError as error:
        return _members_refused(request, membership, error)
    messages.success(request, "Invite revoked.")
    return redirect("annotate:admin-members", project_id=project_id)


MEMBER_ACTIONS = {"invite": member_invite, "role": member_role_set, "remove": member_remove, "revoke": invite_revoke}


@login_required
def admin_progress(request, project_id):
    """Progress (admins) and agreement (reviewers too), with plots drawn from the figures."""
    membership = account_selectors.membership_with_role(user=request.user, project_id=project_id, role=Role.REVIEWER)
    project = membership.project
    is_admin = membership.has_role(Role.ADMIN)
    agreement = stat_selectors.project_agreement(project=project)
    names = dict(account_selectors.members_of(project=project).values_list("user_id", "user__username"))
    taus = sorted(
        (
            {"username": names.get(annotator_id, f"#{annotator_id}"), **figures}
            for annotator_id, figures in agreement["annotators"].items()
        ),
        key=lambda row: -row["mean_tau"],
    )
    context = {
        "project": project,
        "membership": membership,
        "is_admin": is_admin,
        "agreement": agreement,
        "taus": taus,
    }
    if is_admin:
        context["items"] = progress_selectors.items_per_state(project=project)
        context["item_states"] = progress_selectors.ITEM_STATES
        context["throughput"] = stat_selectors.annotator_throughput(project=project)
        context["gold"] = stat_selectors.gold_per_annotator(project=project)
        context["counts"] = stat_selectors.project_counts(project=project)
        context["finding_counts"] = screening_selectors.finding_counts(project=project)
        context["skips"] = stat_selectors.skip_reasons(project=project)
    return render(request, "annotate/admin_progress.html", context)


@login_required
def admin_throughput_csv(request, project_id):
    """Per annotator, for the lead: tasks submitted and skipped, time on task, tasks per hour, gold answered and
    right, over the last `days` (7 by default, up to 365), as CSV for a spreadsheet (admins)."""
    project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=Role.ADMIN)
    raw = request.GET.get("days", "7")
    if not whole_number(raw) or not 1 <= int(raw) <= 365:
        return HttpResponse(f"days must be a whole number from 1 to 365, not {raw[:20]!r}\n", status=400,
                            content_type="text/plain; charset=utf-8")
    since = timezone.now() - timedelta(days=int(raw))
    gold = {row["annotator_id"]: row for row in stat_selectors.gold_per_annotator(project=project)}
    skipped = stat_selectors.skips_per_annotator(project=project, since=since)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="project-{project.id}-throughput-{raw}d.csv"'
    writer = csv.writer(response)
    writer.writerow(["annotator", "submitted", "skipped", "time_on_task_s", "per_hour", "gold_answered", "gold_correct"])
    for row in stat_selectors.annotator_throughput(project=project, since=since):
        answered = gold.get(row["annotator_id"], {})
        writer.writerow([spreadsheet_safe(row["username"]), row["submitted"], skipped.get(row["annotator_id"], 0),
                         row["time_on_task_s"], row["per_hour"] if row["per_hour"] is not None else "",
                         answered.get("gold_answered", 0), answered.get("gold_correct", 0)])
    return response


def spreadsheet_safe(text: str) -> str:
    """A cell a spreadsheet shows as text: one starting with =, +, - or @ would be read as a formula (a
    username is the annotator's choice). OWASP's advice: a leading quote."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


PLOTS = {"items": Role.ADMIN, "throughput": Role.ADMIN, "agreement": Role.REVIEWER}


@login_required
def admin_plot(request, project_id, name):
    """One plot of the progress page as SVG. Shown through <img>, so nothing in it can run."""
    if name not in PLOTS:
        raise Http404("no such plot")
    project = account_selectors.project_for_member(user=request.user, project_id=project_id, role=PLOTS[name])
    if name == "items":
        svg = plots.items_svg(progress_selectors.items_per_state(project=project), progress_selectors.ITEM_STATES)
    elif name == "throughput":
        svg = plots.throughput_svg(progress_selectors.submitted_per_day(project=project))
    else:
        agreement = stat_selectors.project_agreement(project=project)
        names = dict(account_selectors.members_of(project=project).values_list("user_id", "user__username"))
        taus = sorted(
            ((names.get(user_id, f"#{user_id}"), figures["mean_tau"]) for user_id, figures in agreement["annotators"].items()),
            key=lambda pair: -pair[1],
        )
        w_values = [w for w in agreement["kendall_w_per_set"].values() if w is not None]
        svg = plots.agreement_svg(w_values, taus)
    response = HttpResponse(svg, content_type="image/svg+xml")
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    response["Cache-Control"] = "private, max-age=30"
    return response


@login_required
def admin_imports(request, project_id):
    """Upload a file for a worker to import (the same import service as the API and `manage.py import_data`);
    the page shows each import's progress while it runs, and what went in or why the file was refused."""
    membership = _admin_project(request, project_id)
    project = membership.project
    form = forms.ImportForm()
    refused = None
    status = 200
    if request.method == "POST":
        form = forms.ImportForm(request.POST, request.FILES)
        if form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                job = imports.import_enqueue(
                    project=project, format=form.cleaned_data["format"], upload=upload, filename=upload.name,
                    by=request.user, trusted=form.cleaned_data["trusted"], license=form.cleaned_data["license"],
                )
            except ImportRefused as error:
                refused = {"line": error.line, "reason": error.reason, "filename": upload.name}
                status = 400
            else:
                messages.success(request, f"{upload.name} is queued for import (job {job.id}); its progress shows below.")
                return redirect("annotate:admin-imports", project_id=project.id)
        else:
            status = 400
    jobs = list(progress_selectors.import_jobs_of(project=project))
    return render(
        request,
        "annotate/admin_imports.html",
        {
            "project": project,
            "membership": membership,
            "form": form,
            "refused": refused,
            "jobs": jobs,
            "waiting": any(not job.is_finished() for job in jobs),
            "imports": progress_selectors.imports_of(project=project),
            "format_help": forms.FORMAT_HELP,
        },
        status=status,
    )


@login_required
def admin_excluded(request, project_id):
    """Flagged and rejected messages: left out of every export until an admin clears them."""
    membership = _admin_project(request, project_id)
    project = membership.project
    if request.method == "POST":
        if request.POST.get("finding_id"):
            finding = get_object_or_404(ScreenFinding, pk=request.POST.get("finding_id"), project=project)
            screening.finding_clear(finding=finding, by=request.user)
            messages.success(request, f"Finding {finding.id} cleared: it no longer redacts or holds.")
            return redirect("annotate:admin-excluded", project_id=project.id)
        message = get_object_or_404(Message, pk=request.POST.get("message_id"), project=project)
        # Clears the screen's findings on it too, so the message is included again and stays included.
        screening.message_findings_clear(message=message, by=request.user)
        messages.success(request, f"Message {message.id} cleared: it counts in exports again.")
        return redirect("annotate:admin-excluded", project_id=project.id)
    excluded = list(progress_selectors.excluded_messages(project=project))
    findings = screening_selectors.findings_of_messages(message_ids=[message.id for message in excluded])
    for message in excluded:
        message.findings = findings.get(message.id, [])
        message.pieces = screening_selectors.highlighted(message.text, [(f.start, f.end, f.kind) for f in message.findings])
    return render(
        request,
        "annotate/admin_excluded.html",
        {"project": project, "membership": membership, "excluded": excluded,
         "live_findings": screening_selectors.findings_outside_held(project=project)},
    )


# ---------------------------------------------------------------------------------------------
# Invites


def invite_page(request, token):
    """Show an invite; a logged-in user joins with one click, a new person makes an account."""
    invite = account_selectors.invite_by_token(token=token)
    problem = account_services.invite_problem(invite)
    errors = {}
    if request.method == "POST" and not problem:
        try:
            if request.user.is_authenticated:
                account_services.invite_accept(token=token, user=request.user)
            else:
                user = account_services.user_register_with_invite(
                    token=token,
                    username=request.POST.get("username", ""),
                    password=request.POST.get("password", ""),
                    email=request.POST.get("email", ""),
                )
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        except ValidationError as error:
            errors = _errors(error)
        else:
            messages.success(request, f"You joined {invite.project.name}.")
            return redirect("annotate:project", project_id=invite.project_id)
    return render(
        request,
        "annotate/invite.html",
        {"invite": invite, "problem": problem, "errors": errors, "values": request.POST},
        status=400 if errors else 200,
    )



# ---------------------------------------------------------------------------------------------
# Accounts


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's password change page; the change also ends the user's other sessions and API tokens."""

    def form_valid(self, form):
        # Django saves the password and keeps this session under a new key; then the rest go.
        response = super().form_valid(form)
        account_services.user_password_changed(user=form.user, keep_session_key=self.request.session.session_key)
        return response
