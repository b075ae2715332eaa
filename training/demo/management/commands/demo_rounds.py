"""Run demo rounds unattended and print the hidden-check figures of every version (training/demo/rounds.py)."""

import json

from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from training.demo.rounds import HELDOUT, HELDOUT_ADOPTED, rounds_run
from training.trainers import stages


class Command(BaseCommand):
    help = ("Load the demo project if needed, then run ROUNDS rounds unattended: scripted annotators (over HTTP), "
            "base (first round: from scratch, or --base adopted), the stages of the recipe (SFT, reward model, PPO by "
            "default), the hidden check and the general-ability check of every version, deploy, generate.")

    def add_arguments(self, parser):
        parser.add_argument("--rounds", type=int, default=1, help="rounds to run (with --up-to: until there are this many)")
        parser.add_argument("--up-to", action="store_true", help="count the rounds already done towards --rounds")
        parser.add_argument("--preset", default="demo")
        recipes = "; ".join(f"{r.name}: {' -> '.join(r.stages)}" for r in stages.RECIPES.values())
        # No argparse choices, as for manage.py train: a recipe this TRL lacks is refused by the service, with why.
        parser.add_argument("--recipe", default=None, help=f"the stages after the base (default "
                            f"{stages.default_recipe()}). {recipes}")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--heldout", type=int, default=None,
                            help=f"held-out problems each version is measured on (default {HELDOUT}, {HELDOUT_ADOPTED} "
                                 "with --base)")
        parser.add_argument("--prompts-per-round", type=int, default=200, help="new prompts the annotators write per round")
        parser.add_argument("--config", default="{}", help="per stage overrides as JSON, as for manage.py train "
                            "(with --base, over the settings the demo chooses for a pretrained model)")
        parser.add_argument("--base", default="", help="run the demo from this pretrained model, in a project of its "
                            "own: a registered base model's name (e.g. smollm2, see manage.py base_convert) or a model "
                            "directory under BASE_MODEL_ROOTS; its first round adopts it and pretrains nothing")

    def handle(self, *args, rounds, up_to, preset, recipe, seed, heldout, prompts_per_round, config, base, **options):
        try:
            overrides = json.loads(config)
        except ValueError as error:
            raise CommandError(f"--config is not JSON: {error}") from None
        call_command("migrate", interactive=False, verbosity=0)
        try:
            rounds_run(rounds=rounds, up_to=up_to, preset=preset, recipe=recipe, seed=seed, heldout=heldout,
                       prompts_per_round=prompts_per_round, config=overrides, base=base, out=self.stdout.write)
        except ValidationError as error:  # a recipe that is unknown or unavailable here, a bad setting, a refused base
            raise CommandError(" ".join(error.messages)) from None
