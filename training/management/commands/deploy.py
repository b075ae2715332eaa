"""Deploy a model version to a project, undeploy, roll back, or queue generation (the same
services as the models page and the API)."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotate.models import Project
from training.models import Backend, Deployment, ModelVersion
from training.services import serving


class Command(BaseCommand):
    help = (
        "Deploy a model version (--model policy-v2) to a project so that it writes candidates and answers "
        "chats; or --undeploy it, --rollback to the version deployed before, or --generate candidates."
    )

    def add_arguments(self, parser):
        parser.add_argument("--project", type=int, required=True)
        parser.add_argument("--model", dest="model", help="the model version's name, e.g. sft-v1 or policy-v2")
        parser.add_argument("--backend", choices=Backend.values, default=Backend.TRANSFORMERS)
        parser.add_argument("--url", default="", help="the OpenAI-compatible server (openai backend)")
        parser.add_argument("--served-model", default="", help="the model's name at that server")
        parser.add_argument("--temperature", type=float)
        parser.add_argument("--top-p", type=float)
        parser.add_argument("--max-new-tokens", type=int)
        parser.add_argument("--seed", type=int)
        parser.add_argument("--share", type=int, default=1)
        parser.add_argument("--keep-others", action="store_true", help="deploy beside what is deployed now")
        parser.add_argument("--undeploy", action="store_true", help="end the version's deployment")
        parser.add_argument("--rollback", action="store_true", help="deploy again the version deployed before")
        parser.add_argument("--generate", type=int, metavar="PROMPTS", help="then queue generation for up to PROMPTS prompts")

    def handle(self, *args, project, model, undeploy, rollback, generate, **options):
        version = model
        found = Project.objects.filter(pk=project).first()
        if found is None:
            raise CommandError(f"no project with id {project}")
        try:
            if rollback:
                deployment = serving.deployment_rollback(project=found, by=None)
                self.stdout.write(f"Rolled back: {deployment.model_version.name} is deployed.")
            elif version:
                chosen = _version(found, version)
                if undeploy:
                    deployment = Deployment.objects.filter(project=found, model_version=chosen, is_active=True).first()
                    if deployment is None:
                        raise CommandError(f"{version} is not deployed to project {project}")
                    serving.deployment_end(deployment=deployment)
                    self.stdout.write(f"{version} is no longer deployed.")
                else:
                    sampling = {name: options[name] for name in ("temperature", "top_p", "max_new_tokens", "seed")
                                if options[name] is not None}
                    deployment = serving.deployment_create(
                        project=found, model_version=chosen, by=None, backend=options["backend"], url=options["url"],
                        served_model=options["served_model"], sampling=sampling, share=options["share"],
                        replace=not options["keep_others"],
                    )
                    self.stdout.write(f"{version} is deployed to {found.name} ({deployment.backend}, {deployment.sampling}).")
            elif not generate:
                raise CommandError("say what to do: --model NAME (to deploy or --undeploy), --rollback or --generate N")
            if generate:
                job = serving.generation_enqueue(project=found, by=None, max_prompts=generate)
                self.stdout.write(f"Generation job {job.id} queued for a worker.")
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None


def _version(project, name: str) -> ModelVersion:
    kind, _, number = name.partition("-v")
    found = ModelVersion.objects.filter(project=project, kind=kind, version=int(number) if number.isdigit() else -1).first()
    if found is None:
        raise CommandError(f"project {project.id} has no model version {name!r} (names look like sft-v1, policy-v2)")
    return found
