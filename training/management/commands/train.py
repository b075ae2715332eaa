"""Start a training round (the same service as the page and the API), or run one here and now."""

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotate.models import Project
from training import selectors
from training.models import TrainingRun
from training.services import runs, supervisor
from training.trainers import stages


class Command(BaseCommand):
    help = (
        "Start a training round for a project: base (first round only), then the stages of its recipe. By "
        "default a worker runs it; --here runs it in this process and prints progress."
    )

    def add_arguments(self, parser):
        parser.add_argument("--project", type=int, required=True)
        parser.add_argument("--preset", default="tiny", help="tiny (CPU tests), small, demo, gpu")
        recipes = "; ".join(f"{r.name}: {' -> '.join(r.stages)} ({r.description})" for r in stages.RECIPES.values())
        # No argparse choices: a recipe this TRL lacks (ppo on TRL 1.13) is refused by the service, with why.
        parser.add_argument("--recipe", "--algorithm", dest="recipe", default=stages.default_recipe(),
                            help=f"the stages after the base. {recipes}")
        parser.add_argument("--config", default="{}", help='per stage overrides as JSON: \'{"sft": {"max_steps": 20}}\'')
        parser.add_argument("--base", default="", help="the base model to adopt: a registered base model's name "
                            "(manage.py base_convert), or a model directory under BASE_MODEL_ROOTS")
        parser.add_argument("--processes", type=int, default=1, help="processes per stage (accelerate launch)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--here", action="store_true", help="run the round in this process instead of a worker")
        parser.add_argument("--resume", type=int, metavar="ROUND", help="resume this failed round instead of starting one")

    def handle(self, *args, project, preset, recipe, config, base, processes, seed, here, resume, **options):
        found = Project.objects.filter(pk=project).first()
        if found is None:
            raise CommandError(f"no project with id {project}")
        try:
            overrides = json.loads(config)
        except ValueError as error:
            raise CommandError(f"--config is not JSON: {error}") from None
        try:
            if resume:
                run = TrainingRun.objects.filter(project=found, number=resume).first()
                if run is None:
                    raise CommandError(f"project {project} has no round {resume}")
                run = runs.run_resume(run=run)
            else:
                run = runs.run_create(
                    project=found, by=None, preset=preset, recipe=recipe, config=overrides,
                    base_source=base, processes=processes, seed=seed,
                )
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        names = ", ".join(run.stages.order_by("order").values_list("name", flat=True))
        self.stdout.write(f"Round {run.number} (id {run.id}) of {found.name}: {names}")
        if not here:
            self.stdout.write("Queued for a worker (manage.py procrastinate worker); follow it on its page or the API.")
            return
        status = supervisor.run_execute(run_id=run.id)
        run.refresh_from_db()
        for stage in selectors.run_payload(run)["stages"]:
            version = stage["model_version"]
            metrics = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in (version or {}).get("metrics", {}).items())
            self.stdout.write(f"  {stage['name']:7} {stage['status']:10} {version['name'] if version else '-':10} {metrics}")
        if status != "succeeded":
            raise CommandError(f"round {run.number} {status}: {run.error}")
