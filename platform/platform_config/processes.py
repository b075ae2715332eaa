"""Run the web server (gunicorn) and the job workers together until Ctrl-C or SIGTERM (manage.py serve, demo)."""

import os
import signal
import subprocess
import sys
import time

from django.conf import settings

from .paths import PLATFORM_DIR, REPO_ROOT


def start_web(*, bind: str, workers: int | None = None) -> subprocess.Popen:
    env = dict(os.environ, BIND=bind)
    if workers:
        env["WEB_WORKERS"] = str(workers)
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(PLATFORM_DIR / "gunicorn.conf.py")],
        cwd=REPO_ROOT,
        env=env,
    )


def start_worker(queues: str = "") -> subprocess.Popen:
    """Start a job worker (manage.py worker: it outlives database restarts) for the given comma-separated queues
    (all queues when empty)."""
    return subprocess.Popen([sys.executable, str(REPO_ROOT / "manage.py"), "worker", "--queues", queues], cwd=REPO_ROOT)


def stop_all(processes: list[subprocess.Popen], timeout: float = 20) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def serve(*, bind: str, workers: int | None, with_worker: bool, out, banner: str = "") -> None:
    """Start web and workers, print where they are, and supervise them until a signal: a worker that dies is
    started again (within a second, then with a growing pause if it keeps dying), and so is the web server."""
    # The children run with DEBUG off unless DEBUG=true asks for it: development defaults it on (for
    # runserver), and its pages show anyone the URL list on a 404 and a traceback on an error.
    if not os.environ.get("DEBUG", "").strip():
        os.environ["DEBUG"] = "false"
    starters = [lambda: start_web(bind=bind, workers=workers)]
    if with_worker:
        starters += [lambda queues=queues: start_worker(queues) for queues in settings.SERVE_WORKER_QUEUES]
    names = ["the web server"] + [f"the worker for {queues or 'every queue'}" for queues in settings.SERVE_WORKER_QUEUES]
    processes = [start() for start in starters]
    restarts = [_Restarts() for _ in processes]
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    out.write(f"\nThe platform runs at http://{bind}/  (health: http://{bind}/health/)\n")
    if banner:
        out.write(banner)
    out.write("Press Ctrl-C to stop.\n")
    try:
        while not stopping:
            for i, process in enumerate(processes):
                if process.poll() is not None and restarts[i].due():
                    out.write(f"{names[i]} (pid {process.pid}) exited with code {process.returncode}; starting it again\n")
                    processes[i] = starters[i]()
            time.sleep(0.5)
    finally:
        stop_all(processes)
        out.write("Stopped.\n")


class _Restarts:
    """When to start a dead child again: at once the first time, then after 1, 2, 4 ... up to 30 s while it keeps
    dying within a minute of its start (a child that cannot start must not spin the machine)."""

    def __init__(self):
        self.pause, self.died_at, self.started_at = 0.0, None, time.monotonic()

    def due(self) -> bool:
        now = time.monotonic()
        if self.died_at is None:
            self.died_at = now
            if now - self.started_at > 60:
                self.pause = 0.0
        if now - self.died_at < self.pause:
            return False
        self.pause = min(max(1.0, self.pause * 2), 30.0)
        self.died_at, self.started_at = None, now
        return True
