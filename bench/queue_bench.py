"""Drive the queue over HTTP with N concurrent simulated annotators; print cycles/s and latency.

A cycle is: get the next task, then submit it (a ranking of K=4 replies), with no think time.
  --mode separate  two requests per cycle: POST tasks/next/, then POST tasks/<id>/submit/
  --mode chained   the submit asks for the next task too (`next: true`), as the pages do

The server is the production setup from the README: gunicorn with platform/gunicorn.conf.py,
on loopback, against a fresh embedded PostgreSQL in a temporary data folder (or DATABASE_URL).
The load generator runs in separate processes on the same machine; every loop is bounded by a
item count and a time limit.

    .venv/bin/python bench/queue_bench.py --annotators 50 10 --mode separate chained

By default the items' priorities vary (a reward-model uncertainty per item, adaptive overlap on) and a
priorities job recomputes every open item's priority every --recompute-every seconds in a process of its own
during the load, as issue 20's targets ask; --no-priorities measures the plain oldest-first queue. Each row
also says where the 2 cores went in the measured window: cores busy (and CPU milliseconds per cycle) in the
web (gunicorn and its workers), the database (every postgres process) and the load generator, and the
recompute job's cores and passes.

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
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def setup_django():
    sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_config.settings")
    import django

    django.setup()


def seed(*, annotators: int, items: int, overlap: int, priorities: bool) -> tuple[int, list[str]]:
    """Create a project with `items` ranking items and `annotators` members; return tokens.

    With `priorities`, as active learning runs it: every item has a reward-model uncertainty of its own (drawn
    here, as training.services.priorities would write it), adaptive overlap is on (cap 3), and the items'
    priorities are computed before the load starts."""
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
    if priorities:
        from annotate.models import WorkItem
        from annotate.services import priority

        account_services.project_settings_update(project=project, adaptive_overlap_cap=3)
        draw = random.Random(project.id)
        ids = WorkItem.objects.filter(project=project).values_list("id", flat=True)
        priority.priority_signals_write(project=project, signals={i: {"uncertainty": draw.random()} for i in ids})
        priority.priorities_recompute(project=project)
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


def worker_process(port, project_id, tokens, mode, window_start, deadline, results, cpu):
    import threading

    threads = [
        threading.Thread(target=annotator_loop, args=(port, project_id, token, mode, deadline, results))
        for token in tokens
    ]
    # The load generator's own CPU time in the measured window (it shares the cores with the server).
    at_start = []
    threading.Timer(max(0.0, window_start - time.monotonic()), lambda: at_start.append(time.process_time())).start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu.put(time.process_time() - (at_start[0] if at_start else 0.0))


def cpu_seconds(processes) -> dict[int, float]:
    """CPU seconds by pid (a process that ended while we looked is left out)."""
    found = {}
    for process in processes:
        try:
            times = process.cpu_times()
            found[process.pid] = times.user + times.system
        except psutil.Error:
            continue
    return found


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds between two readings, of the processes alive at the second (new ones in full)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def server_processes(web_pid: int) -> dict[str, list]:
    """The web's processes (gunicorn and its workers) and the database's (every postgres process here)."""
    web = psutil.Process(web_pid)
    database = [p for p in psutil.process_iter(["name"]) if p.info["name"] in ("postgres", "postmaster")]
    return {"web": [web, *web.children(recursive=True)], "db": database}


def run_load(*, port, project_id, tokens, mode, seconds, warmup, processes, web_pid, recompute_every: float | None):
    results, cpu = multiprocessing.Queue(), multiprocessing.Queue()
    began = time.monotonic()
    window_start, deadline = began + warmup, began + warmup + seconds
    chunks = [tokens[i::processes] for i in range(processes)]
    procs = [
        multiprocessing.Process(target=worker_process,
                                args=(port, project_id, chunk, mode, window_start, deadline, results, cpu))
        for chunk in chunks
        if chunk
    ]
    for proc in procs:
        proc.start()
    recomputing = None if recompute_every is None else recompute_start(project_id, warmup + seconds, recompute_every)
    # CPU seconds of the web and the database over the measured window, read at its start and end.
    time.sleep(max(0.0, window_start - time.monotonic()))
    before = {name: cpu_seconds(group) for name, group in server_processes(web_pid).items()}
    time.sleep(max(0.0, deadline - time.monotonic()))
    used = {name: cpu_used(before[name], cpu_seconds(group)) for name, group in server_processes(web_pid).items()}
    samples = []
    for _ in tokens:
        samples.extend(results.get(timeout=warmup + seconds + 120))
    used["load"] = sum(cpu.get(timeout=60) for _ in procs)
    for proc in procs:
        proc.join()
    recomputed = json.loads(recomputing.communicate(timeout=120)[0]) if recomputing else {"passes": 0, "cpu_s": 0.0}
    measured = [latency for finished, latency in samples if finished >= window_start]
    window_end = max((finished for finished, _ in samples), default=window_start)
    span = max(window_end - window_start, 1e-9)
    measured.sort()
    return {
        "cycles": len(measured),
        "per_second": len(measured) / span,
        "p50_ms": 1000 * statistics.median(measured) if measured else float("nan"),
        "p99_ms": 1000 * measured[min(len(measured) - 1, int(0.99 * len(measured)))] if measured else float("nan"),
        # Cores busy per part over the window, and CPU milliseconds per cycle (the load generator's share
        # ends with its last request, a moment after the window).
        **{f"{name}_cores": value / seconds for name, value in used.items()},
        **{f"{name}_ms": 1000 * value / max(1, len(measured)) for name, value in used.items()},
        "recompute_passes": recomputed["passes"],
        "recompute_cores": recomputed["cpu_s"] / (warmup + seconds),
    }


def recompute_loop(project_id: int, seconds: float, every: float) -> None:
    """What the priorities job does, a pass every `every` seconds (0: back to back) for `seconds`: recompute every
    open item's priority, in its own process as a worker runs it. Prints how many passes it made."""
    setup_django()
    from annotate.models import Project
    from annotate.services import priority

    deadline, passes, scored = time.monotonic() + seconds, 0, 0
    while time.monotonic() < deadline:
        project = Project.objects.select_related("settings").get(pk=project_id)
        done = priority.priorities_recompute(project=project, seconds=max(0.1, deadline - time.monotonic()))
        passes, scored = passes + 1, scored + done["scored"]
        time.sleep(max(0.0, min(every - done["seconds"], deadline - time.monotonic())))
    print(json.dumps({"passes": passes, "scored": scored, "cpu_s": time.process_time()}))


def recompute_start(project_id: int, seconds: float, every: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--recompute", str(project_id), str(seconds), str(every)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)


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
                break
        except OSError:
            time.sleep(0.3)
    else:
        process.kill()
        raise SystemExit("gunicorn did not start")
    # Every worker imports the apps as it starts (platform_config/wsgi.py): wait until all are done.
    web = psutil.Process(process.pid)
    previous = -1.0
    while time.monotonic() < deadline:
        used = sum(cpu_seconds([web, *web.children(recursive=True)]).values())
        if used - previous < 0.05:
            return process
        previous = used
        time.sleep(0.5)
    process.kill()
    raise SystemExit("gunicorn's workers did not settle in a minute")


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
    parser.add_argument("--no-priorities", dest="priorities", action="store_false",
                        help="every item of equal priority and no recompute job (oldest first, as before active "
                             "learning)")
    parser.add_argument("--recompute-every", type=float, default=2.0,
                        help="seconds from one priorities pass to the next during the load (0: back to back)")
    if sys.argv[1:2] == ["--recompute"]:
        return recompute_loop(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))
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
              f"cpu cores={os.cpu_count()}; {args.seconds:.0f}s per run after {args.warmup:.0f}s warm-up; "
              + (f"priorities varying, recomputed every {args.recompute_every:g}s" if args.priorities else "no priorities")
              + f"; load average {os.getloadavg()[0]:.2f}")
        training = Training(Path(data_dir)) if set(args.beside) - {"quiet"} else None
        print(f"{'beside':<9} {'mode':<9} {'annotators':>10} {'cycles':>7} {'cycles/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
              f"   cores (CPU ms per cycle): web, database, load generator; recompute job: cores, passes")
        for mode in args.mode:
            for annotators in args.annotators:
                for beside in args.beside:
                    project_id, tokens = seed(annotators=annotators, items=args.items, overlap=2,
                                              priorities=args.priorities)
                    if beside != "quiet":
                        training.start(unniced=beside == "unniced")
                    try:
                        figures = run_load(
                            port=args.port, project_id=project_id, tokens=tokens, mode=mode,
                            seconds=args.seconds, warmup=args.warmup, processes=args.load_processes, web_pid=web.pid,
                            recompute_every=args.recompute_every if args.priorities else None,
                        )
                    finally:
                        if beside != "quiet":
                            training.stop()
                    print(f"{beside:<9} {mode:<9} {annotators:>10} {figures['cycles']:>7} {figures['per_second']:>9.1f} "
                          f"{figures['p50_ms']:>8.1f} {figures['p99_ms']:>8.1f}   "
                          + ", ".join(f"{figures[part + '_cores']:.2f} ({figures[part + '_ms']:.1f})"
                                      for part in ("web", "db", "load"))
                          + f"; {figures['recompute_cores']:.2f}, {figures['recompute_passes']}", flush=True)
    finally:
        web.terminate()
        web.wait(30)


if __name__ == "__main__":
    main()
