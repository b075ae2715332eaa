"""Import a large generated file and print its time and the process's peak memory.

    .venv/bin/python bench/import_bench.py --megabytes 200 --format pairs

The file is written to a temporary folder first (HH-style preference pairs, or prompts), then
imported through the same service as the command and API, into a fresh embedded PostgreSQL.
Target (issue 5): a 200 MB file imports with the process under 300 MB peak.
"""

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_file(path: Path, *, megabytes: int, format: str) -> int:
    rng = random.Random(1)
    target, written, rows = megabytes * 1024 * 1024, 0, 0
    with path.open("w") as out:
        while written < target:
            a, b = rng.randint(1, 10**6), rng.randint(1, 10**6)
            question = f"Row {rows}: what is {a} + {b}? Explain the steps briefly, please."
            if format == "pairs":
                record = {
                    "chosen": f"\n\nHuman: {question}\n\nAssistant: Adding {a} and {b} gives {a + b}.",
                    "rejected": f"\n\nHuman: {question}\n\nAssistant: It is {a + b + rng.randint(1, 9)}.",
                }
            else:
                record = {"prompt": question}
            line = json.dumps(record) + "\n"
            out.write(line)
            written += len(line)
            rows += 1
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--format", choices=["pairs", "prompts-jsonl"], default="pairs")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="import-bench-"))
    os.environ.setdefault("PLATFORM_DATA_DIR", str(folder / "data"))
    path = folder / "big.jsonl"
    rows = write_file(path, megabytes=args.megabytes, format=args.format)

    sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_config.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from annotate.importers import import_run
    from annotate.services import accounts as account_services

    call_command("migrate", verbosity=0)
    owner = get_user_model().objects.create_user("bench-owner", is_staff=True)
    project = account_services.project_create(name="import bench", created_by=owner)
    before = peak_mb()
    started = time.perf_counter()
    with path.open("rb") as stream:
        batch = import_run(project=project, format=args.format, stream=stream, filename=path.name)
    elapsed = time.perf_counter() - started
    size = path.stat().st_size / 1024 / 1024
    print(f"file: {size:.0f} MB, {rows} {args.format} lines -> {batch.counts}")
    print(f"import: {elapsed:.1f} s ({size / elapsed:.1f} MB/s, {rows / elapsed:.0f} lines/s)")
    print(f"peak memory of the process: {peak_mb():.0f} MB (after Django setup, before the import: {before:.0f} MB)")


if __name__ == "__main__":
    main()
