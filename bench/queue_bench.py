"""Drive the queue over HTTP with N concurrent simulated annotators; print cycles/s and latency.

A cycle is: get the next task, then submit it (a ranking of K=4 replies), with no think time.
  --mode separate  two requests per cycle: POST tasks/next/, then POST tasks/<id>/submit/
  --mode chained   the submit asks for the next task too (`next: true`), as the pages do

The server is the production setup from the README: gunicorn with platform/gunicorn.conf.py,
on loopback, against a fresh embedded PostgreSQL in a temporary data folder (or DATABASE_URL).
The load generator runs in separate processes on the same machine; every loop is bounded by a
item count and a time limit.

    .venv/bin/python bench/queue_bench.py --annotators 50 10 --mode separate chained

`--beside quiet training unniced` measures each mode and size three ways in one run: with nothing else
running; beside an SFT stage at the demo preset (a 2-layer GPT of width 128, batch 16, as the demo's round
trains it), started as the worker starts it (supervisor._child_env and _child_start: TRAINING_NICE, threads
capped at TRAINING_THREADS); and beside the same stage at nice 0 with torch's default threads, as it ran before.
"""

import argparse
import secrets
import http.client
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_django():
    sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_config.settings")
    import django

    django.setup()


def seed(*, annotators: int, items: int, overlap: int) -> tuple[int, list[str]]:
    """Create a project with `items` ranking items and `annotators` members; return tokens."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from annotate.models import Role
    from annotate.services import accounts as account_services

    from tests.annotate.factories import ranking_items

    call_command("migrate", verbosity=0)
    User = get_user_model()
    owner = User.objects.create_user(f"owner{time.time_ns()}", is_staff=True)
    project = account_services.project_create(name=f"bench {time.time_ns()}", created_by=owner)
    mix = {kind: 0 for kind in ("prompt", "demonstration", "compare", "label", "review")}
    account_services.project_settings_update(project=project, overlap=overlap, task_mix={**mix, "ranking": 1})
    ranking_items(project, items)
    tokens = []
    for i in range(annotators):
        user = User.objects.create_user(f"bench{project.id}-{i}")
        account_services.membership_set(project=project, user=user, role=Role.ANNOTATOR)
        tokens.append(Token.objects.create(user=user).key)
    return project.id, tokens


def annotator_loop(port, project_id, token, mode, deadline, results):
    """One simulated annotator: cycles as fast as the server answers, until no task or time."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}

    def post(path, body):
        connection.request("POST", path, json.dumps(body), headers)
        response = connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {data[:200]!r}")
        return json.loads(data)

    latencies, task, n = [], None, 0
    while time.monotonic() < deadline:
        started = time.perf_counter()
        if task is None:
            task = post(f"/api/projects/{project_id}/tasks/next/", {})["task"]
            if task is None:
                break
        tiers = [[c["id"]] for c in task["candidates"]]
        n += 1
        body = post(
            f"/api/tasks/{task['id']}/submit/",
            {"submit_key": f"{token[:8]}-{n}", "tiers": tiers, "next": mode == "chained"},
        )
        task = body["next"]["task"] if mode == "chained" else None
        latencies.append((time.monotonic(), time.perf_counter() - started))
        if mode == "chained" and task is None:
            break
    results.put(latencies)


def worker_process(port, project_id, tokens, mode, deadline, results):
    import threading

    threads = [
        threading.Thread(target=annotator_loop, args=(port, project_id, token, mode, deadline, results))
        for token in tokens
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def run_load(*, port, project_id, tokens, mode, seconds, warmup, processes):
    results = multiprocessing.Queue()
    deadline = time.monotonic() + warmup + seconds
    chunks = [tokens[i::processes] for i in range(processes)]
    procs = [
        multiprocessing.Process(target=worker_process, args=(port, project_id, chunk, mode, deadline, results))
        for chunk in chunks
        if chunk
    ]
    began = time.monotonic()
    for proc in procs:
        proc.start()
    samples = []
    for _ in tokens:
        samples.extend(results.get(timeout=warmup + seconds + 120))
    for proc in procs:
        proc.join()
    window_start = began + warmup
    measured = [latency for finished, latency in samples if finished >= window_start]
    window_end = max((finished for finished, _ in samples), default=window_start)
    span = max(window_end - window_start, 1e-9)
    measured.sort()
    return {
        "cycles": len(measured),
        "per_second": len(measured) / span,
        "p50_ms": 1000 * statistics.median(measured) if measured else float("nan"),
        "p99_ms": 1000 * measured[min(len(measured) - 1, int(0.99 * len(measured)))] if measured else float("nan"),
    }


class Training:
    """An SFT stage training beside the bench, started as the worker starts one (or, `unniced`, as it used to)."""

    def __init__(self, folder: Path):
        sys.path.insert(0, str(ROOT / "bench"))
        import train_overhead

        self.folder = folder
        self.model_dir, self.files, _ = train_overhead.build(folder, rows=4000, width=128, layers=2, vocab=1024,
                                                             context=128)
        self.child = None

    def start(self, *, unniced: bool):
        from training.services import supervisor
        from training.trainers.launch import child_command, spec_write

        work = Path(tempfile.mkdtemp(dir=self.folder))
        spec = spec_write(work, stage="sft", train=self.files["sft"], base_model=self.model_dir, preset="demo",
                          config={"max_steps": 100000, "save_every": 100000})
        env = supervisor._child_env()
        if unniced:
            env = {k: v for k, v in env.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        self.child = subprocess.Popen(child_command(str(spec)), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.STDOUT, start_new_session=True,
                                      preexec_fn=None if unniced else supervisor._child_start)
        # Until it trains (its progress file shows a step): importing torch and loading the model is not the load.
        progress, deadline = work / "progress.jsonl", time.monotonic() + 300
        while time.monotonic() < deadline and b'"progress"' not in (progress.read_bytes() if progress.exists() else b""):
            if self.child.poll() is not None:
                raise SystemExit(f"the training child exited with {self.child.returncode}; see {work}")
            time.sleep(0.5)

    def stop(self):
        if self.child and self.child.poll() is None:
            os.killpg(self.child.pid, 15)
            self.child.wait(30)
        self.child = None


def start_gunicorn(port: int, env: dict, workers: int | None) -> subprocess.Popen:
    # Production settings, as the README runs them: DEBUG off (no query logging, no static
    # file autorefresh), a given secret key and host list.
    env = dict(
        env,
        BIND=f"127.0.0.1:{port}",
        PLATFORM_ENV="production",
        SECRET_KEY=secrets.token_urlsafe(40),
        PSEUDONYM_KEY=secrets.token_urlsafe(40),
        ALLOWED_HOSTS="127.0.0.1,localhost",
    )
    if workers:
        env["WEB_WORKERS"] = str(workers)
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "platform" / "gunicorn.conf.py")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health/")
            if connection.getresponse().status in (200, 503):
                return process
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit("gunicorn did not start")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotators", type=int, nargs="+", default=[50, 10])
    parser.add_argument("--mode", nargs="+", choices=["separate", "chained"], default=["separate", "chained"])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--items", type=int, default=3000, help="ranking items per run (overlap 2)")
    parser.add_argument("--web-workers", type=int, default=None)
    parser.add_argument("--load-processes", type=int, default=2)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--beside", nargs="+", choices=["quiet", "training", "unniced"], default=["quiet"],
                        help="what runs beside the web: nothing, an SFT stage as the worker starts it, or the "
                             "same stage at nice 0 with default threads")
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="queue-bench-")
    os.environ.setdefault("PLATFORM_DATA_DIR", data_dir)
    env = dict(os.environ)
    setup_django()
    from django.db import connection

    connection.ensure_connection()  # starts the embedded server (held by this process)
    web = start_gunicorn(args.port, env, args.web_workers)
    try:
        print(f"gunicorn workers={env.get('WEB_WORKERS', args.web_workers or 'default')} on 127.0.0.1:{args.port}; "
              f"cpu cores={os.cpu_count()}; {args.seconds:.0f}s per run after {args.warmup:.0f}s warm-up")
        training = Training(Path(data_dir)) if set(args.beside) - {"quiet"} else None
        print(f"{'beside':<9} {'mode':<9} {'annotators':>10} {'cycles':>7} {'cycles/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
        for mode in args.mode:
            for annotators in args.annotators:
                for beside in args.beside:
                    project_id, tokens = seed(annotators=annotators, items=args.items, overlap=2)
                    if beside != "quiet":
                        training.start(unniced=beside == "unniced")
                    try:
                        figures = run_load(
                            port=args.port, project_id=project_id, tokens=tokens, mode=mode,
                            seconds=args.seconds, warmup=args.warmup, processes=args.load_processes,
                        )
                    finally:
                        if beside != "quiet":
                            training.stop()
                    print(f"{beside:<9} {mode:<9} {annotators:>10} {figures['cycles']:>7} {figures['per_second']:>9.1f} "
                          f"{figures['p50_ms']:>8.1f} {figures['p99_ms']:>8.1f}", flush=True)
    finally:
        web.terminate()
        web.wait(30)


if __name__ == "__main__":
    main()
