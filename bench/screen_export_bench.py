"""Export speed with the content screen's findings applied and with none, in one run (issue 21).

    DATABASE_URL=postgres://.../<yours> .venv/bin/python bench/screen_export_bench.py [--pairs 60000] [--findings 50]

Builds a preference project as bench/export_bench.py does, then exports it in-process (JSONL, no Parquet)
alternately with no findings and with `--findings` live email redactions on its messages, three times each,
and prints the best time of each and their ratio. Exports read the stored findings once and look each message
up in a dict, so the two should be within noise of each other.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=60_000)
    parser.add_argument("--findings", type=int, default=50)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="screen-export-bench-"))
    os.environ.setdefault("PLATFORM_DATA_DIR", str(folder / "data"))
    os.environ["SNAPSHOT_STORE"] = str(folder / "snapshots")
    sys.path[:0] = [str(ROOT / "platform"), str(ROOT), str(ROOT / "bench")]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_config.settings")
    import django

    django.setup()
    from export_bench import seed

    from annotate.models import Message, Project, ScreenFinding
    from training.services.snapshots import snapshot_create

    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    project = Project.objects.get(id=seed(args.pairs))
    # Prompts and replies with a span to redact, spread over the project.
    every = max(1, Message.objects.filter(project=project).count() // args.findings)
    chosen = list(Message.objects.filter(project=project).order_by("id").values_list("id", flat=True)[::every][:args.findings])
    rows = [ScreenFinding(project=project, message_id=m, where="backfill", kind="email", category="personal",
                          start=0, end=5, detector="bench", detector_version="1", action="redact") for m in chosen]
    best = {"none": float("inf"), "with findings": float("inf")}
    for _ in range(3):
        for label in best:
            ScreenFinding.objects.filter(project=project).delete()
            if label != "none":
                ScreenFinding.objects.bulk_create(rows)
                for row in rows:
                    row.pk = None
            started = time.perf_counter()
            snapshot = snapshot_create(project=project, kind="preference", parquet=False)
            best[label] = min(best[label], time.perf_counter() - started)
    print(f"{sum(snapshot.rows.values())} pairs; best of 3: no findings {best['none']:.2f} s, "
          f"{len(rows)} findings {best['with findings']:.2f} s, ratio {best['with findings'] / best['none']:.3f}")
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
