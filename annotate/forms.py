"""Forms for the admin pages: they parse and bound what a page posts; services do the writing."""

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from annotate.importers import FORMATS, license_problem
from annotate.models import Role, TaskKind
from annotate.services.accounts import rubrics_clean

# What each import format expects, shown next to the format menu.
FORMAT_HELP = {
    "prompts-jsonl": "JSON Lines, one prompt per line: {\"prompt\": ...} or {\"text\": ...}",
    "prompts-csv": "CSV with a prompt or text column",
    "messages": "JSON Lines of chats: {\"messages\": [{\"role\": ..., \"content\": ...}, ...]}",
    "sharegpt": "JSON Lines of ShareGPT chats: {\"conversations\": [{\"from\": \"human\", \"value\": ...}, ...]}",
    "pairs": "JSON Lines of preference pairs: chosen/rejected as message lists or Anthropic HH text",
    "oasst-messages": "Open-Assistant flat messages (message_id, parent_id, role, text, rank ...)",
    "oasst-trees": "Open-Assistant nested trees (prompt with replies)",
    "cornell": "the Cornell Movie-Dialogs corpus as a zip",
    "text": "plain text, documents separated by blank lines (a pretraining corpus)",
}


class ProjectCreateForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class GuidelinesForm(forms.Form):
    guidelines = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 14}), help_text="Markdown. Saving a change raises the version."
    )


class SettingsForm(forms.Form):
    """The queue's settings, with the bounds the API enforces."""

    replies_per_ranking = forms.IntegerField(min_value=2, max_value=9, label="Replies per ranking (K)")
    overlap = forms.IntegerField(
        min_value=1, max_value=20, label="Overlap", help_text="distinct annotators per ranking, comparison, label and review"
    )
    demonstrations_per_prompt = forms.IntegerField(min_value=1, max_value=20, label="Demonstrations per prompt")
    max_depth = forms.IntegerField(min_value=1, max_value=20, label="Deepest user turn of a chat")
    lease_minutes = forms.IntegerField(
        min_value=1, max_value=7 * 24 * 60, label="Lease (minutes)", help_text="how long a task stays with one annotator"
    )
    flag_threshold = forms.IntegerField(
        min_value=1, max_value=100, label="Flag threshold", help_text="annotators who must flag a message to exclude it"
    )
    correction_minutes = forms.IntegerField(
        min_value=0, max_value=30 * 24 * 60, label="Correction window (minutes)",
        help_text="how long annotators may change or withdraw their own rankings and labels; 0: never")
    rubrics = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), label="Rubrics on label tasks",
        help_text="one 1-5 scale a line: key | Label | help (helpful | Helpful | does it answer the question)")

    def clean_rubrics(self):
        rubrics = []
        for line in self.cleaned_data["rubrics"].splitlines():
            if line.strip():
                key, label, help_text = ([part.strip() for part in line.split("|")] + ["", ""])[:3]
                rubrics.append({"key": key, "label": label or key, "help": help_text})
        try:
            return rubrics_clean(rubrics)
        except ValidationError as error:
            raise forms.ValidationError(error.message_dict["rubrics"]) from None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for kind in TaskKind:
            self.fields[f"mix_{kind.value}"] = forms.FloatField(
                min_value=0, max_value=1_000_000, label=kind.label
            )

    @staticmethod
    def initial_from(settings) -> dict:
        initial = {
            name: getattr(settings, name)
            for name in ("replies_per_ranking", "overlap", "demonstrations_per_prompt", "max_depth", "flag_threshold")
        }
        initial["lease_minutes"] = max(1, settings.lease_seconds // 60)
        initial["correction_minutes"] = settings.correction_minutes
        initial["rubrics"] = "\n".join(" | ".join(filter(None, (r["key"], r["label"], r["help"]))) for r in settings.rubrics)
        initial.update({f"mix_{kind}": weight for kind, weight in settings.weights().items()})
        return initial

    def mix_fields(self):
        return [self[f"mix_{kind.value}"] for kind in TaskKind]

    def queue_fields(self):
        return [self[name] for name in self.fields if not name.startswith("mix_")]

    def changes(self) -> dict:
        data = dict(self.cleaned_data)
        changes = {name: data[name] for name in data if not name.startswith("mix_") and name != "lease_minutes"}
        changes["lease_seconds"] = data["lease_minutes"] * 60
        changes["task_mix"] = {kind.value: data[f"mix_{kind.value}"] for kind in TaskKind}
        return changes


class InviteForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices, initial=Role.ANNOTATOR)
    note = forms.CharField(max_length=200, required=False, help_text="who it is for")
    days = forms.IntegerField(min_value=1, max_value=365, initial=lambda: settings.INVITE_DAYS, label="Valid for (days)")


class MemberRoleForm(forms.Form):
    user_id = forms.IntegerField(widget=forms.HiddenInput)
    role = forms.ChoiceField(choices=Role.choices)


class ImportForm(forms.Form):
    format = forms.ChoiceField(choices=[(name, f"{name}: {FORMAT_HELP.get(name, '')}") for name in FORMATS])
    file = forms.FileField()
    trusted = forms.BooleanField(
        required=False, label="Its replies are demonstrations to imitate",
        help_text="A dialogue corpus: its replies go in accepted, so the SFT export takes them (never the losing side "
                  "of a pair or ranking in the file).")
    license = forms.CharField(
        required=False, max_length=64, label="Licence of its content",
        help_text="A Hugging Face licence id (cc-by-4.0, apache-2.0, mit, other), named for this file in every "
                  "dataset card; empty: unknown.")

    def clean_license(self):
        license = self.cleaned_data["license"].strip()
        if problem := license_problem(license):
            raise forms.ValidationError(problem)
        return license
