from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    verbose_name = "Training"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # The screen classifier joins the content screen's detectors: annotate never imports training.
        from annotate.services.screening import SCREEN_PROVIDERS
        from training.screen_provider import classifier_screen

        if classifier_screen not in SCREEN_PROVIDERS:
            SCREEN_PROVIDERS.append(classifier_screen)
