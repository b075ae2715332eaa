"""Export 1,000,000 preference pairs and compare with PostgreSQL's own COPY of the same pairs.

    .venv/bin/python bench/export_bench.py [--pairs 1000000] [--project ID]

Builds a project whose rankings imply the pairs (sets of K=4 replies, each ranked once
without ties: 6 pairs a ranking), then in one run:
  1. `manage.py export_snapshot --kind preference` in a child process: its time and peak memory
     (the export writes JSON from Python, streamed, and imports no torch);
  2. `COPY (SELECT prompt, chosen, rejected text of the same pairs) TO STDOUT` into a file.
Target (issue 5): the export within 3x of COPY's time, peak memory under 300 MB.

`--project ID` measures again on a project an earlier run built (its id is printed), without
building another (keep PLATFORM_DATA_DIR the same between the runs).
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

COPY_PAIRS = """
COPY (
    SELECT prompt.text, chosen.text, rejected.text
    FROM annotate_ranking r
    JOIN annotate_candidateset cs ON cs.id = r.candidate_set_id
    JOIN annotate_message prompt ON prompt.id = cs.parent_id
    CROSS JOIN LATERAL jsonb_array_elements(r.tiers) WITH ORDINALITY AS upper_tier(ids, i)
    CROSS JOIN LATERAL jsonb_array_elements(r.tiers) WITH ORDINALITY AS lower_tier(ids, j)
    CROSS JOIN LATERAL jsonb_array_elements_text(upper_tier.ids) AS better(id)
    CROSS JOIN LATERAL jsonb_array_elements_text(lower_tier.ids) AS worse(id)
    JOIN annotate_message chosen ON chosen.id = better.id::bigint
    JOIN annotate_message rejected ON rejected.id = worse.id::bigint
    WHERE cs.project_id = {project} AND NOT r.all_bad AND upper_tier.i < lower_tier.j
) TO STDOUT
"""


def seed(pairs: int) -> int:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from psycopg.types.json import Jsonb

    from annotate.importers.base import IdPool, copy_rows
    from annotate.models import CandidateSet, Message
    from annotate.services import accounts as account_services

    call_command("migrate", verbosity=0)
    User = get_user_model()
    owner = User.objects.create_user(f"owner{time.time_ns()}", is_staff=True)
    annotator = User.objects.create_user(f"annotator{time.time_ns()}")
    project = account_services.project_create(name="export bench", created_by=owner)
    message_ids, set_ids = IdPool(Message), IdPool(CandidateSet)
    sets_needed = pairs // 6
    for start in range(0, sets_needed, 5000):
        messages, sets, rankings = [], [], []
        for n in range(start, min(start + 5000, sets_needed)):
            prompt = message_ids.take()
            messages.append({"id": prompt, "project_id": project.id, "parent_id": None, "root_id": prompt, "depth": 0,
                             "role": "user", "text": f"Question {n}: what is {n} + {n * 7 % 1000}? Show your work.",
                             "source": "import"})
            replies = []
            for k in range(4):
                reply = message_ids.take()
                replies.append(reply)
                messages.append({"id": reply, "project_id": project.id, "parent_id": prompt, "root_id": prompt,
                                 "depth": 1, "role": "assistant",
                                 "text": f"Reply {k}: {n} + {n * 7 % 1000} = {n + n * 7 % 1000 + k}. That is the sum.",
                                 "source": "model"})
            set_id = set_ids.take()
            sets.append({"id": set_id, "project_id": project.id, "parent_id": prompt, "kind": "ranking",
                         "message_ids": replies})
            rankings.append({"candidate_set_id": set_id, "annotator_id": annotator.id,
                             "tiers": Jsonb([[reply] for reply in replies])})
        from annotate.models import Ranking

        copy_rows(Message, messages)
        copy_rows(CandidateSet, sets)
        copy_rows(Ranking, rankings)
    return project.id


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--project", type=int, help="export this project, built by an earlier run, instead of building one")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="export-bench-"))
    os.environ.setdefault("PLATFORM_DATA_DIR", str(folder / "data"))
    os.environ["SNAPSHOT_STORE"] = str(folder / "snapshots")
    sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_config.settings")
    import django

    django.setup()
    from django.db import connection

    if args.project:
        project_id = args.project
    else:
        started = time.perf_counter()
        project_id = seed(args.pairs)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        print(f"built {args.pairs} pairs' worth of rankings in {time.perf_counter() - started:.0f} s (project {project_id})")

    started = time.perf_counter()
    child = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "export_snapshot", "--project", str(project_id),
         "--kind", "preference", "--no-parquet", "-v", "2"],
        capture_output=True, text=True,
    )
    export_s = time.perf_counter() - started
    if child.returncode != 0:
        raise SystemExit(child.stderr[-2000:])
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak, export_cpu = usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime
    print(child.stdout.strip())

    target = folder / "copy.tsv"
    started = time.perf_counter()
    with connection.cursor() as cursor, target.open("wb") as out:
        with cursor.cursor.copy(COPY_PAIRS.format(project=project_id)) as copy:
            for block in copy:
                out.write(block)
    copy_s = time.perf_counter() - started
    copied = sum(1 for _ in target.open("rb"))
    exported = sum(f.stat().st_size for f in (folder / "snapshots").rglob("preference-*.jsonl"))
    # The CPU time as well as the wall time: on a shared machine it is the steadier figure.
    print(f"export (Python, JSONL with provenance): {export_s:.1f} s ({export_cpu:.1f} s CPU), peak memory {peak:.0f} MB, "
          f"{exported / 1e6:.0f} MB written")
    print(f"COPY of the same pairs (3 text columns): {copy_s:.1f} s, {copied} rows, {target.stat().st_size / 1e6:.0f} MB")
    print(f"ratio export / COPY: {export_s / copy_s:.2f}")


if __name__ == "__main__":
    main()
