"""Annotator-facing pages: home, project page, invites."""

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render

from annotate.selectors import accounts as account_selectors
from annotate.services import accounts as account_services


@login_required
def home(request):
    projects = account_selectors.projects_for_user(user=request.user).order_by("name")
    return render(request, "annotate/home.html", {"projects": projects})


@login_required
def project_page(request, project_id):
    membership = account_selectors.membership_for(user=request.user, project_id=project_id)
    return render(request, "annotate/project.html", {"project": membership.project, "membership": membership})


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
            errors = error.message_dict if hasattr(error, "message_dict") else {"__all__": error.messages}
        else:
            messages.success(request, f"You joined {invite.project.name}.")
            return redirect("annotate:project", project_id=invite.project_id)
    return render(
        request,
        "annotate/invite.html",
        {"invite": invite, "problem": problem, "errors": errors, "values": request.POST},
        status=400 if errors else 200,
    )
