"""Import a large generated file and compare with PostgreSQL's own COPY of the same rows.

    DATABASE_URL=postgres://... .venv/bin/python bench/import_bench.py --megabytes 200 --format prompts-jsonl

The file is written to a temporary folder first (prompts, or HH-style preference pairs), then, --repeat
times (3 by default) in turn:
  1. imported through the same service as the command and API (import_run: all or nothing, one
     transaction), into a fresh project;
  2. the rows that import wrote (its messages, candidate sets, rankings and work items, as text, under
     new ids) are stored again with `COPY ... FROM STDIN` in one transaction, rolled back: what the
     database itself takes to store them, with the same indexes, foreign keys and constraints.
It prints each time, the medians, their ratio and the process's peak memory; with --profile, the
import's top functions (cProfile) for one extra run. Without DATABASE_URL it uses the embedded
PostgreSQL in a temporary data folder.
Target (issue 18): a 200 MB prompts file and a 200 MB pairs file each within 3x of COPY, with the process
under 300 MB peak. Measured: pairs 1.94x (168.1 s against 86.8 s, peak 134 MB), prompts 1.45x (peak 117 MB).
"""

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What an import writes, table by table, in an order the foreign keys accept.
TABLES = ("annotate_message", "annotate_candidateset", "annotate_ranking", "annotate_workitem")


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


def written_rows(connection, batch, folder: Path) -> dict[str, tuple[str, Path]]:
    """Save the rows an import wrote, per table, in COPY's text format, under new ids (each id and reference
    moved past its table's largest id) so that they can be stored again beside themselves: (columns, file)."""
    from annotate.models import CandidateSet, Message, Ranking, WorkItem

    models = dict(zip(TABLES, (Message, CandidateSet, Ranking, WorkItem)))
    shift = {table: f"(SELECT max(id) FROM {table})" for table in TABLES}
    moved = {  # column -> the table whose ids it holds
        "annotate_message": {"id": "annotate_message", "parent_id": "annotate_message", "root_id": "annotate_message"},
        "annotate_candidateset": {"id": "annotate_candidateset", "parent_id": "annotate_message"},
        "annotate_ranking": {"id": "annotate_ranking", "candidate_set_id": "annotate_candidateset"},
        "annotate_workitem": {"id": "annotate_workitem", "message_id": "annotate_message",
                              "candidate_set_id": "annotate_candidateset"},
    }
    batch_filter = json.dumps({"import": batch.id})
    where = {table: f"origin @> '{batch_filter}'" for table in TABLES[:3]}
    where["annotate_workitem"] = (f"message_id IN (SELECT id FROM annotate_message WHERE origin @> '{batch_filter}')")
    files = {}
    with connection.cursor() as cursor:
        for table, model in models.items():
            columns = [field.column for field in model._meta.concrete_fields]
            values = []
            for column in columns:
                if column in moved[table]:
                    values.append(f"{column} + {shift[moved[table][column]]}")
                elif column == "message_ids":
                    values.append(f"(SELECT array_agg(m + {shift['annotate_message']}) FROM unnest(message_ids) m)")
                else:
                    values.append(column)
            path = folder / f"{table}.copy"
            query = f"SELECT {', '.join(values)} FROM {table} WHERE {where[table]}"
            with path.open("wb") as out, cursor.cursor.copy(f"COPY ({query}) TO STDOUT") as copy:
                for block in copy:
                    out.write(block)
            files[table] = (", ".join(columns), path)
    return files


def copy_again(connection, files: dict[str, tuple[str, Path]]) -> float:
    """COPY the saved rows into their tables in one transaction, roll it back, and return the seconds it took."""
    from django.db import transaction

    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        for table in TABLES:
            columns, path = files[table]
            with path.open("rb") as source, cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                while block := source.read(1 << 20):
                    copy.write(block)
        # The foreign keys are deferred (Django makes them so): checked at the import's commit, and here now,
        # since a rollback would skip them.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        elapsed = time.perf_counter() - started
        transaction.set_rollback(True)
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--format", choices=["pairs", "prompts-jsonl"], default="prompts-jsonl")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="then profile one more import (cProfile)")
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
    from django.db import connection

    from annotate.importers import import_run
    from annotate.services import accounts as account_services

    call_command("migrate", verbosity=0)
    owner, _ = get_user_model().objects.get_or_create(username="bench-owner", defaults={"is_staff": True})
    size = path.stat().st_size / 1024 / 1024
    print(f"file: {size:.0f} MB, {rows} {args.format} lines; load {os.getloadavg()[0]:.2f} at the start")
    before = peak_mb()
    imports, copies = [], []
    for attempt in range(args.repeat):
        project = account_services.project_create(name=f"import bench {attempt}", created_by=owner)
        started = time.perf_counter()
        with path.open("rb") as stream:
            batch = import_run(project=project, format=args.format, stream=stream, filename=path.name)
        imports.append(time.perf_counter() - started)
        files = written_rows(connection, batch, folder)
        copies.append(copy_again(connection, files))
        print(f"  {attempt + 1}: import {imports[-1]:.1f} s ({size / imports[-1]:.1f} MB/s), "
              f"COPY of its rows {copies[-1]:.1f} s -> {batch.counts}", flush=True)
    imported, copied = statistics.median(imports), statistics.median(copies)
    print(f"import: median {imported:.1f} s ({size / imported:.1f} MB/s, {rows / imported:.0f} lines/s)")
    print(f"COPY of the same rows: median {copied:.1f} s; ratio import / COPY: {imported / copied:.2f}")
    print(f"peak memory of the process: {peak_mb():.0f} MB (after Django setup, before the imports: {before:.0f} MB)")
    print(f"load {os.getloadavg()[0]:.2f} at the end")
    if args.profile:
        project = account_services.project_create(name="import bench profiled", created_by=owner)
        profile = cProfile.Profile()
        with path.open("rb") as stream:
            profile.runcall(import_run, project=project, format=args.format, stream=stream, filename=path.name)
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(25)
        print(out.getvalue())


if __name__ == "__main__":
    main()
