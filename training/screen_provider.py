"""The screen classifier as one of the content screen's detectors (annotate.services.screening.SCREEN_PROVIDERS).

Where an admin chose a screen classifier version for a project (training.ScreenClassifier), every text the screen
looks at is scored by it, and one whose probability of harmful is above the chosen threshold is a finding of kind
"classifier" over the whole text, named by the version ("screen-v3") and carrying its score. The model loads once
per process and version (torch's import and the load cost seconds, so a project without a classifier never pays
them) and scores a batch of texts in one pass.
"""

from functools import lru_cache

from django.conf import settings

from annotate.screen.detectors import Span

DETECTOR = "classifier"


@lru_cache(maxsize=4)
def _scorer(folder: str):
    from training.trainers.screen_classifier import HarmScorer

    return HarmScorer(folder)


def classifier_screen(project):
    """The project's classifier as a function from texts to the spans it finds in each; None without one."""
    from training.models import ScreenClassifier
    from training.trainers.adapters import handed_on

    # Looked up once per project object, as annotate's screen_settings is: a generation job screens every reply
    # through the same object, and a query per reply cost a third of the job's screening time.
    chosen = getattr(project, "_screen_classifier", False)
    if chosen is False:
        chosen = ScreenClassifier.objects.filter(project=project).select_related("model_version").first()
        project._screen_classifier = chosen
    if chosen is None:
        return None
    version = chosen.model_version
    scorer = _scorer(handed_on(str(settings.MODEL_STORE / version.folder)))
    name = f"{version.kind}-v{version.version}"

    def screen(texts: list[str]) -> list[list[Span]]:
        scored = iter(scorer([text for text in texts if text.strip()]))
        found = []
        for text in texts:
            score = next(scored) if text.strip() else 0.0
            found.append([Span(DETECTOR, 0, len(text), DETECTOR, version=name, score=round(score, 4))]
                         if score > chosen.threshold else [])
        return found

    return screen
